"""Learning rate beside grad norm, over the same steps.

Two plots rather than one: a learning rate of 2e-4 and a grad norm of 0.4
on one y axis would draw the schedule as a flat line at zero.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal

from tui.models.run_history import LR, RunHistory, Series
from tui.widgets.run_plot import RunPlot, Trace

LR_COLOUR = "#87d787"
GRAD_COLOUR = "#d787d7"


class LrChart(Horizontal):
    DEFAULT_CSS = """
    LrChart { height: 1fr; }
    LrChart > RunPlot { width: 1fr; }
    """

    def __init__(self, history: RunHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self._drawn: int | None = None

    def compose(self) -> ComposeResult:
        yield RunPlot(id="lr-plot")
        yield RunPlot(id="grad-plot")

    def on_mount(self) -> None:
        self.border_title = f"[{LR_COLOUR}]━━[/] learning rate   [{GRAD_COLOUR}]━━[/] grad norm"
        self.sync()

    def sync(self) -> None:
        if self.history.versions[LR] == self._drawn:
            return
        self._drawn = self.history.versions[LR]
        for plot_id, series, colour in (("#lr-plot", self.history.lr, LR_COLOUR),
                                        ("#grad-plot", self.history.grad_norm, GRAD_COLOUR)):
            self.query_one(plot_id, RunPlot).draw(_traces(series, colour))
        lr, gn = self.history.lr.last(), self.history.grad_norm.last()
        bits = ([f"lr {lr:.3g}"] if lr is not None else []) + ([f"grad norm {gn:.3g}"] if gn is not None else [])
        self.border_subtitle = " · ".join(bits) or "waiting for the first logged step"


def _traces(series: Series, colour: str) -> list[Trace]:
    if not len(series):
        return []
    return [Trace(series.x, series.y, colour)]
