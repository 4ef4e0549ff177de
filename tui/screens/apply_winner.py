"""Asks where to write the sweep winner's config (`lorapilot sweep DIR --apply OUT`); dismisses with the path."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from tui.widgets.sweep_result import DEFAULT_APPLY


class ApplyWinner(ModalScreen[str | None]):
    CSS_PATH = "apply_winner.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, winner_label: str, default: str = DEFAULT_APPLY):
        super().__init__()
        self.winner_label = winner_label
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Write the winner's config[/b] ({self.winner_label})")
            yield Label("The base config with the winning lr and r, ready for lorapilot train.")
            yield Input(self.default, placeholder="OUT.yaml", id="apply-path")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Write", id="write", variant="primary")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.query_one(Input).value.strip() or None if event.button.id == "write" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
