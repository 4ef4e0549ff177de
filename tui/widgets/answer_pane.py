"""One model's answer in the playground, drawn as it streams in, with what it is doing in the border.

In a conversation (a chat format) the pane keeps its model's own history: each earlier question and the answer this
model gave, drawn muted above the question being answered. The answers are kept as the model wrote them (the history
is fed back to it) and drawn with their control characters escaped (a model can write an escape sequence), as plain
text, never markup; the questions too (what was typed or pasted, fed as it is)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from engine.rundir import safe_text


class AnswerPane(VerticalScroll):
    """The answer's text so far; the border says waiting, generating, done in N s, or the error."""

    conversation = False  # a chat format: the question is shown above its answer, and answers are remembered

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    can_focus = True  # so a long answer scrolls with the keys

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="answer-pane")
        self.border_title = title
        self.text = ""  # the answer so far, as the model wrote it
        self.state = "idle"  # idle | waiting | generating | done | error
        self._began = 0.0
        self.question = ""  # the question being answered (shown in a conversation)
        self.history: list[tuple[str, str]] = []  # this model's earlier (question, answer) turns, as written

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
        self._update(body)

    def _update(self, body: Content | str) -> None:
        """The body under the conversation so far. A str is a model's text: escaped, and never read as markup."""
        answer = Content(safe_text(body)) if isinstance(body, str) else body
        if not self.conversation or not self.question:
            self._body.update(answer)
            return
        parts = []
        for question, said in self.history:
            parts += [Content.styled(f"› {safe_text(question)}", "bold $text-muted"),
                      Content.styled(safe_text(said), "$text-muted"), Content("")]
        parts += [Content.styled(f"› {safe_text(self.question)}", "bold"), answer]
        self._body.update(Content("\n").join(parts))

    def waiting(self, why: str) -> None:
        self.text = ""
        self._show("waiting", why, Content.styled(why, "italic $text-muted"))

    def asked(self, question: str) -> None:
        """A new question for this pane (drawn below its history until answered)."""
        self.question = question

    def started(self) -> None:
        self.text = ""
        self._began = time.monotonic()
        self._show("generating", "generating…", "")

    def add(self, piece: str) -> None:
        self.text += piece
        self._update(self.text.lstrip())
        self.scroll_end(animate=False)

    def remember(self) -> None:
        """The answer shown joins this model's history (its question answered in full)."""
        if self.conversation:
            self.history.append((self.question, self.text.strip()))

    def forget(self, why: str) -> None:
        """A new conversation: no history, no question."""
        self.history, self.question = [], ""
        self.waiting(why)

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
