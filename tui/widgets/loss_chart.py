"""Training and eval loss on one step axis, with optional EMA smoothing and a log y axis."""

from __future__ import annotations

from typing import Any

from textual.reactive import reactive

from engine.rundir import loss_text

from tui.models.chart_data import Ema, log10_or_nan
from tui.models.run_history import LOSS, RunHistory
from tui.widgets.chart_axis import CompactFormatter, LogFormatter
from tui.widgets.run_plot import RunPlot, Trace

TRAIN_COLOUR = "#5fafff"
RAW_COLOUR = "#2f5477"      # the unsmoothed line behind the smoothed one, as TensorBoard shows it
EVAL_COLOUR = "#ffaf00"

SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.98)


class LossChart(RunPlot):
    """Redraws only when the loss series, the smoothing or the scale changed."""

    smoothing: reactive[float] = reactive(0.0)
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, history: RunHistory, *, smoothing: float = 0.0, log_scale: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self._ema = Ema()
        self._drawn: tuple | None = None
        self._ready = False
        self.set_reactive(LossChart.smoothing, smoothing)
        self.set_reactive(LossChart.log_scale, log_scale)

    def on_mount(self) -> None:
        super().on_mount()
        self._ready = True
        self.sync()

    def watch_smoothing(self) -> None:
        self.sync()

    def watch_log_scale(self) -> None:
        self.sync()

    def sync(self) -> None:
        if not self._ready:
            return
        h = self.history
        key = (h.versions[LOSS], self.smoothing, self.log_scale)
        if key == self._drawn:
            return
        self._drawn = key
        self.set_y_formatter(LogFormatter() if self.log_scale else CompactFormatter())
        scale = log10_or_nan if self.log_scale else (lambda a: a)
        tx, ty = h.loss.x, h.loss.y
        traces = []
        # The eval line first, the training line over it: where the two share a cell (eval close to train, as it
        # is early on) the training line stays visible instead of seeming to stop at the first evaluation; the
        # eval markers are drawn over both (RunPlot.draw).
        if len(h.eval_loss):
            ex, ey = h.eval_loss.x, h.eval_loss.y
            # Markers only while they stay apart; hundreds of evals would merge into a bar.
            marker = "◆" if len(ex) <= max(8, self.size.width // 3) else None
            traces.append(Trace(ex, scale(ey), EVAL_COLOUR, marker))
        if self.smoothing and len(tx):
            smooth = self._ema.smooth(h.loss.y, self.smoothing, key=h.loss.rewinds)
            traces += [Trace(tx, scale(ty), RAW_COLOUR), Trace(tx, scale(smooth), TRAIN_COLOUR)]
        elif len(tx):
            traces.append(Trace(tx, scale(ty), TRAIN_COLOUR))
        self.draw(traces)
        self.border_title = self._title()
        self.border_subtitle = self._subtitle()

    def _title(self) -> str:
        parts = [f"Loss  [{TRAIN_COLOUR}]━━[/] train"]
        if len(self.history.eval_loss):
            parts.append(f"[{EVAL_COLOUR}]━◆[/] eval")
        return "  ".join(parts)

    def _subtitle(self) -> str:
        h = self.history
        bits = []
        if not len(h.loss) and not len(h.eval_loss):
            bits.append("waiting for the first logged step")
        else:
            last, ev = h.loss.last(), h.eval_loss.last()
            if last is not None:
                # The last logged value, as the Progress panel shows it; the smoothed line is labelled apart.
                bits.append(f"last train {loss_text(last)}")
            if ev is not None:
                bits.append(f"eval {loss_text(ev)}")
        if self.smoothing:
            bits.append(f"line smoothed (EMA {self.smoothing:g})")
        if self.log_scale:
            bits.append("log y")
        return " · ".join(bits)
