"""The app shell: which screen opens first, and the jumps between wizard and monitor."""

from __future__ import annotations

from pathlib import Path

from textual.app import App


class LorapilotApp(App):
    TITLE = "lorapilot"
    SUB_TITLE = "QLoRA fine-tuning"

    def __init__(self, *, start: str = "wizard", config_path: str | None = None, run_dir: str | None = None,
                 runs_root: str | None = None):
        super().__init__()
        self.start = start
        self.config_path = config_path
        self.run_dir = run_dir
        self.runs_root = runs_root

    def on_mount(self) -> None:
        if self.start == "playground":
            self.open_playground(self.run_dir)
        elif self.start == "monitor":
            if self.run_dir:
                self.open_monitor(self.run_dir)
            else:
                self.open_runs()
        else:
            self.open_wizard(self.config_path)

    def open_wizard(self, config_path: str | None) -> None:
        from tui.screens.wizard import start_wizard
        start_wizard(self, config_path)

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

    def open_playground(self, run_dir: str | Path) -> None:
        from tui.screens.playground import PlaygroundScreen
        self.push_screen(PlaygroundScreen(str(run_dir)))
