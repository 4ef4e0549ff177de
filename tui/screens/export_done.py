"""Says what an export wrote and what `lorapilot export` would have printed beside it: the export's own log.

The notes matter more than the folder: vLLM serving the adapter over the unquantised base, Ollama unable to convert
the architecture. The app threw them away, so they reached only the export's README.md. An export that failed shows
the same log, the error last: the lines before it say which step it reached (the template matched, the merge begun)."""

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

    def __init__(self, target: str, lines: Sequence[str], *, error: str | None = None):
        """lines: the export's log, then the line the CLI ends with (engine.export.written_line); or, given `error`
        (the export failed), the log up to the failure, and the error is shown after it."""
        super().__init__()
        self.target = target
        self.lines = list(lines)
        self.error = error
        if error is not None:
            self.add_class("failed")

    def compose(self) -> ComposeResult:
        with Vertical():
            title = "[b]Export for $target failed[/b]" if self.error is not None else "[b]Exported for $target[/b]"
            yield Label(Content.from_markup(title, target=self.target))
            with VerticalScroll(id="export-log"):  # long notes at 80x24: scrolled, never cut
                for line in self.lines:  # paths and names from the run directory: text, never markup
                    yield Static(Content(safe_text(line)), classes="export-line")
                if self.error is not None:
                    yield Static(Content(safe_text(self.error)), classes="export-line", id="export-error")
            with Horizontal():
                yield Button("Close (esc)", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#export-log").focus()  # the arrows and page keys scroll the notes; enter or esc closes

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
