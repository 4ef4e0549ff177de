"""A textual-plot PlotWidget for metric series: downsampled, padded autoscale, zoom that sticks.

textual-plot autoscales to the exact data range, which puts the newest point
on the frame where it is hard to see, and a live chart that re-fits itself
every half second would undo a user's zoom; so the limits are set here, with
a margin, until the user zooms or pans, and again after `r` (reset scales).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from textual import on
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget

from tui.models.chart_data import downsample
from tui.widgets.chart_axis import CompactFormatter


@dataclass
class Trace:
    x: np.ndarray
    y: np.ndarray
    style: str
    marker: str | None = None    # a character per point, for sparse series (eval loss)


class RunPlot(PlotWidget):
    DEFAULT_CSS = """
    RunPlot { height: 1fr; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._user_scaled = False
        self._ignore_scale_messages = 0
        self._traces: list[Trace] = []

    def on_mount(self) -> None:
        # Thin margins: a terminal row is precious at 80x24, and the title says what y is.
        self.margin_top, self.margin_bottom, self.margin_left = 1, 1, 7
        self.set_x_formatter(CompactFormatter())
        self.set_y_formatter(CompactFormatter())

    @property
    def target_points(self) -> int:
        # Braille packs two points per cell horizontally; more would be invisible.
        return max(32, 2 * (self.size.width - self.margin_left))

    def _limit_ticks(self) -> None:
        # textual-plot aims for ~5-8 ticks whatever the size; in an 8-row plot
        # their labels would print over each other.
        rows = self.size.height - self.margin_top - self.margin_bottom - 2
        cols = self.size.width - self.margin_left
        for fmt, n in ((self._y_formatter, rows // 2), (self._x_formatter, cols // 8)):
            if isinstance(fmt, CompactFormatter):
                fmt.max_ticks = max(2, n)

    def draw(self, traces: list[Trace]) -> None:
        self._traces = traces
        self._limit_ticks()
        self.clear()
        target = self.target_points
        xs, ys, marked = [], [], []
        for tr in traces:  # lines in the order given: where two share a cell, the later one's colour shows
            x, y = downsample(tr.x, tr.y, target)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                continue
            xs.append(x[ok])
            ys.append(y[ok])
            self.plot(x, y, line_style=tr.style, hires_mode=HiResMode.BRAILLE)
            if tr.marker:
                marked.append((x, y, tr.marker, tr.style))
        for x, y, marker, style in marked:  # markers over every line: a sparse series' points stay in sight
            self.scatter(x, y, marker=marker, marker_style=style)
        if xs and not self._user_scaled:
            self._fit(np.concatenate(xs), np.concatenate(ys))

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        x0, x1 = float(x.min()), float(x.max())
        y0, y1 = float(y.min()), float(y.max())
        xpad = max((x1 - x0) * 0.03, 1.0)
        ypad = (y1 - y0) * 0.06 or max(abs(y1) * 0.05, 1e-9)
        self.set_xlimits(x0, x1 + xpad)
        self.set_ylimits(y0 - ypad, y1 + ypad)

    @on(PlotWidget.ScaleChanged)
    def _scaled_by_user(self, event: PlotWidget.ScaleChanged) -> None:
        if event.plot is not self:
            return
        if self._ignore_scale_messages:
            self._ignore_scale_messages -= 1
            return
        self._user_scaled = True

    def action_reset_scales(self) -> None:
        self._user_scaled = False
        self._ignore_scale_messages += 1
        super().action_reset_scales()
        self.draw(self._traces)

    @on(Canvas.Resize)
    def _canvas_resized(self) -> None:
        # PlotWidget re-measures its canvases only on a layout refresh; without
        # this a panel that changes size draws its data past the frame.
        self.refresh(layout=True)
        self.draw(self._traces)
