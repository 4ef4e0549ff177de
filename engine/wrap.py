"""Plain-text output of the CLI verbs fit to 80 columns (an 80x24 terminal over SSH, in tmux).

A line too long is wrapped at word boundaries, its continuation indented under the text after its label:
the "label  text" lines of `estimate` and `sweep`, and the rows of a table whose last column is prose.
A single word longer than the room (a path) is kept whole, on its own line, and so is a command between backticks
(`lorapilot train --resume runs/x`): cut, they could not be copied. Error messages are wrapped the same way, each
problem ("  - ...") and the fix ("  fix: ...") continuing under its own text.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import textwrap
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

WIDTH = 80
# fit's width where no width is passed: WIDTH, or what `fit_width` sets around a verb called in-process (the app's
# panel that shows a verb's text fits it to its own width, not the terminal's 80 columns).
_WIDTH: ContextVar[int | None] = ContextVar("lorapilot_fit_width", default=None)


@contextlib.contextmanager
def fit_width(width: int) -> Iterator[None]:
    """fit's default width inside the block (in this thread)."""
    token = _WIDTH.set(width)
    try:
        yield
    finally:
        _WIDTH.reset(token)

# Where a line's text starts: after its indent and a label or table cells, each set off by two or more spaces. The
# last such start that leaves at least _MIN_ROOM columns is the text's (a table's prose column, after the name and
# the GiB cells, not the first cell after the name); none: after the indent alone.
_GAP = re.compile(r"\S {2,}(?=\S)")
_MIN_ROOM = 30
# A list item's and a fix's label (a UserError's lines): continuations go under the text after it.
_LABEL = re.compile(r" *(?:- |fix: )")
# A command quoted in backticks: one unit, never split at its spaces.
_COMMAND = re.compile(r"`[^`\n]*`")
_KEEP = "\x00"   # stands for a command's or a path's spaces while wrapping; never in text a verb prints
# A path with spaces (runs/my run/train.log, /data/my set.jsonl) is one unit too: it starts at a word holding a "/"
# and takes in each next word that continues it: one holding a "/" itself (set/train.jsonl), one ending in a file's
# extension (set.jsonl), or one that makes a path on disk (runs/my run). A word ending in ":", ",", ";" or ")" ends it.
_PATH_START = re.compile(r"[~.]?/|[\w.-]+/")
_EXTENSION = re.compile(r"[\w.-]*\w\.[A-Za-z][A-Za-z0-9]{0,9}")
_PUNCT = ":,;)"
# Words of a path between its part before and the part holding the next "/" or the extension.
_GAP_WORDS = 2


def _text_start(line: str, width: int) -> int:
    indent = len(line) - len(line.lstrip())
    label = _LABEL.match(line)
    starts = [label.end()] if label and label.end() <= width - _MIN_ROOM else []
    starts += [m.end() for m in _GAP.finditer(line, indent) if m.end() <= width - _MIN_ROOM]
    return starts[-1] if starts else indent


def fit(text: str, width: int | None = None) -> str:
    """text with each line longer than width (default WIDTH, or fit_width's) wrapped at word boundaries, continuations
    under the line's text."""
    width = width or _WIDTH.get() or WIDTH   # WIDTH read now: tests set it for unwrapped text
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        kept = _keep_paths(_COMMAND.sub(lambda m: m.group().replace(" ", _KEEP), line))
        wrapped = textwrap.wrap(kept, width=width, subsequent_indent=" " * _text_start(line, width),
                                break_long_words=False, break_on_hyphens=False, drop_whitespace=True) or [kept]
        out += [w.replace(_KEEP, " ") for w in wrapped]
    return "\n".join(out)


def _keep_paths(line: str) -> str:
    """line with the spaces inside each path replaced by _KEEP (see _PATH_START)."""
    words = line.split(" ")
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if _PATH_START.match(word):
            while word[-1:] not in tuple(_PUNCT) and (n := _continued_by(word, words[i:])):
                word = _KEEP.join([word, *words[i:i + n]])
                i += n
        out.append(word)
    return " ".join(out)


def _continued_by(path: str, rest: list[str]) -> int:
    """How many of the next words continue path (0: none): the next one alone, or up to _GAP_WORDS of them up to one
    that holds a "/" or ends in an extension (my training set/train.jsonl)."""
    for n, word in enumerate(rest[:_GAP_WORDS + 1], 1):
        bare = word.rstrip(_PUNCT + ".")
        if not bare or "`" in word or _PATH_START.match(bare) and bare[0] in "~./":
            return 0
        if "/" in bare or _EXTENSION.fullmatch(bare):
            return n
        if n == 1 and os.path.exists(" ".join([path, bare]).replace(_KEEP, " ")):
            return 1
        if word[-1] in _PUNCT:
            return 0
    return 0


def json_for_scripts(value: Any, **kw: Any) -> str:
    """A verb's --json output as every parser reads it (jq, JavaScript, Go): a NaN or infinite number (a diverged
    loss) is null, as JavaScript's JSON.stringify writes it. Python's json wrote the bare words NaN and Infinity,
    which strict parsers refuse: `lorapilot runs --json | jq` failed on the one run a script most wants to see."""
    return json.dumps(_finite(value), allow_nan=False, **kw)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
