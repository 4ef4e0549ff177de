"""A config's fields by dotted path (`training.learning_rate`), over the plain mapping `Config.to_dict()` gives.

The wizard keeps what the user typed per dotted path, a recipe and a finding's fix name their settings that way,
and the config editor writes them into the user's file: one reading of a path for all of them.
"""

from __future__ import annotations

from typing import Any

from engine.config import FIELDS


def get_path(d: Any, path: str) -> Any:
    """The value at `path` in a config mapping (plain or ruamel's), None where the file does not set it."""
    head, _, tail = path.partition(".")
    value: Any = d.get(head) if hasattr(d, "get") else None
    if tail:
        return value.get(tail) if hasattr(value, "get") else None
    return value


def put_path(d: dict, path: str, value: Any) -> None:
    head, _, tail = path.partition(".")
    if tail:
        d.setdefault(head, {})[tail] = value
    else:
        d[head] = value


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A (partial) config mapping as dotted paths, e.g. a recipe's keys."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in FIELDS:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def problem_path(problem: str) -> str:
    """The dotted key a ConfigError problem line names ('' when it names no field of the schema)."""
    head = problem.split(":", 1)[0].strip()
    return head if head in FIELDS else ""
