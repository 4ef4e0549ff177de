"""The sweep monitor: `lorapilot monitor SWEEP_DIR`. One line per trial while it runs, the result table,
heatmap and winner once it is done. Reads only; quitting leaves the sweep running.

A worker thread calls engine.sweep.summarize_sweep every POLL_S and hands the
summary over only when it differs from the last one; the widgets redraw from it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.errors import UserError, shell_word
from engine.rundir import STATUS_FILE, loss_text, safe_text
from engine.sweep import summarize_sweep
from engine.sweep.plan import lr_text
from engine.sweep.sweepdir import SWEEP_FINAL_STATES
from tui.screens.key_commands import KeyCommands
from tui.screens.runs import ESCAPE_BINDINGS, esc_lists_runs
from tui.header_path import header_path
from tui.widgets.progress_panel import STATE_STYLES, format_duration
from tui.widgets.sweep_result import SweepResult
from tui.widgets.sweep_trials import SweepTrials

POLL_S = 1.5


def _signature(summary: dict) -> str:
    """What a redraw depends on; the running clock only in 10 s steps."""
    shown = {k: v for k, v in summary.items() if k not in ("elapsed_s", "remaining_s")}
    shown["elapsed_10s"] = int((summary.get("elapsed_s") or 0) // 10)
    shown["remaining_10s"] = int((summary.get("remaining_s") or 0) // 10)
    return json.dumps(shown, sort_keys=True, default=str)


class SweepMonitorScreen(Screen):
    COMMANDS = App.COMMANDS | {KeyCommands}   # ctrl+p finds what the keys do ("export", "log y")
    CSS_PATH = "sweep_monitor.tcss"

    BINDINGS = [
        # Priority, so the footer shows it and the table's own Enter does not open the trial twice.
        Binding("enter", "open_trial", "Trial monitor", priority=True),
        Binding("x", "stop_sweep", "Stop sweep…"),
        Binding("a", "apply", "Write winner…"),
        *ESCAPE_BINDINGS,
        # ctrl+q quits everywhere (the app's binding); the label says whether the sweep goes on without us.
        Binding("ctrl+q", "quit_monitor", "Quit (sweep continues)", priority=True),
        Binding("ctrl+q", "quit_finished", "Quit", priority=True),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    def __init__(self, sweep_dir: str, *, poll_s: float = POLL_S):
        super().__init__()
        self.sweep_dir = sweep_dir
        self.poll_s = poll_s
        self.summary: dict | None = None
        self._signature = ""
        self.sweep_name = Path(sweep_dir).resolve().name
        # As the runs list: what it is, then where. "<name> — sweep" repeated the word of a name like "sweep-…".
        self.title = "sweep"
        self.sub_title = header_path(sweep_dir)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="sweep-status")
        with VerticalScroll(id="sweep-body"):
            yield SweepTrials(id="sweep-trials")
            yield SweepResult(self.sweep_dir, id="sweep-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SweepResult).display = False
        self.query_one("#sweep-status", Static).update(Text("reading the sweep…", style="dim"))
        self._poll()
        self.set_interval(self.poll_s, self._poll)

    # ------------------------------------------------------------ data

    @work(thread=True, exclusive=True, group="sweep-poll")
    def _poll(self) -> None:
        try:
            summary = summarize_sweep(self.sweep_dir)
        except UserError as e:  # sweep.json gone or not JSON: say so, try again next time
            self.app.call_from_thread(self._show_error, str(e))
            return
        except (KeyError, TypeError) as e:  # JSON, but not a sweep record the driver wrote
            self.app.call_from_thread(self._show_error, f"{self.sweep_dir}/sweep.json: not a sweep record "
                                                        f"(missing {e}); made by lorapilot sweep?")
            return
        sig = _signature(summary)
        if sig != self._signature:
            self._signature = sig
            self.app.call_from_thread(self._show, summary)

    def _show_error(self, message: str) -> None:
        self.query_one("#sweep-status", Static).update(Text(message, style="bold red"))

    def _show(self, summary: dict) -> None:
        keys_before = self._keys_shown()
        self.summary = summary
        self.query_one("#sweep-status", Static).update(self._status_line(summary, self.sweep_dir))
        self.query_one(SweepTrials).show(summary)
        self.query_one(SweepResult).show(summary)
        if self._keys_shown() != keys_before:
            self.refresh_bindings()

    def _keys_shown(self) -> tuple[bool, bool]:
        """What check_action decides from the summary: whether the sweep goes on (Stop, the quit label), a winner."""
        return self._goes_on(), bool(self.summary and self.summary.get("winner"))

    @staticmethod
    def _status_line(s: dict, sweep_arg: str) -> Text:
        trials = s["trials"]
        ended = sum(t["state"] in ("done", "stopped", "failed", "skipped") for t in trials)
        out = Text()
        out.append(s["state"], style=STATE_STYLES.get(s["state"], "bold"))
        out.append(f"  {ended}/{len(trials)} ended · {s['steps']} steps · ")
        out.append(format_duration(s.get("elapsed_s")))
        if s.get("remaining_s") is not None:
            out.append(f", ~{format_duration(s['remaining_s'])} left")
        best = s.get("winner") or s.get("best")
        if best:
            label = "winner" if s.get("winner") else "best so far"
            # With the time left the line no longer fits 80 columns: the best gets its own, unbroken.
            out.append(f"\n{label} " if s.get("remaining_s") is not None else f"  ·  {label} ", style="dim")
            out.append(f"★ lr {lr_text(best['learning_rate'])} r {best['r']} eval {loss_text(best['eval_loss'])}",
                       style="bold green")
        if s.get("error"):
            out.append(f"\n{s['error']}", style="red")
        if s["state"] == "lost":   # a pod preempted, the machine restarted: the sweep can go on
            out.append("\nits driver is gone; to go on: ", style="yellow")
            out.append(f"lorapilot sweep --resume {shlex.quote(sweep_arg)}", style="cyan")   # as the user named it
        return out

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("back", "back_out"):
            return esc_lists_runs(self) == (action == "back")
        if action == "apply":
            return bool(self.summary and self.summary.get("winner"))
        if action in ("quit_monitor", "quit_finished"):
            return self._goes_on() == (action == "quit_monitor")
        if action == "stop_sweep":  # nothing to stop once the sweep has ended (or before it is read), as for a run
            return self._goes_on()
        return True

    def action_open_trial(self) -> None:
        table = self.query_one(SweepTrials)
        if table.row_count:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
            self._open(row_key.value)

    @on(DataTable.RowSelected, "#sweep-trials")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def _open(self, trial_id: str | None) -> None:
        run_dir = Path(self.sweep_dir) / str(trial_id)
        if not trial_id or not (run_dir / STATUS_FILE).is_file():
            self.notify(f"{trial_id} has not started: nothing to monitor yet.", severity="warning")
            return
        from tui.screens.monitor import MonitorScreen
        self.app.push_screen(MonitorScreen(str(run_dir)))

    def action_stop_sweep(self) -> None:
        from engine.sweep.sweepdir import request_sweep_stop
        from tui.screens.confirm_stop import ConfirmStop

        summary = self.summary
        if not summary or not self._goes_on():  # the key is hidden then; this guards a stale footer's click
            state = summary["state"] if summary else "unknown"
            self.notify(f"This sweep is {state}: there is nothing to stop.", severity="warning")
            return
        running = sum(t["state"] not in ("pending", "skipped", "done", "stopped", "failed", "lost")
                      for t in summary["trials"])

        def answered(stop: bool | None) -> None:
            if not stop:
                return
            try:
                asked = request_sweep_stop(self.sweep_dir)
            except UserError as e:
                self.notify(str(e), severity="error")
                return
            self.notify("Stop requested: running trials checkpoint and stop; no new ones start." if asked
                        else "The sweep is no longer running.", timeout=4)

        self.app.push_screen(ConfirmStop(
            f"the whole sweep {self.sweep_name}", 0,
            body=f"{running} running trial{'s' * (running != 1)} save a checkpoint and stop; the pending ones "
                 "never start. The table and winner are made from what finished."), answered)

    def action_apply(self) -> None:
        from engine.sweep.report import apply_winner
        from engine.sweep.sweepdir import read_sweep
        from tui.screens.apply_winner import ApplyWinner

        w = (self.summary or {}).get("winner")
        if not w:
            self.notify("No winner yet: the sweep has to finish first.", severity="warning")
            return

        def answered(path: str | None) -> None:
            if not path:
                return
            try:
                written = apply_winner(read_sweep(self.sweep_dir), path, replace=True)  # the dialog asked
            except (UserError, OSError) as e:
                self.notify(str(e), severity="error", timeout=6)
                return
            self.notify(f"Written {written}. Next: lorapilot train {shell_word(written)}", timeout=8)

        self.app.push_screen(ApplyWinner(f"lr {lr_text(w['learning_rate'])}, r {w['r']}"), answered)

    def action_back(self) -> None:
        from tui.screens.runs import leave_monitor
        leave_monitor(self, self.sweep_dir)

    def action_back_out(self) -> None:
        self.action_back()

    # ctrl+q reaches the app's quit first (priority); these two only choose the footer's label (check_action).
    def action_quit_monitor(self) -> None:
        # The driver is a detached process: it never hears of the monitor.
        self.app.exit(message=self.exit_note())

    def action_quit_finished(self) -> None:
        self.app.exit()

    def _goes_on(self) -> bool:
        """Whether the sweep runs on without the monitor: not before it has been read, not once ended or lost."""
        return self.summary is not None and self.summary["state"] not in SWEEP_FINAL_STATES + ("lost", "unknown")

    def exit_note(self) -> Text | None:
        """Left in the terminal when the app quits from here while the sweep runs (App.exit_note asks): the sweep
        did not go with the app, and this is the way back to it."""
        if not self._goes_on():
            return None
        sweep = safe_text(shlex.quote(self.sweep_dir), one_line=True)
        return Text.assemble(
            "lorapilot: the sweep goes on in the background.\n",
            "watch: ", (f"lorapilot monitor {sweep}", "bold"), "\n",
            "stop:  ", (f"lorapilot stop {sweep}", "bold"))
