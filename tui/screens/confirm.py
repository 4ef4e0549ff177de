"""A question with a yes and a safe no, asked in a modal dialog: the safe answer has the focus (a stray Enter picks
it), y and n (or escape) answer from the keyboard, and the dialog is dismissed with True for yes."""

from __future__ import annotations

from typing import ClassVar

from textual.screen import ModalScreen
from textual.widgets import Button


class Confirm(ModalScreen[bool]):
    """Subclasses compose the dialog with two buttons, ids SAFE_ID and YES_ID, and bind y and n,escape to
    answer(True) and answer(False) with their own words for the footer."""

    SAFE_ID: ClassVar[str]
    YES_ID: ClassVar[str]

    def on_mount(self) -> None:
        # Focus on the safe answer: a stray Enter must not do what the dialog asks about.
        self.query_one(f"#{self.SAFE_ID}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == self.YES_ID)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
