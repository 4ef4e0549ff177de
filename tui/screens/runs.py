"""The runs and sweeps under the runs root, newest first (a sweep's trials under it): pick one to monitor."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import getters, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.rundir import default_runs_root, format_age, loss_text, safe_text
from engine.runs_list import Row, collect, short_name, stalled_run, state_notes
from tui.screens.key_commands import KeyCommands
from tui.app import LorapilotApp
from tui.header_path import header_path
from tui.widgets.progress_panel import STATE_STYLES

REFRESH_S = 3.0


def esc_lists_runs(screen: Screen) -> bool:
    """Whether esc on a monitor leads to the runs list: the monitor was opened from it, or alone (the list takes its
    place); otherwise esc goes back where the monitor was opened from (the wizard that launched the run, a sweep's
    monitor), and its footer says Back."""
    stack = screen.app.screen_stack
    at = stack.index(screen) if screen in stack else len(stack) - 1
    return at <= 1 or isinstance(stack[at - 1], RunsScreen)


def leave_monitor(screen: Screen, folder: str) -> None:
    """esc on a monitor: back where it was opened from; opened alone, the runs list beside `folder` in its place."""
    if len(screen.app.screen_stack) > 2:
        screen.app.pop_screen()
    else:
        screen.app.switch_screen(RunsScreen(str(Path(folder).resolve().parent)))


# esc on a monitor, under the label that says where it goes (check_action keeps the one that is true, by
# esc_lists_runs): the runs list, or back to the screen that opened the monitor.
ESCAPE_BINDINGS = [Binding("escape", "back", "Runs"), Binding("escape", "back_out", "Back")]




class RunsScreen(Screen):
    COMMANDS = App.COMMANDS | {KeyCommands}   # ctrl+p finds what the keys do ("export", "log y")
    CSS_PATH = "runs.tcss"
    app = getters.app(LorapilotApp)  # typed: the screen calls the app's jumps (open_monitor, open_playground)

    BINDINGS = [
        # Priority, so the footer shows it and the table's own Enter does not open the run twice.
        Binding("enter", "open", "Monitor", priority=True),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit", show=False),  # ctrl+q (the app's) is the one the footer shows
    ]

    def __init__(self, runs_root: str | None = None):
        super().__init__()
        self.root = Path(runs_root) if runs_root else default_runs_root()
        self.runs: list[Row] = []
        self.title = "runs"
        # The folder in full: the default root is "runs", which read "runs — runs" in the header.
        self.sub_title = header_path(self.root)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-empty")
        yield Static(id="runs-notes")
        yield Static(id="runs-problems")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("run", key="run")
        table.add_column("state", key="state")
        table.add_column("step", key="step")
        table.add_column("loss", key="loss")
        table.add_column("eval", key="eval")
        table.add_column("updated", key="age")
        self.action_refresh()
        # Runs start and finish while the list is open; re-reading a few status files is cheap.
        self.set_interval(REFRESH_S, self.action_refresh)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Back to the screen the list was opened from (the wizard, its fields as typed); a list the app started on
        # (`lorapilot monitor` with no run) has nothing under it.
        if action == "back":
            return len(self.app.screen_stack) > 2
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="runs")
    def _load(self) -> None:
        problems: list[str] = []
        # what `lorapilot runs` lists, in the same order, with the same words (a stuck run is `stalled?`)
        runs = collect(self.root, stalled=stalled_run, problems=problems)
        self.app.call_from_thread(self._show, runs, problems)

    def _show(self, runs: list[Row], problems: list[str] | None = None) -> None:
        self.runs = runs
        # A run or sweep whose record is corrupt is left out, as `lorapilot runs` leaves it out: say so and why,
        # or it simply vanishes from the list.
        note = self.query_one("#runs-problems", Static)
        note.display = bool(problems)
        note.update(Text("\n".join(f"left out: {safe_text(p)}" for p in problems or [])))
        notes = self.query_one("#runs-notes", Static)
        notes.display = bool(state_notes(runs))
        notes.update(Text("\n".join(state_notes(runs)), style="dim"))  # what `stalled?` or `copy` means
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for r in runs:
            # A long name loses its middle, never the timestamp at its end: the numbers stay in 80 columns.
            # Text, not a str: a DataTable reads a str cell as markup, and a folder named `lora[v2]` lost its `[v2]`
            table.add_row(Text(short_name(r.name)), Text(r.state, style=STATE_STYLES.get(r.state, "")), r.progress,
                          loss_text(r.loss), loss_text(r.eval_loss),
                          format_age(r.age_s) + " ago" if r.age_s is not None else "-", key=r.key)
        if runs:
            table.move_cursor(row=min(keep, len(runs) - 1))
        empty = self.query_one("#runs-empty", Static)
        empty.display = not runs
        table.display = bool(runs)
        empty.update(Text(f"No runs under {safe_text(str(self.root.resolve()))}.\n\nStart one from the wizard "
                          "(lorapilot) or with lorapilot train CONFIG --detach, then come back here."))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if self.runs and table.row_count:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
            self._open(row_key.value)

    def _open(self, path: str | None) -> None:
        if path:
            self.app.open_monitor(path)  # a sweep opens in the sweep monitor
