"""Asks before stopping a run: hours of training hang on one key press."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmStop(ModalScreen[bool]):
    CSS_PATH = "confirm_stop.tcss"

    BINDINGS = [
        Binding("y", "answer(True)", "Stop the run"),
        Binding("n,escape", "answer(False)", "Keep training"),
    ]

    def __init__(self, run_name: str, step: int, body: str | None = None):
        super().__init__()
        self.run_name = run_name
        self.step = step
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Stop {self.run_name}?[/b]")
            yield Label(self.body or f"The trainer saves a checkpoint after the step it is on (step {self.step:,} now) and exits. "
                        "You can continue later with lorapilot train --resume.")
            with Horizontal():
                yield Button("Keep training", id="keep", variant="primary")
                yield Button("Stop (y)", id="stop", variant="error")

    def on_mount(self) -> None:
        # Focus on the safe answer: a stray Enter must not end a run.
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop")

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)
