"""A folder as a screen's header names it: where the runs or the sweep live, readable at 80 columns."""

from __future__ import annotations

from pathlib import Path

# Textual's header centres "title — subtitle" between its icon and the edge: at 80 columns, with a short title,
# about this much is left for the path.
HEADER_PATH_WIDTH = 56


def header_path(folder: str | Path, width: int = HEADER_PATH_WIDTH) -> str:
    """The folder in full, home as ~, cut from the left when too long: its own name, at the end, is what tells two
    folders apart, and Textual would cut the end instead."""
    path = Path(folder).expanduser().resolve()
    try:
        text = "~/" + str(path.relative_to(Path.home().resolve()))
    except ValueError:
        text = str(path)
    if len(text) <= width:
        return text
    tail = text[-(width - 1):]
    cut = tail.find("/")
    return "…" + (tail[cut:] if 0 <= cut < len(tail) - 1 else tail)
