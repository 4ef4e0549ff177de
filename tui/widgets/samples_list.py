"""Generations the trainer sampled during training, newest first (filled once the trainer writes them)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.widgets.run_history import SAMPLES, RunHistory


class SamplesList(VerticalScroll):
    DEFAULT_CSS = """
    SamplesList { height: 1fr; }
    """

    def __init__(self, history: RunHistory, **kw):
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
        samples = list(reversed(self.history.samples))
        if not samples:
            body.update(Text("No samples yet. When the trainer generates from the prompts it keeps aside, "
                             "its answers appear here as the adapter learns.", style="dim"))
            return
        blocks = []
        for s in samples:
            blocks.append(Text.assemble((f"step {s.get('step')}", "bold"), "\n",
                                        ("prompt ", "dim bold"), (str(s.get("prompt", "")), "dim"), "\n",
                                        ("output ", "green bold"), str(s.get("output", "")), "\n"))
        body.update(Group(*blocks))
