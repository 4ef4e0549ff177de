"""One model's answer in the playground, drawn as it streams in, with what it is doing in the border."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static


class AnswerPane(VerticalScroll):
    """The answer's text so far; the border says waiting, generating, done in N s, or the error."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    can_focus = True  # so a long answer scrolls with the keys

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="answer-pane")
        self.border_title = title
        self.text = ""
        self.state = "idle"  # idle | waiting | generating | done | error
        self._began = 0.0

    def compose(self) -> ComposeResult:
        yield Static("", classes="answer-text")

    @property
    def _body(self) -> Static:
        return self.query_one(".answer-text", Static)

    def _show(self, state: str, subtitle: str, body: Content | str) -> None:
        self.state = state
        self.border_subtitle = subtitle
        self.set_class(state == "error", "-error")
        self.set_class(state == "generating", "-generating")
        self._body.update(body)

    def waiting(self, why: str) -> None:
        self.text = ""
        self._show("waiting", why, Content.styled(why, "italic $text-muted"))

    def started(self) -> None:
        self.text = ""
        self._began = time.monotonic()
        self._show("generating", "generating…", "")

    def add(self, piece: str) -> None:
        self.text += piece
        self._body.update(self.text.lstrip())
        self.scroll_end(animate=False)

    def finished(self, cancelled: bool = False) -> None:
        took = time.monotonic() - self._began
        if cancelled:
            self._show("done", f"stopped after {took:.1f} s", self.text.strip())
        elif not self.text.strip():
            self._show("done", f"done in {took:.1f} s", Content.styled("(an empty answer: the model stopped at once)",
                                                                     "italic $text-muted"))
        else:
            self._show("done", f"done in {took:.1f} s · {len(self.text.split())} words", self.text.strip())

    def failed(self, message: str) -> None:
        self._show("error", "failed", Content.styled(f"✗ {message}", "$text-error"))
