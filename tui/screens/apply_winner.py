"""Asks where to write the sweep winner's config (`lorapilot sweep DIR --apply OUT`); dismisses with the path.

A file already there is the user's: it is replaced only after a second press that says Replace."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from tui.widgets.sweep_result import DEFAULT_APPLY
from tui.widgets.typed_input import TypedInput


class ApplyWinner(ModalScreen[str | None]):
    CSS_PATH = "apply_winner.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, winner_label: str, default: str = DEFAULT_APPLY):
        super().__init__()
        self.winner_label = winner_label
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content.from_markup("[b]Write the winner's config[/b] ($label)", label=self.winner_label))
            yield Label("The base config with the winning lr and r, ready for lorapilot train.")
            yield TypedInput(self.default, placeholder="OUT.yaml", id="apply-path")
            yield Label("", id="apply-exists")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Write", id="write", variant="primary")

    def on_mount(self) -> None:
        self._check_exists()

    @on(Input.Changed, "#apply-path")
    def _check_exists(self) -> None:
        path = self.query_one(Input).value.strip()
        exists = bool(path) and Path(path).is_file()
        note = self.query_one("#apply-exists", Label)
        note.update(Content(f"{path} exists: Replace overwrites it." if exists else ""))  # a path: never markup
        note.display = exists
        self.query_one("#write", Button).label = "Replace" if exists else "Write"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._write()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "write":
            self._write()
        else:
            self.dismiss(None)

    def _write(self) -> None:
        path = self.query_one(Input).value.strip()
        if path and Path(path).is_file() and self.focused is not self.query_one("#write", Button):
            # Enter in the field over an existing file: the Replace button is the yes, not the same Enter.
            self._check_exists()
            self.query_one("#write", Button).focus()
            return
        self.dismiss(path or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
