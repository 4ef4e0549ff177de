"""Temperature, top-p and max new tokens for the playground: checked as typed, errors under each field.

The rules are the engine's (engine.playground.check_sampling), the same as `lorapilot chat`'s.
A bad value stays as typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Label

from engine.playground import check_sampling as check  # the rules `lorapilot chat` applies too

from tui.widgets.typed_input import TypedInput

DEFAULTS = {"temperature": "0", "top_p": "1", "max_new_tokens": "128"}
LABELS = {"temperature": "temperature", "top_p": "top-p", "max_new_tokens": "max new tokens"}
HELP = {"temperature": "0 = greedy (the same answer every time); 0.7 is a usual sampled setting",
        "top_p": "sample from the smallest set of tokens whose probability adds up to this (1 = all)",
        "max_new_tokens": "the answer stops here if the model has not stopped by itself"}


class SamplingSettings(Horizontal):
    """Posts nothing: the screen asks `values()` when it runs a prompt."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        for name, default in DEFAULTS.items():
            with Vertical(classes="setting", id=f"setting-{name}"):
                with Horizontal(classes="setting-line"):
                    yield Label(LABELS[name], classes="setting-name")
                    yield TypedInput(default, compact=True, id=f"sampling-{name}", classes="setting-editor",
                                tooltip=HELP[name])
                yield Label("", classes="setting-error")

    def on_mount(self) -> None:
        for label in self.query(".setting-error"):
            label.display = False

    def raw(self, name: str) -> str:
        return self.query_one(f"#sampling-{name}", Input).value

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.recheck()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    def recheck(self) -> None:
        self.errors = {}
        for name in DEFAULTS:
            _, error = check(name, self.raw(name))
            box = self.query_one(f"#setting-{name}")
            label = box.query_one(".setting-error", Label)
            label.update(Content(f"✗ {error}" if error else ""))  # it quotes what was typed: never markup
            label.display = bool(error)
            box.set_class(bool(error), "-invalid")
            if error:
                self.errors[name] = error

    def values(self) -> dict[str, Any] | None:
        """The settings as `Playground.stream` takes them, or None while any is invalid."""
        self.recheck()
        if self.errors:
            return None
        return {name: check(name, self.raw(name))[0] for name in DEFAULTS}

    def first_invalid(self) -> Input | None:
        for name in DEFAULTS:
            if name in self.errors:
                return self.query_one(f"#sampling-{name}", Input)
        return None
