"""The live monitor: attaches to any run directory, reads it only, and never touches the run.

A worker thread polls the directory (RunFeed) and posts what changed as one
message; the screen folds it into a RunHistory and asks each panel to sync,
and a panel redraws only when its part of the history moved. The poll period
(0.5 s) is also the most often anything redraws. New metric records join the
history only when the charts are drawn, so the charts and the text panels
always show the same records.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path

from rich.text import Text
from textual import getters, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.events import Resize
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import get_current_worker

from engine.errors import UserError, shell_word
from engine.rundir import ADAPTER_DIR, FINAL_STATES, safe_text
from tui.screens.key_commands import KeyCommands
from tui.screens.runs import ESCAPE_BINDINGS, esc_lists_runs
from tui.app import LorapilotApp
from tui.models.run_feed import FeedUpdate, RunFeed
from tui.models.run_history import GPU, PROGRESS, SYSTEM, Record, RunHistory
from tui.one_shot import OneShot
from tui.screens.confirm_stop import ConfirmStop
from tui.screens.export_choice import ExportChoice
from tui.widgets.findings_list import FindingsList
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.log_tail import LogTail
from tui.widgets.loss_chart import SMOOTHING_STEPS, LossChart
from tui.widgets.lr_chart import LrChart
from tui.widgets.monitor_panel import HistoryView
from tui.widgets.progress_panel import ProgressPanel
from tui.widgets.samples_list import SamplesList
from tui.widgets.system_panel import SystemPanel

# What changed is drawn at most this often: every repaint costs Textual a
# compositor pass, and a trainer writes metrics, log and status a few ms apart.
PANELS_EVERY_S = 1.0
# Charts cost the most to redraw (textual-plot re-renders every canvas).
CHARTS_EVERY_S = 3.0

# Below this the panels do not fit side by side and collapse into tabs.
GRID_MIN = Size(100, 30)
# From this height the grid also has room for the samples panel.
TALL = 40

# A run that will write nothing more: finished, or its trainer gone ("lost").
ENDED = (*FINAL_STATES, "lost")

# The tabs at 80x24, in the order of their keys (1-6): each label starts with its key, or nobody finds them.
TABS = {"overview": "Overview", "lr": "LR·grad", "hardware": "GPU·sys", "diagnostics": "Diagnostics", "log": "Log",
        "samples": "Samples"}


def tab_label(name: str, title: str | None = None) -> Content:
    """'1 Overview': the tab's key, then its title (the diagnostics tab's carries its count)."""
    return Content.assemble(Content.styled(str(list(TABS).index(name) + 1), "bold $text-accent"), " ",
                            title or TABS[name])


class MonitorScreen(Screen):
    COMMANDS = App.COMMANDS | {KeyCommands}   # ctrl+p finds what the keys do ("export", "log y")
    CSS_PATH = "monitor.tcss"
    app = getters.app(LorapilotApp)  # typed: the screen calls the app's jumps (open_monitor, open_playground)
    # Focus would land on the loss chart, whose zoom and pan keys then crowd
    # the monitor's own out of the footer; Tab or a click still focuses a chart.
    AUTO_FOCUS = ""

    BINDINGS = [
        # ctrl+q quits everywhere (the app's binding); the label says whether the run goes on without us.
        Binding("ctrl+q", "quit_monitor", "Quit (run continues)", priority=True),
        Binding("ctrl+q", "quit_finished", "Quit", priority=True),
        Binding("q", "app.quit", "Quit", show=False),
        *ESCAPE_BINDINGS,
        Binding("s", "cycle_smoothing", "Smooth"),
        Binding("l", "toggle_log_scale", "Log y", show=False),  # in the palette; the footer must fit 80 columns
        Binding("x", "stop_run", "Stop…"),
        Binding("p", "playground", "Playground"),
        Binding("e", "export", "Export…"),
        *[Binding(str(i + 1), f"show_tab('{t}')", f"{title} tab", show=False) for i, (t, title) in enumerate(TABS.items())],
    ]

    compact: reactive[bool] = reactive(False, recompose=True)

    class Updated(Message):
        """New data from the run directory or the machine (posted by the feed thread)."""

        def __init__(self, update: FeedUpdate):
            super().__init__()
            self.update = update

    def __init__(self, run_dir: str, *, poll_s: float = 0.5, sample_every: float = 2.0,
                 sample_gpus: bool = True):
        super().__init__()
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.history = RunHistory(run_dir)
        self.feed = RunFeed(run_dir, sample_every=sample_every, sample_gpus=sample_gpus)
        self.smoothing = 0.0
        self.log_scale = False
        self._stop = threading.Event()
        self._flushed_at = self._charts_drawn_at = -1e9
        self._flush_timer: OneShot | None = None
        self._flush_due = 0.0
        self._panels_dirty = self._charts_dirty = False
        self._pending: list[Record] = []   # metric records read but not yet drawn (see _fold)
        self._catching_up = False          # a long metrics file is still being read in chunks
        self._panel_cache: list[HistoryView] | None = None
        self._samples_shown = False
        self._findings_label = ""
        self.announced: str | None = None  # the terminal title set when the run ended while watched
        self.title = Path(run_dir).resolve().name

    # ------------------------------------------------------------ layout

    @staticmethod
    def wants_compact(size: Size) -> bool:
        return size.width < GRID_MIN.width or size.height < GRID_MIN.height

    def compose(self) -> ComposeResult:
        self.set_reactive(MonitorScreen.compact, self.wants_compact(self.app.size))
        # A recompose (a resize across GRID_MIN) builds new widgets: forget the old ones.
        self._panel_cache, self._samples_shown, self._findings_label = None, False, ""
        self.call_after_refresh(self._update_chrome)
        h = self.history
        chart = LossChart(h, smoothing=self.smoothing, log_scale=self.log_scale, id="loss")
        if self.compact:
            # Every row counts at 80x24: no header; the run's name is in the progress title.
            with TabbedContent(id="tabs", initial="tab-overview"):
                with TabPane(tab_label("overview"), id="tab-overview"):
                    yield ProgressPanel(h, run_name=self.title, id="progress")
                    yield chart
                with TabPane(tab_label("lr"), id="tab-lr"):
                    yield LrChart(h, id="lr")
                with TabPane(tab_label("hardware"), id="tab-hardware"):
                    yield GpuPanel(h, id="gpu")
                    yield SystemPanel(h, id="system")
                with TabPane(tab_label("diagnostics"), id="tab-diagnostics"):
                    yield FindingsList(h, id="findings")
                with TabPane(tab_label("log"), id="tab-log"):
                    yield LogTail(h, id="log")
                with TabPane(tab_label("samples"), id="tab-samples"):
                    yield SamplesList(h, id="samples")
        else:
            yield Header(show_clock=False)
            with Horizontal(id="grid"):
                with Vertical(id="charts"):
                    yield chart
                    yield LrChart(h, id="lr")
                with Vertical(id="side"):
                    yield ProgressPanel(h, id="progress")
                    yield GpuPanel(h, id="gpu")
                    yield SystemPanel(h, id="system")
                    yield SamplesList(h, id="samples")
            with Horizontal(id="bottom"):
                yield FindingsList(h, id="findings")
                yield LogTail(h, id="log")
        yield Footer()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.height >= TALL, "-tall")
        compact = self.wants_compact(event.size)
        if compact != self.compact:
            self.compact = compact

    def on_mount(self) -> None:
        self._follow()

    def on_unmount(self) -> None:
        self._stop.set()

    def _panels(self) -> list[HistoryView]:
        # Cached: a DOM query on every poll walks every canvas of every chart.
        if self._panel_cache is None:
            self._panel_cache = self._views("#progress, #gpu, #system, #findings, #log, #samples")
        return self._panel_cache

    def _views(self, selector: str) -> list[HistoryView]:
        return [w for w in self.query(selector) if isinstance(w, HistoryView)]

    def _schedule_flush(self) -> None:
        """Draw now if the screen rested long enough, else once, later (leading and trailing edge)."""
        self._flush_at(self._flushed_at + PANELS_EVERY_S)

    def _flush_at(self, when: float) -> None:
        # One timer: an earlier flush already scheduled serves this one too.
        if self._flush_timer is not None:
            if self._flush_due <= when:
                return
            self._flush_timer.stop()
        wait = when - time.monotonic()
        if wait <= 0:
            self._flush_timer = None
            self._flush()
        else:
            self._flush_due = when
            self._flush_timer = OneShot(self, wait, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        if self._catching_up:   # the last chunk schedules the flush
            return
        now = time.monotonic()
        due = self._charts_drawn_at + CHARTS_EVERY_S
        if self._charts_dirty and due <= now:
            self._fold()
        if self._panels_dirty:
            self._flushed_at = now
            self._panels_dirty = False
            # The state only: a title that changed with every step would re-lay out the screen each time.
            self.sub_title = self.history.state
            for panel in self._panels():
                panel.sync()
            self._update_chrome()
        if self._charts_dirty:
            if due > now:
                self._flush_at(due)
                return
            self._charts_dirty, self._charts_drawn_at = False, now
            for chart in self._views("#loss, #lr"):   # every few seconds at most: a query is fine here
                chart.sync()

    def _fold(self) -> None:
        """New records into the history, at the pace of the charts: a panel drawn from records the chart has not
        drawn yet would read step 24, loss 3.145 beside a chart that ends at step 20."""
        if self._pending:
            self.history.apply_records(self._pending)
            self._pending = []
            self._panels_dirty = True

    # ------------------------------------------------------------ data

    @work(thread=True, exclusive=True, name="run-feed")
    def _follow(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled and not self._stop.is_set():
            update = self.feed.poll()
            if update:
                self.post_message(self.Updated(update))
            if not update.more:
                self._stop.wait(self.poll_s)

    @on(Updated)
    def _apply(self, message: Updated) -> None:
        up, h = message.update, self.history
        self._pending += up.records
        self._catching_up = up.more
        if up.more:   # nothing is drawn until the last chunk: fold each now rather than hold them all
            self._fold()
        if up.status is not None:
            h.status, h.status_error, h.planned_steps = up.status, up.status_error, up.max_steps
            h.schedule = up.schedule
            h.bump(PROGRESS)
        if up.state is not None:
            if up.state in ENDED and h.state not in ENDED and h.state != "unknown":
                self._announce_end(up.state)  # ended while watched (not a run that had ended before we looked)
            h.state = up.state
            h.bump(PROGRESS)
            self.refresh_bindings()  # the Playground key appears once the adapter is written
        if up.log_lines is not None:
            h.apply_log(up.log_lines, up.log_reset)
        if up.machine is not None:
            h.machine, h.process = up.machine, up.process
            h.bump(SYSTEM)
        if up.gpus is not None and up.gpus != (h.gpu_state, h.gpu_reason, h.gpus):
            h.gpu_state, h.gpu_reason, h.gpus = up.gpus
            h.bump(GPU)
        self._panels_dirty = True
        self._charts_dirty |= bool(up.records)
        if not up.more:   # the first read of a long file comes in chunks: draw once, at the end
            self._schedule_flush()

    def _update_chrome(self) -> None:
        """The samples panel and the diagnostics tab's count, touched only when they change."""
        h = self.history
        if not self.compact and bool(h.samples) != self._samples_shown:
            self._samples_shown = bool(h.samples)
            self.query_one("#side").set_class(self._samples_shown, "has-samples")
        label = f"Diagnostics ({len(h.findings)})" if h.findings else "Diagnostics"
        if self.compact and label != self._findings_label:
            self._findings_label = label
            self.query_one(TabbedContent).get_tab("tab-diagnostics").label = tab_label("diagnostics", label)

    def _announce_end(self, state: str) -> None:
        """Bell and terminal title, so a user in another tmux window (or tab) learns that the run ended."""
        from engine.settings import notify_on_end
        if not notify_on_end():
            return
        name = "".join(c for c in Path(self.run_dir).resolve().name if c.isprintable())[:60]
        self.announced = f"lorapilot: {name} {state}"
        self.app.bell()
        driver = getattr(self.app, "_driver", None)  # Textual has no title API: OSC 2 sets the terminal's
        if driver is not None:
            driver.write(f"\x1b]2;{self.announced}\x07")
        self.notify(f"The run is {state}.", title=name, severity="error" if state == "failed" else "information",
                    timeout=10)

    # ------------------------------------------------------------ actions

    # ctrl+q reaches the app's quit first (priority); these two only choose the footer's label (check_action).
    def action_quit_monitor(self) -> None:
        # Only the monitor goes: the trainer is a detached process that never hears of it.
        self.app.exit(message=self.exit_note())

    def action_quit_finished(self) -> None:
        self.app.exit()

    def exit_note(self) -> Text | None:
        """Left in the terminal when the app quits from here while the run goes on: a beginner who quit mid-run
        must not think the run went with the app, and needs the way back to it. A stopped run: the way on."""
        run = safe_text(shlex.quote(self.run_dir), one_line=True)
        if self.history.state == "stopped":  # stopped gracefully: it saved a checkpoint to go on from
            return Text.assemble(f"lorapilot: the run stopped at step {self.history.step:,}; continue it: ",
                                 (f"lorapilot train --resume {run}", "bold"))
        if self.history.state in (*ENDED, "unknown"):
            return None
        return Text.assemble(
            "lorapilot: the run goes on in the background.\n",  # then the lines `lorapilot train --detach` prints
            "watch: ", (f"lorapilot monitor {run}", "bold"), "\n",
            "stop:  ", (f"lorapilot stop {run}", "bold"))

    def action_back(self) -> None:
        from tui.screens.runs import leave_monitor
        leave_monitor(self, self.run_dir)

    def action_back_out(self) -> None:
        self.action_back()

    def action_cycle_smoothing(self) -> None:
        i = SMOOTHING_STEPS.index(self.smoothing) if self.smoothing in SMOOTHING_STEPS else 0
        self.smoothing = SMOOTHING_STEPS[(i + 1) % len(SMOOTHING_STEPS)]
        self.query_one("#loss", LossChart).smoothing = self.smoothing
        self.notify(f"Smoothing {'off' if not self.smoothing else f'EMA {self.smoothing:g}'}", timeout=1.5)

    def action_toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self.query_one("#loss", LossChart).log_scale = self.log_scale

    def action_show_tab(self, name: str) -> None:
        if self.compact:
            self.query_one(TabbedContent).active = f"tab-{name}"

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("back", "back_out"):
            return esc_lists_runs(self) == (action == "back")
        if action in ("quit_monitor", "quit_finished"):
            return (self.history.state in ENDED) == (action == "quit_finished")
        if action == "stop_run":  # nothing to stop once the trainer has exited (or before the run is read)
            return self.history.state not in (*ENDED, "unknown")
        if action == "export":  # a finished run only: the adapter is final
            return self.history.state == "done" and (Path(self.run_dir) / ADAPTER_DIR).is_dir()
        return True

    def why_not(self, action: str) -> str | None:
        """Why a key check_action turns off does nothing now (the palette says it when that key is chosen)."""
        if action == "export":
            return f"Export needs a finished run with its final adapter; this run is {self.history.state}."
        if action == "stop_run":
            return f"Nothing to stop: this run is {self.history.state}."
        return None

    def action_playground(self) -> None:
        if (Path(self.run_dir) / ADAPTER_DIR).is_dir():
            self.app.open_playground(self.run_dir)
            return
        h = self.history
        if h.state in ENDED:
            why = f"This run is {h.state} without a final adapter: resume it (lorapilot train --resume {shell_word(self.run_dir)})."
            self.notify(why, title="No adapter yet", severity="warning", timeout=8)
            return
        # Still training: the newest checkpoint, when a second copy of the model fits beside the trainer (reading
        # the model's size may touch the disk or the hub: not on the UI thread).
        self._playground_on_checkpoint(list(h.gpus) if h.gpu_state == "ok" else [], h.step, h.max_steps)

    @work(thread=True, exclusive=True, group="monitor-playground")
    def _playground_on_checkpoint(self, gpus: list, step: int, max_steps: int | None) -> None:
        from engine.config import load_config
        from engine.playground import newest_checkpoint, no_room_to_chat
        from engine.rundir import CONFIG_FILE, checkpoint_step

        checkpoint, title, why = newest_checkpoint(self.run_dir), "No checkpoint yet", None
        try:
            cfg = load_config(Path(self.run_dir) / CONFIG_FILE)
            if checkpoint is None:
                why = _first_checkpoint_text(cfg.training.save_steps, step, max_steps)
            else:
                title, why = f"Not enough GPU memory for checkpoint-{checkpoint_step(checkpoint)}", \
                    no_room_to_chat(cfg, gpus)
                if why:
                    why += " p works once the run is done."
        except UserError as exc:  # an unreadable config.yaml, a model whose size cannot be read
            title, why = "The playground cannot open", str(exc)
        except Exception as exc:  # noqa: BLE001 - said in a toast; say() logs a bug with its traceback
            from tui.error_log import say
            title, why = "The playground cannot open", say(exc, "opening the playground on a checkpoint")
        if why:
            self.app.call_from_thread(self.notify, why, title=title, severity="warning", timeout=10)
        else:
            self.app.call_from_thread(self.app.open_playground, self.run_dir, checkpoint)

    def action_stop_run(self) -> None:
        h = self.history
        if h.state in FINAL_STATES or h.state in ("lost", "unknown"):
            self.notify(f"This run is {h.state}: there is nothing to stop.", severity="warning")
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self._request_stop()

        self.app.push_screen(ConfirmStop(Path(self.run_dir).resolve().name, h.step,
                                         resume=f"lorapilot train --resume {shell_word(self.run_dir)}"), answered)

    def _request_stop(self) -> None:
        try:
            from engine.train.launch import request_stop
        except ImportError:
            self.notify("Stopping is not available in this build (engine.train.launch is missing).",
                        severity="error")
            return
        try:
            asked = request_stop(self.run_dir)
        except (UserError, OSError) as e:
            self.notify(f"Could not stop the run: {e}", severity="error")
            return
        if asked is False:
            self.notify("The trainer is no longer running: nothing to stop.", severity="warning")
        else:
            self.notify("Asked the trainer to save a checkpoint and stop.", timeout=4)

    def action_export(self) -> None:
        from engine.export import default_out
        from engine.export.merge import check_empty_out

        hint = str(default_out(self.run_dir, "x"))[:-2]

        def chosen(target: str | None) -> None:
            if not target:
                return
            try:  # the app has no --out to choose another folder: say what works here
                check_empty_out(default_out(self.run_dir, target))
            except UserError as e:
                self.notify(f"Export for {target}: {e.message}; nothing was written.\nMove or rename that folder, or "
                            f"export elsewhere from a shell: lorapilot export {shell_word(self.run_dir)} --for {target} --out DIR",
                            severity="error", timeout=12)
                return
            self.notify(f"Exporting for {target} (merging can take minutes) ...", timeout=4)
            self._export(target)

        self.app.push_screen(ExportChoice(Path(self.run_dir).resolve().name, hint), chosen)

    @work(thread=True, exclusive=True, name="export")
    def _export(self, target: str) -> None:
        from engine.export import export_for, written_line
        from tui.screens.export_done import ExportDone

        said: list[str] = []  # the export's log: the lines `lorapilot export` prints, its notes among them
        try:
            out = export_for(target, self.run_dir, log=said.append)
        except (UserError, OSError) as e:  # with the lines logged before it: they say which step failed
            self.app.call_from_thread(self.app.push_screen, ExportDone(target, said, error=str(e)))
            return
        self.app.call_from_thread(self.app.push_screen, ExportDone(target, [*said, written_line(target, out)]))


def _first_checkpoint_text(save_steps: int, step: int, max_steps: int | None) -> str:
    """When the playground can first open on a run still training (its first checkpoint)."""
    at = f"at step {step}/{max_steps or '?'}"
    if max_steps and save_steps >= max_steps:
        return f"This run saves no checkpoint before its end (save_steps {save_steps}; {at}): p works once it is done."
    return (f"The playground opens on the newest checkpoint; the first comes at step {save_steps} "
            f"(save_steps), {at} now.")
