"""Reading a JSON file that lorapilot did not just write: a run directory's, a checkpoint's, an adapter's, the Hugging
Face cache's. What reading one can raise, said once, and the one reader of a file that must hold a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# OSError: absent, unreadable, a directory. ValueError: not JSON, not UTF-8, an integer of thousands of digits (Python's
# limit on an int's digits). RecursionError: arrays or objects nested deeper than the parser recurses ("[" * 100000).
READ_ERRORS = (OSError, ValueError, RecursionError)


def read_json(path: str | Path) -> Any:
    """A JSON file's value; raises one of READ_ERRORS."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_table(path: str | Path) -> dict | None:
    """A JSON file that holds a table (an object), or None: absent, unreadable, not JSON, or no table. For files
    whose problems are said elsewhere (files_problem) or only cost a default (a cache, a record beside a
    checkpoint)."""
    try:
        data = read_json(path)
    except READ_ERRORS:
        return None
    return data if isinstance(data, dict) else None
