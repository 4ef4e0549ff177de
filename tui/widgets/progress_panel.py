"""State, step / max steps, epoch, tokens/s, elapsed, ETA, last checkpoint; why a run is lost or failed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.markup import escape

from engine.diagnose.finding import Finding
from engine.errors import shell_word
from engine.eta import starting_eta
from engine.rundir import FINAL_STATES, LOG_FILE, STATES, copy_of, finite, format_age, loss_text, safe_text, tail_lines
from engine.runs_list import COPY, STALLED, stall
from tui.models.run_history import LOG, PROGRESS, SYSTEM, RunHistory
from tui.widgets.meter_text import meter
from tui.widgets.monitor_panel import MonitorPanel

wall_clock = time.time  # what ages are measured against; the snapshot tests fix it


STATE_STYLES = {
    "training": "bold green", "evaluating": "bold cyan", "saving": "bold cyan", "loading": "bold yellow",
    "starting": "bold yellow", "done": "bold green", "stopped": "bold yellow", "failed": "bold red",
    "lost": "bold red", "unknown": "dim",
    # The runs list's word for a copied live run directory: nothing trains it, as nothing trains a stopped run.
    COPY: "bold yellow",
    # A live run that finished no step lately: amber, between training's green and lost's red (it may recover).
    STALLED: "bold dark_orange",
    # A sweep's own states, and a trial's before or instead of a run.
    "planned": "bold yellow", "running": "bold green", "pending": "dim", "skipped": "dim",
}


LABEL = 11
ETA_AFTER = "after first steps"   # a live run's ETA before its step time is measured


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


class ProgressPanel(MonitorPanel):
    TITLE = "Progress"

    def __init__(self, history: RunHistory, *, run_name: str | None = None, **kw: Any) -> None:
        super().__init__(history, **kw)
        if run_name:  # in the title where no header names the run (the monitor at 80x24); the title is markup
            self.TITLE = f"{self.TITLE} · {escape(safe_text(run_name, one_line=True))}"

    def key(self) -> tuple:
        h = self.history
        # Elapsed and ETA move with the clock, so a live run also redraws with
        # each system sample (every two seconds); a finished one only when an age it shows ('3m ago') changes.
        clock = h.versions[SYSTEM] if not h.is_final else self._ages()
        log = h.versions[LOG] if h.state in ("lost", "failed") else 0
        # a run goes quiet with nothing new to read: the clock alone turns it `stalled?`
        return h.versions[PROGRESS], h.state, clock, log, self._stalled() is not None

    def build(self) -> Group:
        h = self.history
        # Plain rows rather than a rich Table: this redraws every couple of
        # seconds for hours, and a Table measures every cell each time.
        rows: list[Text] = []

        def row(label: str, *value: str | Text | tuple[str, str]) -> None:
            rows.append(Text.assemble((label.ljust(LABEL), "bold"), *value, no_wrap=True, overflow="ellipsis"))

        st = h.status or {}
        # An ended run's trainer has exited: its pid would name a process that is gone (or another one now).
        pid = None if h.is_final or h.state == "lost" else st.get("pid") or st.get("rank0_pid")
        # Before a step time is measured: what the trainer is doing, and the estimate's time of the whole run
        # (engine.eta.starting_eta).
        starting = starting_eta(h.status, trained=h.last_train is not None) if h.pace.step_s() is None else None
        doing = starting.doing if starting else ""
        rest = doing.removeprefix(h.state)   # "loading" + " the model"; "loading" · "reading the data"
        doing = rest if rest != doing else f" · {doing}" if doing else ""
        stalled = self._stalled()
        # the word `lorapilot runs` and the runs list show for this run: `stalled?` for a live run gone quiet
        state = STALLED if stalled else h.state
        row("state", (state, STATE_STYLES.get(state, "bold")), (doing, STATE_STYLES.get(state, "bold")),
            (f"  pid {pid}" if pid else "", "dim"))
        if st.get("memory"):  # the trainer's choice (auto: fast or lean)
            gpus = f" · {st['world_size']} GPUs" if (st.get("world_size") or 1) > 1 else ""
            if st.get("parallelism") == "fsdp":
                gpus += " (sharded)"  # FSDP: each GPU holds a part of the model
            if (st.get("plan") or {}).get("compile_layers"):  # why step 1 came a minute late, and the extra memory
                gpus += " · compiled layers"
            row("memory", st["memory"], (gpus, "dim"))
        step, max_steps = h.step, h.max_steps
        if max_steps:
            frac = min(1.0, step / max_steps)
            bar_w = max(6, min(30, (self.content_size.width or 40) - 30))
            bar_style = STATE_STYLES.get(state, "green").replace("bold ", "")
            row("step", f"{step:,} / {max_steps:,} ", meter(frac, bar_w, style=bar_style), f" {frac * 100:.0f}%")
        else:
            row("step", f"{step:,}")
        epoch, tps = h.epoch, h.tokens_per_s()
        avg = h.avg_tokens_per_s() if h.is_final or h.state == "lost" else None  # ended: the whole run's
        loss, ev = h.loss.last(), h.eval_loss.last()
        # A launch's first record holds its warm-up (and compile): no speed until the next one.
        speed = f"{avg:,.0f}" if avg is not None else f"{tps:,.0f}" if tps is not None else \
            ("measuring", "dim") if h.last_train and not h.is_final else "-"
        row("epoch", f"{epoch:.2f}" if isinstance(epoch, (int, float)) else "-",
            ("   avg tokens/s " if avg is not None else "   tokens/s ", "bold"), speed)
        row("loss", loss_text(loss), ("   eval ", "bold"), loss_text(ev))
        eta = None if stalled else h.eta()  # a stuck run has no ETA
        # Steps, evaluations and saves to come (engine.eta); before the first evaluation or save is measured,
        # its cost is the estimate's rule, and the row says so. Before a step time: none yet (a model loading or
        # layers compiling shorten nothing), and the estimate's time of the whole run, as the estimate's.
        left: str | tuple[str, str] = format_duration(eta.seconds) if eta else "-"
        note = "evals/saves estimated" if eta and eta.estimated else ""
        if eta is None and starting and not stalled and h.state in STATES and h.state not in FINAL_STATES:
            left = (ETA_AFTER, "dim")
            if starting.estimate_s is not None:
                note = f"run estimated {format_duration(starting.estimate_s)}"
        width = self.content_size.width or 80
        row("elapsed", format_duration(h.elapsed_s()), ("   ETA ", "bold"), left, (f"  {note}" if note else "", "dim"))
        if starting and note and rows[-1].cell_len > width:
            rows[-1] = rows[-1][:-len(note) - 2]   # the estimate where it fits; the ETA's own words always
        if rows[-1].cell_len > width:   # a long elapsed in the narrow panel: the ETA on a row of its own, not cut
            rows.pop()
            row("elapsed", format_duration(h.elapsed_s()))
            row("ETA", left)
        row("checkpoint", self._saved(h.last_checkpoint, (h.status or {}).get("last_checkpoint")))
        if h.adapter:
            # Not "adapter    adapter": the row names what it is, the value where it went (the run's adapter/).
            row("adapter", self._saved(h.adapter, None, saved_to=True))
        return Group(*rows, *self._trouble())

    def _ages(self) -> tuple[str, ...]:
        """The ages the checkpoint and adapter rows show, as shown."""
        h, now = self.history, wall_clock()
        return tuple(format_age(now - r["time"]) for r in (h.last_checkpoint, h.adapter) if r and finite(r.get("time")))

    def _saved(self, ck: dict | None, fallback_path: str | None, *, saved_to: bool = False) -> Text:
        if not ck:
            # A run whose metrics lost the event still names its checkpoint in status.json.
            return Text(Path(fallback_path).name, style="") if fallback_path else Text("none yet", style="dim")
        path = ck.get("path") or ""
        name = Path(path).name if path else f"step {ck.get('step')}"
        if saved_to and path:
            name = f"saved to {name}/"
        age = wall_clock() - ck["time"] if finite(ck.get("time")) else None
        return Text.assemble(name, (f"  step {ck.get('step')}, {format_age(age)} ago" if age is not None else "",
                                    "dim"))

    def _stalled(self) -> Finding | None:
        h = self.history
        return stall(h.state, h.status, wall_clock(), h.run_dir)

    def _trouble(self) -> list:
        h = self.history
        if h.status_error:   # the state is `unknown` for this reason; the metrics still draw everything else
            return [Text.assemble((h.status_error, "bold yellow"),
                                  " A running trainer rewrites it when it next reports; until then the state is unknown and the"
                                  " figures come from metrics.jsonl.")]
        original = copy_of(h.run_dir, h.status) if h.state == "lost" else None
        if original is not None:   # cp -r of a live run: its status names the trainer of the run it was copied from
            msg = Text.assemble(("A copy of a run that is still training: nothing trains this folder", "yellow"),
                                f" (its trainer trains {safe_text(original, one_line=True)}). ",
                                ("Watch that run: ", "bold"), f"lorapilot monitor {shell_word(original)}",
                                ("; or continue this copy on its own: ", "bold"),
                                f"lorapilot train --resume {shell_word(h.run_dir)}")
        elif h.state == "lost":
            msg = Text.assemble(("The trainer process is gone but the run never finished", "red"),
                                " (killed, out of memory, or the machine rebooted). ",
                                ("Resume: ", "bold"), f"lorapilot train --resume {shell_word(h.run_dir)}")
        elif h.state == "failed":
            status = h.status or {}
            msg = Text.assemble(("Failed: ", "bold red"), str(status.get("error") or "see the log"),
                                ("\n" + str(status["hint"])) if status.get("hint") else "")
        else:
            stalled = self._stalled()
            if stalled is None:
                return []
            msg = Text.assemble((stalled.message, "bold yellow"), " ", stalled.fix)
        lines = list(h.log_lines)[-4:] or tail_lines(Path(h.run_dir) / LOG_FILE, 4)
        # Wrapped, not cut: the last line is usually the error that explains everything.
        tail = Text("\n".join(lines), style="dim")
        return [msg, Text("last lines of train.log:", style="bold"), tail] if lines else [msg]
