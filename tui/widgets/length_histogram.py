"""Token lengths of the examples as a horizontal bar chart, with max_seq_length marked.

The lengths are the engine's (full_length of each tokenized example); this
only bins them for the eye. Bins past max_seq_length are drawn in the warning
colour and with a different fill, so the cut is visible without colour too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from textual.content import Content
from textual.widgets import Static

BINS = 8
BAR = 28


def _nice_step(span: float, bins: int) -> int:
    raw = max(1.0, span / bins)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return max(1, int(m * mag))
    return int(10 * mag)


def histogram_lines(lengths: Sequence[int], max_seq_length: int, bins: int = BINS, bar: int = BAR) -> list[Content]:
    if not lengths:
        return []
    top = max(max(lengths), 1)
    step = _nice_step(top + 1, bins)
    counts = [0] * (top // step + 1)
    for n in lengths:
        counts[n // step] += 1
    peak = max(counts) or 1
    width = len(f"{(len(counts)) * step - 1}")
    lines = []
    for i, c in enumerate(counts):
        lo, hi = i * step, (i + 1) * step - 1
        over = hi > max_seq_length
        fill = "▒" if over else "█"
        n = max(1 if c else 0, round(c / peak * bar))
        label = f"{lo:>{width}}-{hi:<{width}} "
        lines.append(Content.assemble(
            Content.styled(label, "$text-muted"),
            Content.styled(fill * n, "$text-warning" if over else "$text-primary"),
            f" {c}"))
    return lines


class LengthHistogram(Static):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, lengths: Sequence[int], max_seq_length: int) -> None:
        lines = histogram_lines(lengths, max_seq_length)
        if not lines:
            self.update("")
            return
        over = sum(1 for n in lengths if n > max_seq_length)
        title = Content.assemble(Content.styled("tokens per example", "bold"),
                                 Content.styled(f"  (▒ longer than max_seq_length {max_seq_length}: {over})",
                                                "$text-muted"))
        self.update(Content("\n").join([title, *lines]))
