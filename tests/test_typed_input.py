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


async def _burst(app: App, widget_type, keys) -> object:
    """The keys sent to the app's one widget of that type as the terminal delivers them: no waiting between keys."""
    async with app.run_test(size=(100, 10)) as pilot:
        widget = app.query_one(widget_type)
        widget.focus()
        await pilot.pause()
        for key in keys:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause(0.2)
        return widget


async def test_a_typed_correction_arriving_in_one_burst_lands_in_order():
    keys = ["home", "end"] + ["backspace"] * len("trian.jsonl") + list("train.jsonl")
    assert (await _burst(PathRow(), Input, keys)).value == "data/train.jsonl"


class Prompt(App):
    def compose(self):
        from tui.widgets.prompt_box import PromptBox

        yield PromptBox()


async def test_the_playgrounds_prompt_keeps_a_burst_in_order_too():
    from tui.widgets.prompt_box import PromptBox

    keys = list("Whta is") + ["left"] * 3 + ["backspace"] * 2 + list("at")
    assert (await _burst(Prompt(), PromptBox, keys)).text == "What is"


def test_every_text_field_of_the_app_is_a_typed_input():
    """A screen that builds a plain Input brings the reordering back for its field."""
    plain = [f"{path.relative_to(TUI.parent)}:{n}" for path in sorted(TUI.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if re.search(r"(?<![\w.])Input\(", line)]
    assert plain == []
