"""Axis tick labels for the monitor's charts: short enough for a 6-character margin, round on a log axis."""

from __future__ import annotations

import math
import re
from typing import Sequence

from textual_plot import NumericAxisFormatter


MARGIN = 6  # characters left of a chart for its tick labels


class CompactFormatter(NumericAxisFormatter):
    """Tick labels that fit a 6-character margin (2e-4, 1.25, 12k), and no more ticks than rows allow."""

    def __init__(self, max_ticks: int = 8):
        self.max_ticks = max_ticks

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        return super().get_ticks(min_, max_, min(max_ticks, self.max_ticks))

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return distinct_labels(ticks)


class LogFormatter(CompactFormatter):
    """For data plotted as log10(y): ticks at round real values (1, 1.5, 2 or 1, 2, 5, 10), labelled as such."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        n = min(max_ticks, self.max_ticks)
        lo, hi = 10 ** min_, 10 ** max_
        if max_ - min_ <= 1:
            # Less than a decade (a loss from 2.2 to 0.9): round values in linear space.
            real = NumericAxisFormatter().get_ticks(lo, hi, n)
        else:
            real = [m * 10 ** e for e in range(math.floor(min_), math.ceil(max_) + 1) for m in (1, 2, 5)]
            real = [t for t in real if lo <= t <= hi]
            if len(real) > n:
                real = [t for t in real if f"{t:e}".startswith("1")]
            while len(real) > max(n, 2):
                real = real[::2]
        return [math.log10(t) for t in real if t > 0]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return distinct_labels([10 ** t for t in ticks])


def distinct_labels(values: Sequence[float]) -> list[str]:
    """compact_number of each, with the digits that tell close ticks apart (8.2425 beside 8.243, not 8.24 twice),
    as many as the margin holds, and one number of decimals (same_decimals)."""
    labels = [compact_number(v) for v in values]
    for digits in (4, 5):
        if len(set(labels)) == len(labels):
            break
        more = [compact_number(v, digits) for v in values]
        if max(map(len, more), default=0) > MARGIN:
            break
        labels = more
    return same_decimals(labels)


_DECIMAL = re.compile(r"-?\d+(?:\.(\d+))?")


def same_decimals(labels: list[str]) -> list[str]:
    """Plain decimal labels written with one number of decimals, their trailing zeros kept (1.0 1.5 2.0, not 1 1.5
    2), as the loss beside the chart is (engine.rundir.loss_text); as they were where one has an exponent or a
    suffix (2e-4, 12k), or where the margin would not hold them."""
    found = [_DECIMAL.fullmatch(label) for label in labels]
    if not found or not all(found):
        return labels
    places = max(len(m.group(1) or "") for m in found if m)
    padded = [f"{float(label):.{places}f}" for label in labels]
    return padded if max(map(len, padded)) <= MARGIN else labels


def compact_number(v: float, digits: int = 3) -> str:
    """v in at most 6 characters at 3 significant digits (more digits: longer, for ticks too close for 3)."""
    if abs(v) < 1e-12:
        return "0"
    a = abs(v)
    if a >= 1e4:
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if a >= div:
                return f"{v / div:.{digits}g}{suffix}"
    if a >= 1e3:
        return f"{v:.0f}"
    if a < 1e-2:
        mantissa, exp = f"{v:.1e}".split("e")
        return f"{float(mantissa):g}e{int(exp)}"
    return f"{v:.{digits}g}"
