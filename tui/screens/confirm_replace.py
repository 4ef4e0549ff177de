"""Asks before the wizard writes into a config file it did not open: the save-to field names a file of the user's."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Label, Static

from engine.rundir import safe_text
from tui.screens.confirm import Confirm


class ConfirmReplace(Confirm):
    SAFE_ID, YES_ID = "leave", "change"   # the safe answer has the focus: a stray Enter must not change the user's file
    CSS_PATH = "confirm_replace.tcss"

    BINDINGS = [
        Binding("y", "answer(True)", "Change it"),
        Binding("n,escape", "answer(False)", "Leave it"),
    ]

    def __init__(self, path: str, changes: Sequence[str]):
        """path: the file, in full; changes: what saving would set in it ('key: old -> new')."""
        super().__init__()
        self.path = path
        self.changes = list(changes)

    def compose(self) -> ComposeResult:
        with Vertical():
            # a path is text: never markup, its control characters escaped
            yield Label(Content.from_markup("[b]$path exists[/b]", path=safe_text(self.path, one_line=True)))
            yield Label("It is a config this wizard did not open. Saving sets these in it (its comments and other "
                        "keys kept):")
            with VerticalScroll(id="replace-changes"):
                for line in self.changes:
                    yield Static(Content(safe_text(line)), classes="replace-change")
            with Horizontal():
                yield Button("Leave it (esc)", id="leave", variant="primary")
                yield Button("Change it (y)", id="change", variant="warning")
