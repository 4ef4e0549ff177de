"""Asks before stopping a run: hours of training hang on one key press."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Label

from engine.rundir import safe_text
from tui.screens.confirm import Confirm


class ConfirmStop(Confirm):
    SAFE_ID, YES_ID = "keep", "stop"   # the safe answer has the focus: a stray Enter must not end a run
    CSS_PATH = "confirm_stop.tcss"

    BINDINGS = [
        Binding("y", "answer(True)", "Stop the run"),
        Binding("n,escape", "answer(False)", "Keep training"),
    ]

    def __init__(self, run_name: str, step: int, body: str | None = None, resume: str = "lorapilot train --resume"):
        """resume: the command that continues the run, as the user would type it (its folder shell-quoted)."""
        super().__init__()
        self.run_name = run_name
        self.step = step
        self.body = body
        self.resume = resume

    def compose(self) -> ComposeResult:
        with Vertical():
            # a run's name is text from its folder: never markup, its control characters escaped
            yield Label(Content.from_markup("[b]Stop $name?[/b]", name=safe_text(self.run_name, one_line=True)))
            yield Label(Content(self.body or f"The trainer saves a checkpoint after the step it is on (step {self.step:,} "
                                f"now) and exits. You can continue later with {safe_text(self.resume, one_line=True)}"))
            with Horizontal():
                yield Button("Keep training", id="keep", variant="primary")
                yield Button("Stop (y)", id="stop", variant="error")
