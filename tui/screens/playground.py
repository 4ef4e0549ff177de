"""The playground: one prompt, the base model's answer and the adapter's, streamed side by side.

The model lives in a helper process (tui/models/playground_model.py): loading it
imports torch and transformers, which in a thread would freeze the keys for
seconds. The prompt can be typed, and even sent, while it loads; the answers
wait for it. Base first, then the adapter: the same prompt and settings, one
model in memory with the adapter switched off and on (engine.playground).
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, get_current_worker

from engine.errors import UserError
from engine.rundir import checkpoint_step
from tui.screens.key_commands import KeyCommands
from tui.error_log import say
from tui.models.playground_model import PlaygroundModel
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.prompt_box import PromptBox
from tui.widgets.sampling_settings import SamplingSettings

# Narrower than this, the two answers are stacked rather than side by side.
SIDE_BY_SIDE_MIN_WIDTH = 100
PANES = (("base", False), ("adapter", True))


class PlaygroundScreen(Screen):
    COMMANDS = App.COMMANDS | {KeyCommands}   # ctrl+p finds what the keys do ("export", "log y")
    CSS_PATH = "playground.tcss"
    AUTO_FOCUS = "#prompt"
    BINDINGS = [
        Binding("ctrl+r", "ask", "Ask both", priority=True),
        # Escape stops an answer being written; with none, it goes back (the footer shows which).
        Binding("escape", "stop", "Stop answer"),
        Binding("escape", "back", "Back"),
    ]

    class Loaded(Message):
        def __init__(self, info: dict | None, error: str | None) -> None:
            super().__init__()
            self.info, self.error = info, error

    class Piece(Message):
        """What an answer did: 'start', a 'piece' of text, 'done', 'stopped' or 'error'."""

        def __init__(self, ask: int, pane: str, kind: str, text: str = "") -> None:
            super().__init__()
            self.ask, self.pane, self.kind, self.text = ask, pane, kind, text

    def __init__(self, run_dir: str | Path, checkpoint: str | Path | None = None) -> None:
        """checkpoint: a checkpoint directory of a run still training; None: the run's final adapter."""
        super().__init__()
        self.run_dir = str(run_dir)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.model = PlaygroundModel(self.run_dir, self.checkpoint)
        self.loaded = False
        self.generating = False
        self._asks = 0          # which prompt the answers on screen belong to
        self._worker: Worker[None] | None = None
        self._load_info: dict | None = None  # what the helper said once the model was in (None: not yet)
        # Which weights answer: a checkpoint of a run still training is named by its step wherever it shows.
        self.adapter_label = f"checkpoint at step {checkpoint_step(self.checkpoint)}" if self.checkpoint else ""
        self.title = f"Playground · {Path(self.run_dir).resolve().name}" + (
            f" · {self.adapter_label}" if self.checkpoint else "")

    def compose(self) -> ComposeResult:
        yield Static(id="pg-status")
        yield PromptBox(id="prompt")
        yield SamplingSettings(id="sampling")
        with Horizontal(id="answers"):
            yield AnswerPane("Base model", id="answer-base")
            yield AnswerPane(f"With the {self.adapter_label or 'adapter'}", id="answer-adapter")
        yield Footer()

    def on_mount(self) -> None:
        prompt = self.query_one(PromptBox)
        prompt.border_title = "Prompt"
        prompt.border_subtitle = "enter asks both · ctrl+j new line"
        self._status(Content.styled(f"loading the base model and the {self.adapter_label or 'adapter'}… "
                                    "(you can type meanwhile)",
                                    "italic $text-warning"))
        for pane in self.query(AnswerPane):
            pane.waiting("loading the model…")
        self._load()

    def on_unmount(self) -> None:
        self.model.close()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < SIDE_BY_SIDE_MIN_WIDTH, "-stacked")
        if self._load_info is not None:
            self._show_loaded(event.size.width)

    def _show_loaded(self, width: int) -> None:
        """Which model answers, on what; the load time only where the line has room for it. At 80 columns the
        demo's line ran out of room at 'loaded in' and a real model's name is longer still: what the line cannot
        hold ends in an ellipsis (the CSS), and the time, the least of it, goes first."""
        info = self._load_info or {}
        adapter = Path(self.run_dir).resolve().name + (f", {self.adapter_label}" if self.checkpoint else "")
        line = Content.assemble(
            # Spaces end a part rather than start one: SVG screenshots drop a part's leading spaces.
            ("base ", "$text-muted"), (f"{info.get('model', '?')} ", "bold"),
            ("· adapter ", "$text-muted"), (f"{adapter} ", "bold"),
            (f"· on {info.get('device', '?')}", "$text-muted"))
        timed = line + Content.styled(f", loaded in {info.get('load_s', 0):.1f} s", "$text-muted")
        room = width - self.query_one("#pg-status", Static).styles.gutter.width  # its padding
        self._status(timed if timed.cell_length <= room else line)

    def _status(self, content: Content) -> None:
        self.query_one("#pg-status", Static).update(content)

    def pane(self, name: str) -> AnswerPane:
        return self.query_one(f"#answer-{name}", AnswerPane)

    # -- the model

    @work(thread=True, exclusive=True, group="playground-load")
    def _load(self) -> None:
        try:
            info, error = self.model.load(), None
        except UserError as exc:
            info, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - an OSError starting the helper, say: shown, and a bug logged
            info, error = None, say(exc, "starting the playground")
        self.post_message(self.Loaded(info, error))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.error:
            self._status(Content.styled(f"✗ the model did not load: {message.error}", "$text-error"))
            for pane in self.query(AnswerPane):
                pane.failed(message.error)
            return
        self.loaded = True
        self._load_info = message.info or {}
        self._show_loaded(self.size.width)
        for pane in self.query(AnswerPane):
            if pane.state == "waiting":
                pane.waiting("waiting for the base model's answer…" if pane.id == "answer-adapter" and
                             self.generating else "ready: type a prompt and press Enter")

    # -- asking

    @on(PromptBox.Submitted)
    def _submitted(self) -> None:
        self.action_ask()

    def action_ask(self) -> None:
        prompt = self.query_one(PromptBox).text
        settings = self.query_one(SamplingSettings)
        values = settings.values()
        if values is None:
            bad = settings.first_invalid()
            if bad is not None:
                bad.focus()
            self.notify("\n".join(settings.errors.values()), title="Fix the sampling settings first",
                        severity="error", timeout=5)
            return
        if not prompt.strip():
            self.notify("Type a prompt first.", severity="warning", timeout=3)
            self.query_one(PromptBox).focus()
            return
        self.generating = True
        first = "waiting for the model to load…" if not self.loaded else "waiting for the base model's answer…"
        self.pane("base").waiting("waiting for the model to load…" if not self.loaded else "starting…")
        self.pane("adapter").waiting(first)
        self._asks += 1
        self.refresh_bindings()
        # A new prompt replaces one still being answered (exclusive: the old worker is cancelled).
        self._worker = self._answer(self._asks, prompt, values)

    @work(thread=True, exclusive=True, group="playground-answer")
    def _answer(self, ask: int, prompt: str, values: dict) -> None:
        worker = get_current_worker()
        try:
            self.model.wait_ready()  # a prompt sent while the model loads waits here
        except UserError as exc:
            self.post_message(self.Piece(ask, "base", "error", str(exc)))
            return
        for name, adapter in PANES:
            if worker.is_cancelled:
                return
            self.post_message(self.Piece(ask, name, "start"))
            try:
                for piece in self.model.ask(prompt, adapter=adapter, cancelled=lambda: worker.is_cancelled,
                                            **values):
                    self.post_message(self.Piece(ask, name, "piece", piece))
            except UserError as exc:
                self.post_message(self.Piece(ask, name, "error", str(exc)))
                return
            self.post_message(self.Piece(ask, name, "stopped" if worker.is_cancelled else "done"))
        self.post_message(self.Piece(ask, "", "all-done"))

    @on(Piece)
    def _piece(self, message: Piece) -> None:
        if message.ask != self._asks:
            return  # the tail of an answer to an earlier prompt
        if message.kind == "all-done":
            self.generating = False
            self.refresh_bindings()
            return
        pane = self.pane(message.pane)
        if message.kind == "start":
            pane.started()
            self.refresh_bindings()
        elif message.kind == "piece":
            pane.add(message.text)
        elif message.kind in ("done", "stopped"):
            pane.finished(cancelled=message.kind == "stopped")
            if message.kind == "stopped":
                self.generating = False
                self.refresh_bindings()
                other = self.pane("adapter")
                if message.pane == "base" and other.state == "waiting":
                    other.waiting("not asked (stopped)")
        elif message.kind == "error":
            pane.failed(message.text)
            self.generating = False
            self.refresh_bindings()

    def action_stop(self) -> None:
        if self._worker is not None and self._worker.is_running:
            self._worker.cancel()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return self.generating
        if action == "back":
            return not self.generating
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()
