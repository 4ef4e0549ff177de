"""Turning long metric series into what a terminal chart can draw: smoothing, log scale, downsampling.

No widget here: the loss and learning-rate charts share these, and tests call
them directly. A chart is a few hundred braille columns wide, so drawing
50 000 points would only burn CPU on points that land in the same cell.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def downsample(x: np.ndarray, y: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~target points, keeping each bucket's min and max, the first and the latest point.

    Min/max rather than every k-th point, because the point a user must see
    (a loss spike, a NaN-adjacent blow-up) is exactly the one striding skips.
    """
    n = len(x)
    if n <= target or target < 4:
        return x, y
    buckets = max(1, target // 2)
    size = math.ceil(n / buckets)
    rows = math.ceil(n / size)
    pad = rows * size - n
    finite = np.where(np.isfinite(y), y, np.nan)
    lo = np.concatenate([np.where(np.isnan(finite), np.inf, finite), np.full(pad, np.inf)]).reshape(rows, size)
    hi = np.concatenate([np.where(np.isnan(finite), -np.inf, finite), np.full(pad, -np.inf)]).reshape(rows, size)
    base = np.arange(rows) * size
    idx = np.concatenate([base + lo.argmin(axis=1), base + hi.argmax(axis=1), [0, n - 1]])
    idx = np.unique(np.clip(idx, 0, n - 1))
    return x[idx], y[idx]


class Ema:
    """Debiased exponential moving average (TensorBoard's smoothing), extended incrementally.

    Recomputing 50 000 points every half second would be the monitor's main
    CPU cost; only the new tail is computed unless the series was rewound
    (a resumed run) or the weight changed.
    """

    def __init__(self) -> None:
        self.weight = 0.0
        self._values = np.empty(0)
        self._last = 0.0
        self._count = 0
        self._source_len = 0
        self._source_key: object = None

    def smooth(self, values: Sequence[float] | np.ndarray, weight: float, key: object = None) -> np.ndarray:
        if weight != self.weight or key != self._source_key or len(values) < self._source_len:
            self.weight, self._source_key = weight, key
            self._values, self._last, self._count, self._source_len = np.empty(0), 0.0, 0, 0
        w = self.weight
        out: list[float] = []
        last, count = self._last, self._count
        for v in values[self._source_len:]:
            v = float(v)
            if not math.isfinite(v):
                # A NaN must not poison every later smoothed point; it is shown
                # by the diagnostics, and the raw line simply has a gap there.
                out.append(math.nan)
                continue
            last = last * w + (1 - w) * v
            count += 1
            out.append(last / (1 - w ** count))
        self._last, self._count, self._source_len = last, count, len(values)
        if out:
            self._values = np.concatenate([self._values, out])
        return self._values


def log10_or_nan(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)
