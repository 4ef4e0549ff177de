"""The playground: one prompt, the base model's answer and the adapter's, streamed side by side.

A run trained on chat rows holds a conversation: each pane keeps its model's own history, and a follow-up is
fed after it as training renders a multi-turn row (engine.data.prompt); ctrl+n starts a new conversation. Other
formats have no multi-turn layout: there each prompt is asked alone, and the prompt's title says so. The system
prompt field overrides the one training used; the line under it says which one is in use.

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
from textual.widgets import Footer, Input, Label, Static
from textual.worker import Worker, get_current_worker

from engine.data.prompt import SYSTEM_FORMATS, PromptStyle, one_question_only, system_in_use
from engine.errors import UserError
from engine.playground import dropped_turns_note
from engine.rundir import checkpoint_step, safe_text
from tui.screens.key_commands import KeyCommands
from tui.error_log import say
from tui.models.playground_model import PlaygroundModel
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.prompt_box import PromptBox
from tui.widgets.sampling_settings import SamplingSettings
from tui.widgets.typed_input import TypedInput

# Narrower than this, the two answers are stacked rather than side by side.
SIDE_BY_SIDE_MIN_WIDTH = 100
PANES = (("base", False), ("adapter", True))


class PlaygroundScreen(Screen):
    COMMANDS = App.COMMANDS | {KeyCommands}   # ctrl+p finds what the keys do ("export", "log y")
    CSS_PATH = "playground.tcss"
    AUTO_FOCUS = "#prompt"
    BINDINGS = [
        Binding("ctrl+r", "ask", "Ask both", priority=True),
        Binding("ctrl+n", "new_conversation", "New conversation", priority=True),
        # Escape stops an answer being written; with none, it goes back (the footer shows which).
        Binding("escape", "stop", "Stop answer"),
        Binding("escape", "back", "Back"),
    ]

    class Loaded(Message):
        def __init__(self, info: dict | None, error: str | None) -> None:
            super().__init__()
            self.info, self.error = info, error

    class Piece(Message):
        """What an answer did: 'start', 'dropped' (the note that the oldest turns were left out), a 'piece' of text,
        'done', 'stopped' or 'error'."""

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
        self._answered: set[str] = set()  # the panes that answered the current prompt in full
        # Which weights answer: a checkpoint of a run still training is named by its step wherever it shows.
        self.adapter_label = f"checkpoint at step {checkpoint_step(self.checkpoint)}" if self.checkpoint else ""
        self.title = f"Playground · {Path(self.run_dir).resolve().name}" + (
            f" · {self.adapter_label}" if self.checkpoint else "")

    def compose(self) -> ComposeResult:
        yield Static(id="pg-status")
        yield PromptBox(id="prompt")
        yield SamplingSettings(id="sampling")
        with Horizontal(id="system-row"):
            yield Label("system prompt", id="system-label")
            yield TypedInput(compact=True, id="system-prompt", placeholder="empty: what training used",
                        tooltip="the system prompt to ask with; empty: the one training used (the line below says)")
        yield Static(id="pg-system")
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
        self._show_system()
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

    @property
    def style(self) -> PromptStyle | None:
        """How the run's prompts are rendered (its format, training's system prompt); None until loaded."""
        info = self._load_info
        return PromptStyle(info.get("format", "alpaca"), info.get("system") or "") if info is not None else None

    @property
    def conversation(self) -> bool:
        """Whether a follow-up carries the conversation (a chat format); False until loaded."""
        return self.style is not None and one_question_only(self.style.format) is None

    @property
    def system_refused(self) -> str | None:
        """Why a system prompt cannot be asked with (the template has no system role: training refuses a row with
        one, engine.data.prompt.system_refused); None where it can, or until loaded."""
        return (self._load_info or {}).get("system_refused") or None

    @property
    def system(self) -> str:
        """The system prompt as typed ("": what training used)."""
        return self.query_one("#system-prompt", Input).value.strip()

    @on(Input.Changed, "#system-prompt")
    def _show_system(self) -> None:
        """The system prompt in use, on one line: escaped (a run's data wrote it), cut to the width by the CSS."""
        style, refused = self.style, self.system_refused
        if refused and self.system:
            self.query_one("#pg-system", Static).update(Content.styled(f"✗ leave it empty: {refused}", "$text-error"))
            return
        if style is None:
            text = "the one training used (known once the model loads)"
        elif refused:
            text = f"none, as {refused}"
        else:
            info = self._load_info or {}
            text = system_in_use(style, self.system, info.get("template_system") or "",
                                 bool(info.get("system_left_out")))
        self.query_one("#pg-system", Static).update(Content.assemble(
            ("in use: ", "$text-muted"), safe_text(text, one_line=True)))

    def _show_turns(self) -> None:
        """The prompt's title: which turn of the conversation comes next, or why there is none."""
        box = self.query_one(PromptBox)
        style = self.style
        why = one_question_only(style.format) if style is not None else None
        turns = len(self.pane("adapter").history)
        box.border_title = (f"Prompt · {why}" if why else f"Prompt · turn {turns + 1}" if turns else "Prompt")

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
            pane.conversation = self.conversation
        style = self.style
        if style is not None and (style.format not in SYSTEM_FORMATS or self.system_refused and not self.system):
            field = self.query_one("#system-prompt", Input)  # its rows have none (one typed: left to clear)
            field.disabled, field.placeholder = True, "not used (the line below says why)"
        self._show_system()
        self._show_turns()
        if note := self._load_info.get("stops_note"):  # offline: the model's published stops unknown
            self.notify(safe_text(note), title="Where answers stop", severity="warning", timeout=30, markup=False)
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
        if self.system and self.system_refused:  # said before asking, as training says it before training
            self.notify(f"system prompt: {self.system_refused}. Leave it empty, or write it into the question.",
                        title="Not asked", severity="error", timeout=8)
            self.query_one("#system-prompt", Input).focus()
            return
        if not prompt.strip():
            self.notify("Type a prompt first.", severity="warning", timeout=3)
            self.query_one(PromptBox).focus()
            return
        self.generating = True
        self._answered = set()
        for pane in self.query(AnswerPane):
            pane.asked(prompt)
        first = "waiting for the model to load…" if not self.loaded else "waiting for the base model's answer…"
        self.pane("base").waiting("waiting for the model to load…" if not self.loaded else "starting…")
        self.pane("adapter").waiting(first)
        self._asks += 1
        self.refresh_bindings()
        # A new prompt replaces one still being answered (exclusive: the old worker is cancelled).
        # Each side's own history, copied (the worker must not see it grow); empty before the model is in, since
        # only then is it known whether the format has turns (a prompt sent while loading starts a conversation).
        histories = {name: list(self.pane(name).history) for name, _ in PANES}
        self._worker = self._answer(self._asks, prompt, values, histories, self.system)

    @work(thread=True, exclusive=True, group="playground-answer")
    def _answer(self, ask: int, prompt: str, values: dict, histories: dict, system: str) -> None:
        worker = get_current_worker()
        try:
            self.model.wait_ready()  # a prompt sent while the model loads waits here
        except UserError as exc:
            self.post_message(self.Piece(ask, "base", "error", str(exc)))
            return
        context = (self.model.info or {}).get("context")
        for name, adapter in PANES:
            if worker.is_cancelled:
                return
            self.post_message(self.Piece(ask, name, "start"))

            def dropped(turns: int, name: str = name) -> None:
                note = dropped_turns_note(turns, context, values["max_new_tokens"])
                self.post_message(self.Piece(ask, name, "dropped", note))
            try:
                for piece in self.model.ask(prompt, adapter=adapter, cancelled=lambda: worker.is_cancelled,
                                            dropped=dropped, history=histories[name], system=system, **values):
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
            if self._answered == {name for name, _ in PANES}:  # a prompt stopped half-way is not kept
                for pane in self.query(AnswerPane):
                    pane.remember()
                box = self.query_one(PromptBox)
                if self.conversation and box.text == self.pane("adapter").question:
                    box.clear()  # kept in the conversation: the box is free for the follow-up (unless retyped)
                self._show_turns()
            self.refresh_bindings()
            return
        pane = self.pane(message.pane)
        if message.kind == "start":
            pane.started()
            self.refresh_bindings()
        elif message.kind == "piece":
            pane.add(message.text)
        elif message.kind == "dropped":
            self.notify(message.text, title=str(pane.border_title), severity="warning", timeout=8)
        elif message.kind in ("done", "stopped"):
            pane.finished(cancelled=message.kind == "stopped")
            if message.kind == "done":
                self._answered.add(message.pane)
            elif pane.conversation:
                pane.border_subtitle = f"{pane.border_subtitle} · not kept in the conversation"
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

    def action_new_conversation(self) -> None:
        """Both histories cleared; an answer still being written is stopped and its pieces ignored."""
        self.action_stop()
        self._asks += 1
        self.generating = False
        for pane in self.query(AnswerPane):
            pane.forget("a new conversation: type a prompt and press Enter")
        self._show_turns()
        self.refresh_bindings()
        self.query_one(PromptBox).focus()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return self.generating
        if action == "back":
            return not self.generating
        if action == "new_conversation":
            return True if self.conversation else None  # shown, dimmed, where the format has no turns
        return True

    def why_not(self, action: str) -> str | None:
        """Why a command of the palette is not available now (tui/screens/key_commands.py)."""
        if action == "new_conversation":
            style = self.style
            return one_question_only(style.format) if style is not None else "The model is still loading."
        return None

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()
