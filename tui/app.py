"""The app shell: which screen opens first, and the jumps between wizard and monitor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import RenderableType
from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.widgets import Input, TextArea

from tui.one_shot import OneShot

if TYPE_CHECKING:  # the wizard's modules load when it opens, not at start-up
    from tui.wizard_state import WizardState

# A second ctrl+c within this many seconds quits.
CTRL_C_AGAIN_S = 3.0


class LorapilotApp(App):
    TITLE = "lorapilot"
    SUB_TITLE = "QLoRA fine-tuning"
    # ctrl+q in every footer (a screen may relabel it); ctrl+c is what a terminal user presses first.
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "ctrl_c", "Quit", show=False, priority=True),
    ]

    start: str                  # the first screen: "wizard", "monitor" or "playground"
    config_path: str | None     # the config the wizard opens (None: the demo's)
    run_dir: str | None         # the run (or sweep) the monitor or the playground opens
    runs_root: str | None       # where the runs list looks (None: the default runs directory)
    wizard: WizardState | None  # the wizard's state, set by open_wizard; its step screens read it

    def __init__(self, *, start: str = "wizard", config_path: str | None = None, run_dir: str | None = None,
                 runs_root: str | None = None):
        super().__init__()
        self.start = start
        self.config_path = config_path
        self.run_dir = run_dir
        self.runs_root = runs_root
        self.wizard = None

    _ctrl_c_at: float = -1e9  # when ctrl+c was last pressed (monotonic seconds)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notify, its message always plain text, and a repaint once the toast has gone.

        Messages carry paths, run names, what was typed and errors that quote them: read as markup (Textual's
        default, which every widget's and screen's notify passes on), `Saved runs/lora[v2]/config.yaml` lost its
        `[v2]` and a stray `[/]` raised a MarkupError. No toast of the app's is styled by markup: `markup` is ignored.

        A toast that expires over the monitor's loss chart left its last frame in the terminal: Textual removed
        it but sent no update for the cells it covered, so "The run is done." stayed over the chart's newest
        points until something else redrew them (seen in tmux at 80x24, Textual 8.2)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)
        wait = self.NOTIFICATION_TIMEOUT if timeout is None else timeout
        OneShot(self, wait + 0.25, lambda: self.screen.refresh())

    async def action_quit(self) -> None:
        """ctrl+q, q: quit. The app's ctrl+q has priority over every screen's (Textual checks priority bindings
        from the app down), so a screen's own ctrl+q only labels the key; what it wants said, it says here."""
        self.exit(message=self.exit_note())

    def on_unmount(self) -> None:
        """Quitting: the data helper, if it is still working, is ended rather than waited for (see end_if_busy)."""
        import sys
        helper = sys.modules.get("tui.models.data_inspection")   # imported by the wizard, never just for this
        if helper is not None:
            helper.end_if_busy()

    def exit_note(self) -> RenderableType | None:
        """What the terminal keeps once the app has gone: the screen's `exit_note()`, if it has one."""
        note = getattr(self.screen, "exit_note", None)
        return note() if callable(note) else None

    def action_ctrl_c(self) -> None:
        """Say how to quit, and quit on a second press; a selection in a text box is copied on the way."""
        now = time.monotonic()
        if now - self._ctrl_c_at < CTRL_C_AGAIN_S:
            self.exit(message=self.exit_note())
            return
        self._ctrl_c_at = now
        focused = self.focused
        copied = ""
        # A text box selects its text on focus, so "copy, or else quit" would never quit: copy, and say how.
        if isinstance(focused, (Input, TextArea)) and focused.selected_text:
            focused.action_copy()
            copied = "Copied the selection. "
        watching = getattr(self.screen, "run_dir", None)  # a monitor: quitting it leaves the run alone
        runs_on = " The run keeps training; `lorapilot monitor` re-attaches." if watching else ""
        self.notify(f"{copied}Press ctrl+c again (or ctrl+q) to quit.{runs_on}", title="Quit?",
                    timeout=CTRL_C_AGAIN_S)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's Screenshot: ~/Downloads when there is one (a pod often has none), else here; says where."""
        if path is None:
            downloads = Path.home() / "Downloads"
            path = str(downloads if downloads.is_dir() else Path.cwd())
        try:
            saved = self.save_screenshot(filename, path, time_format)
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="Screenshot not saved", severity="error")
            return None
        self.notify(saved, title="Screenshot saved", timeout=6)
        return saved

    def on_mount(self) -> None:
        if self.start not in ("monitor", "playground"):
            self.open_wizard(self.config_path)
        elif not self.run_dir:
            self.open_runs()  # no run named: the list, to pick one (the playground never opens a run named "None")
        elif self.start == "playground":
            self.open_playground(self.run_dir)
        else:
            self.open_monitor(self.run_dir)

    def open_wizard(self, config_path: str | None) -> None:
        from tui.screens.wizard import start_wizard
        from tui.wizard_state import WizardState, initial_config

        cfg, overrides, notes = initial_config(config_path)
        self.wizard = WizardState(self, cfg, config_path=config_path, raw_overrides=overrides, notes=notes)
        start_wizard(self, self.wizard)

    def open_monitor(self, run_dir: str | Path) -> None:
        from engine.sweep.sweepdir import is_sweep_dir
        if is_sweep_dir(run_dir):
            # A sweep holds one run per trial: its own monitor, each trial opening in the run monitor.
            from tui.screens.sweep_monitor import SweepMonitorScreen
            self.push_screen(SweepMonitorScreen(str(run_dir)))
            return
        from tui.screens.monitor import MonitorScreen
        self.push_screen(MonitorScreen(str(run_dir)))

    def open_runs(self) -> None:
        from tui.screens.runs import RunsScreen
        self.push_screen(RunsScreen(self.runs_root))

    def open_playground(self, run_dir: str | Path, checkpoint: str | Path | None = None) -> None:
        """The run's final adapter, or a checkpoint's (a run still training)."""
        from tui.screens.playground import PlaygroundScreen
        self.push_screen(PlaygroundScreen(str(run_dir), checkpoint=checkpoint))
