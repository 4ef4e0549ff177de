"""Plain-text output of the CLI verbs fit to 80 columns (an 80x24 terminal over SSH, in tmux).

A line too long is wrapped at word boundaries, its continuation indented under the text after its label:
the "label  text" lines of `estimate` and `sweep`, and the rows of a table whose last column is prose.
A single word longer than the room (a path) is kept whole: cut, it could not be copied.
"""

from __future__ import annotations

import re
import textwrap

WIDTH = 80

# Where the text of a line starts: after its indent and a label (or table cells) set off by two or more spaces,
# within the first half of the line's room; else after the indent alone.
_TEXT_START = re.compile(r"^(\s*(?:\S.*?\s{2,})?)\S")


def fit(text: str, width: int | None = None) -> str:
    """text with each line longer than width (default WIDTH) wrapped at word boundaries, continuations under the
    line's text."""
    width = width or WIDTH
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        m = _TEXT_START.match(line)
        indent = len(m.group(1)) if m and len(m.group(1)) <= width // 2 else len(line) - len(line.lstrip())
        out += textwrap.wrap(line, width=width, subsequent_indent=" " * indent, break_long_words=False,
                             break_on_hyphens=False, drop_whitespace=True) or [line]
    return "\n".join(out)
