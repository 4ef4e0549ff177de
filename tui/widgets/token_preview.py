"""Examples as the model will see them: the masked prompt dim, the trained response highlighted.

The split comes from the engine's `preview_segments`, i.e. from the labels
themselves, so what is green here is exactly what the loss is computed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.error_log import say

SHOWN = 5  # examples at once; more would not fit a 24-line terminal anyway


def _segments(example: Any) -> list[tuple[str, bool]]:
    from engine.data import preview_segments
    return list(preview_segments(example))


def render_example(example: Any) -> Content:
    # The file's name is enough next to the path field; the line number is what points at the row.
    source = Path(str(example.source)).name
    head = (f"{source} · {len(example)} tokens, {example.trained_tokens} trained"
            + (" · truncated" if getattr(example, "truncated", False) else ""))
    parts = [Content.styled(head, "bold $text-primary"), Content("\n")]
    try:
        segments = _segments(example)
    except Exception as exc:  # noqa: BLE001 - the preview is a view; its failure must not hide the statistics
        return Content.assemble(*parts, Content.styled(f"(no preview: {say(exc, 'the token preview')})",
                                                       "$text-warning"))
    if segments and not segments[-1][1]:
        segments[-1] = (segments[-1][0].rstrip("\n"), False)
    for text, trained in segments:
        parts.append(Content.styled(text, "$text-success bold" if trained else "$text-muted"))
    if not any(trained for _, trained in segments):
        parts.append(Content.styled("\n(nothing trained in this example)", "$text-error"))
    return Content.assemble(*parts)


LEGEND = Content.assemble(Content.styled("prompt: masked, not learned", "$text-muted"), "   ",
                          Content.styled("response: trained", "$text-success bold"))


class TokenPreview(VerticalScroll, can_focus=True):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    BINDINGS = [Binding("n", "page(1)", "Next examples"), Binding("p", "page(-1)", "Previous examples")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.examples: Sequence[Any] = []
        self.start = 0
        self._drawn = False

    def compose(self) -> ComposeResult:
        yield Static(id="token-preview-text")

    def action_page(self, direction: int) -> None:
        if self.examples:
            last = max(0, len(self.examples) - SHOWN)
            self.start = min(last, max(0, self.start + direction * SHOWN))
            self._draw()
            self.scroll_home(animate=False)

    def show(self, examples: Sequence[Any]) -> None:
        # Rendering asks the tokenizer to decode: only when the examples themselves are new.
        if examples is self.examples and self._drawn:
            return
        self.examples = examples
        self.start = 0
        self._draw()

    def _draw(self) -> None:
        self._drawn = True
        text = self.query_one("#token-preview-text", Static)
        examples, start = self.examples, self.start
        if not examples:
            text.update(Content.styled("No tokenized examples yet.", "italic $text-muted"))
            return
        chosen = list(examples[start:start + SHOWN])
        blocks = [LEGEND] + [render_example(e) for e in chosen]
        more = len(examples) - start - len(chosen)
        if more > 0:
            blocks.append(Content.styled(f"… {more} more (n / p page through them)", "italic $text-muted"))
        text.update(Content("\n\n").join(blocks))
