"""Generations the trainer sampled during training, newest evaluation first (filled once the trainer writes them)."""

from __future__ import annotations

import re
from typing import Any, Iterable

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.rundir import loss_text, record_number
from tui.models.run_history import SAMPLES, Record, RunHistory


class SamplesList(VerticalScroll):
    DEFAULT_CSS = """
    SamplesList { height: 1fr; }
    """

    def __init__(self, history: RunHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self._drawn: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="samples-body")

    def on_mount(self) -> None:
        self.border_title = "Samples"
        self.sync()

    def sync(self) -> None:
        version = self.history.versions[SAMPLES]
        if version == self._drawn:
            return
        self._drawn = version
        body = self.query_one("#samples-body", Static)
        if not self.history.samples:
            body.update(Text("No samples yet. When the trainer generates from the prompts it keeps aside, "
                             "its answers appear here as the adapter learns.", style="dim"))
            return
        body.update(Group(*sample_blocks(self.history.samples)))


def sample_blocks(samples: Iterable[Record]) -> list[Text]:
    """One block per evaluation, newest first: its step and eval loss, then each prompt with its answer.

    The eval loss beside the text is what tells overfitting apart: answers that copy the training data while
    the eval loss turns up.
    """
    by_step: dict = {}
    for s in samples:
        by_step.setdefault(s.get("step"), []).append(s)
    blocks = []
    for step in reversed(list(by_step)):
        group = by_step[step]
        loss = record_number(group[0], "eval_loss")
        header = f"step {step}" + (f" · eval loss {loss_text(loss)}" if loss is not None else "")
        parts: list = [(header, "bold reverse"), "\n"]
        for s in group:
            parts += _field("prompt ", "dim bold", _tight(s.get("prompt", "")), "dim")
            parts += _field("output ", "green bold", str(s.get("output", "")), "")
            if s.get("reference"):  # the held-out answer the data gives, to read the output against
                parts += _field("expected ", "dim bold", _tight(s["reference"]), "dim")
        blocks.append(Text.assemble(*parts))
    return blocks


def _field(label: str, label_style: str, text: str, style: str) -> list:
    """A label and its text, the text's further lines indented under its first: flush left, an alpaca input
    ("window" under "Reverse the letters of the word.") read as one more label in the label column."""
    return [(label, label_style), (text.replace("\n", "\n" + " " * len(label)), style), "\n"]


def _tight(text: object) -> str:
    """A field without blank lines: one (alpaca's instruction, then its input) would read as the end of the block."""
    return re.sub(r"\n\s*\n", "\n", str(text).strip())
