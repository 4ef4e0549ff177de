"""Editing keys keep their place among typed characters, in every text field the app has.

Textual's Input inserts a typed character where it arrives but sends a bound key (backspace, end, the arrows) up to
the app first (Textualize/textual#6605): in a burst (tmux delivering a line, a loaded machine) the characters typed
after a backspace overtook it. Correcting `data/trian.jsonl` with end, backspaces and `train.jsonl` gave the wizard
a path no one typed.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import events
from textual.app import App
from textual.widgets import Input

from engine.config import FIELDS
from tui.widgets.field_row import FieldRow

TUI = Path(__file__).resolve().parent.parent / "tui"


class PathRow(App):
    def compose(self):
        yield FieldRow(FIELDS["dataset.path"], "data/trian.jsonl")


async def test_a_typed_correction_arriving_in_one_burst_lands_in_order():
    app = PathRow()
    async with app.run_test(size=(100, 10)) as pilot:
        editor = app.query_one(Input)
        editor.focus()
        await pilot.pause()
        keys = [("home", None), ("end", None)] + [("backspace", None)] * len("trian.jsonl")
        keys += [(c, c) for c in "train.jsonl"]
        for key, character in keys:   # as the terminal delivers them: no waiting between keys
            app.post_message(events.Key(key, character))
        await pilot.pause(0.2)
        assert editor.value == "data/train.jsonl"


def test_every_text_field_of_the_app_is_a_typed_input():
    """A screen that builds a plain Input brings the reordering back for its field."""
    plain = [f"{path.relative_to(TUI.parent)}:{n}" for path in sorted(TUI.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if re.search(r"(?<![\w.])Input\(", line)]
    assert plain == []
