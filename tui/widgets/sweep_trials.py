"""The sweep's trials, one line each: lr, r, state, step, a sparkline of the training loss, eval loss, why it
stopped; the best so far starred. Once the sweep is done the same lines carry the result table's columns
(train loss, gap, verdict, tokens/s, peak memory): one table, so the cursor and Enter work the same throughout.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from engine.rundir import finite, loss_text, number_text
from engine.sweep.plan import lr_text
from tui.widgets.progress_panel import STATE_STYLES

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16
# Below this width the finished table drops its sparkline: the numbers matter more.
SPARK_MIN_WIDTH = 96
STOP_STYLE = {"nan_loss": "bold red", "loss_explosion": "bold red", "failed": "bold red", "halving": "yellow",
              "budget": "yellow", "user": "yellow"}
BEST = "bold green"

RUNNING_COLUMNS = ("lr", "r", "state", "step", "training loss", "loss", "eval", "stopped by")
# "train avg": the mean of the last few logged losses (engine.sweep.report), steadier than one logged loss for
# comparing trials and the figure the gap is taken from; the runs list and a trial's monitor show the last one.
# "GiB" is the peak: "peak GiB" and "train avg" together do not fit 80 columns.
DONE_COLUMNS = ("lr", "r", "outcome", "step", "eval", "train avg", "gap", "verdict", "tok/s", "GiB")


def spark(values: list[float], width: int = SPARK_WIDTH) -> Text:
    """A unicode block sparkline of the last `width` buckets; a non-finite loss is a red ✗."""
    if not values:
        return Text("·" * 3, style="dim")
    if len(values) > width:  # bucket means, so the line spans the whole history
        edges = [round(i * len(values) / width) for i in range(width + 1)]
        buckets = [values[a:b] for a, b in zip(edges, edges[1:])]
        values = [float("nan") if not all(finite(v) for v in b) else sum(b) / len(b) for b in buckets]
    shown = [v for v in values if finite(v)]
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 0.0)
    out = Text()
    for v in values:
        if not finite(v):
            out.append("✗", style="bold red")
        else:
            level = 0 if hi <= lo else round((v - lo) / (hi - lo) * (len(BLOCKS) - 1))
            out.append(BLOCKS[level], style="cyan")
    return out


class SweepTrials(DataTable):
    """Rows keyed by trial id; `show(summary)` redraws from summarize_sweep's dict."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self._columns_for: tuple | None = None

    def show(self, summary: dict) -> None:
        finished = summary.get("table") is not None
        with_spark = not finished or (self.app.size.width >= SPARK_MIN_WIDTH)
        columns = (DONE_COLUMNS + (("training loss",) if with_spark else ())) if finished else RUNNING_COLUMNS
        keep = self.cursor_row
        if columns != self._columns_for:
            self.clear(columns=True)
            for name in columns:
                self.add_column(name, key=name)
            self._columns_for = columns
        else:
            self.clear()
        trials = {t["id"]: t for t in summary["trials"]}
        if finished:
            winner = (summary.get("winner") or {}).get("id")
            for row in summary["table"]:
                self._add_done(row, trials.get(row["id"], {}), row["id"] == winner, with_spark)
        else:
            best = (summary.get("best") or {}).get("id")
            for t in summary["trials"]:
                self._add_running(t, t["id"] == best)
        if self.row_count:
            self.move_cursor(row=min(max(keep, 0), self.row_count - 1))

    def _add_running(self, t: dict, best: bool) -> None:
        style = BEST if best else None
        state = t["state"]
        step = f"{t['step']}/{t['max_steps']}" if t.get("max_steps") else str(t["step"])
        stopped_by = str(t.get("stopped_by") or "")
        self.add_row(Text(("★ " if best else "  ") + lr_text(t["learning_rate"]), style=style or ""),
                     Text(str(t["r"]), style=style or ""), Text(state, style=STATE_STYLES.get(state, "")),
                     Text(step, justify="right"), spark(t.get("losses") or []),
                     Text(loss_text(t.get("loss")), justify="right"),
                     Text(loss_text(t.get("eval_loss")), style=style or "", justify="right"),
                     Text(stopped_by, style=STOP_STYLE.get(stopped_by, "")),
                     key=t["id"])

    def _add_done(self, row: dict, t: dict, winner: bool, with_spark: bool) -> None:
        quiet = row.get("stopped_by") or row.get("state") != "done"
        style = BEST if winner else ("dim" if quiet else "")
        outcome = row.get("stopped_by") or row.get("state") or "-"
        cells = [Text(("★ " if winner else "  ") + lr_text(row["learning_rate"]), style=style),
                 Text(str(row["r"]), style=style),
                 Text(outcome, style=STOP_STYLE.get(outcome) or STATE_STYLES.get(outcome, "")),
                 Text(str(row.get("step") or 0), justify="right", style=style),
                 Text(loss_text(row.get("eval_loss")), justify="right", style=style),
                 Text(loss_text(row.get("train_loss")), justify="right", style=style),
                 Text(number_text(row.get("gap"), "+.3f"), justify="right", style=style),
                 Text(row.get("verdict") or "-", style=style),
                 Text(number_text(row.get("tokens_per_s"), ",.0f"), justify="right", style=style),
                 Text(number_text(row.get("peak_mem_gib"), ".1f"), justify="right", style=style)]
        if with_spark:
            cells.append(spark(t.get("losses") or [], 12))
        self.add_row(*cells, key=row["id"])
