"""Says what an export wrote and what `lorapilot export` would have printed beside it: the export's own log.

The notes matter more than the folder: vLLM serving the adapter over the unquantised base, Ollama unable to convert
the architecture. The app threw them away, so they reached only the export's README.md."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from engine.rundir import safe_text


class ExportDone(ModalScreen[None]):
    CSS_PATH = "export_done.tcss"

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, target: str, lines: Sequence[str]):
        """lines: the export's log, then the line the CLI ends with (engine.export.written_line)."""
        super().__init__()
        self.target = target
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content.from_markup("[b]Exported for $target[/b]", target=self.target))
            with VerticalScroll(id="export-log"):  # long notes at 80x24: scrolled, never cut
                for line in self.lines:  # paths and names from the run directory: text, never markup
                    yield Static(Content(safe_text(line)), classes="export-line")
            with Horizontal():
                yield Button("Close (esc)", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#export-log").focus()  # the arrows and page keys scroll the notes; enter or esc closes

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
