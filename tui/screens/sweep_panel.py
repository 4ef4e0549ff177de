"""The quick sweep, from the hyperparameter step: the grid editable, the engine's plan for it, one key to start.

Everything it says and does is `lorapilot sweep`'s, with the same arguments:
the grid's parsing and its errors (engine.sweep.plan), the plan's wording,
trial count, time and cost (the `--dry-run` text), and the start (`--yes
--detach`). The plan and the start tokenize the data: the verb runs for them in
the wizard's data helper process (tui.models.data_inspection), never in the
app's. The config swept is the wizard's, written to a temporary YAML for the
verb to read; the sweep keeps its own copy.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.rundir import safe_text
from engine.settings import runs_root
from engine.wrap import fit
from tui.error_log import say
from tui.models.sweep_request import FIELDS, SWEEP_DIR_LINE, default_values, field_errors, run_sweep_verb, sweep_argv
from tui.one_shot import OneShot
from tui.widgets.typed_input import TypedInput


class SweepPanel(ModalScreen[str | None]):
    """Dismisses with the new sweep's directory once started, or None."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+l", "start", "Start the sweep")]
    DEBOUNCE_S = 0.25

    def __init__(self, cfg: Any, *, gpu: str | None, price: float | None, name: str = "lorapilot") -> None:
        super().__init__()
        self.cfg, self.gpu, self.price = cfg, gpu, price
        self.errors: dict[str, str] = {}
        self.plan_text = ""
        self.plan_error: str | None = None
        self.planning = False
        self._tmp = tempfile.TemporaryDirectory(prefix="lorapilot-sweep-")
        self.config_path = str(Path(self._tmp.name) / f"{name}.yaml")
        self._timer: OneShot | None = None
        self._in_flight: list[str] | None = None   # the argv of the plan being made, one at a time
        self._starting = False

    def compose(self) -> ComposeResult:
        defaults = default_values(getattr(self.cfg, "model", None))
        with Vertical(id="sweep"):
            yield Label("Quick sweep: short trials over learning rate × LoRA r; hopeless ones stop early",
                        id="sweep-title")
            for name, _flag, label in FIELDS:
                with Vertical(classes="sweep-field", id=f"sweep-row-{name}"):
                    with Horizontal(classes="sweep-line"):
                        yield Label(label, classes="sweep-name")
                        yield TypedInput(defaults[name], compact=True, id=f"sweep-{name}", classes="sweep-editor",
                                    placeholder="none" if name == "budget" else "")
                    yield Label("", classes="sweep-error")
            yield Static(id="sweep-plan")
            yield Static(id="sweep-command")
            with Horizontal(id="sweep-buttons"):
                yield Button("Start (ctrl+l)", id="sweep-start", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="sweep-cancel", compact=True)

    def on_mount(self) -> None:
        for label in self.query(".sweep-error"):
            label.display = False
        from engine.config import save_config
        save_config(self.cfg, self.config_path)
        self.query_one("#sweep-lr", Input).focus()
        self._changed()

    def on_unmount(self) -> None:
        self._tmp.cleanup()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#sweep-{name}", Input).value for name, _, _ in FIELDS}

    def argv(self) -> list[str]:
        return sweep_argv(self.config_path, self.values(), self.gpu, self.price)

    # -- checking and planning, as the grid is typed

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._changed()

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def _changed(self) -> None:
        self.errors = field_errors(self.values())
        for name, _, _ in FIELDS:
            label = self.query_one(f"#sweep-row-{name} .sweep-error", Label)
            label.update(Content(f"✗ {self.errors[name]}" if name in self.errors else ""))  # it quotes what was typed
            label.display = name in self.errors
            self.query_one(f"#sweep-row-{name}").set_class(name in self.errors, "-invalid")
        self.query_one("#sweep-command", Static).update(Content.styled(
            "same as: lorapilot sweep " + shlex.join(["CONFIG", *self.argv()[1:]]), "$text-muted"))
        self.planning = True
        if self._timer is not None:
            self._timer.stop()
        self._timer = OneShot(self, self.DEBOUNCE_S, self._plan_now)
        self._show_plan()

    def _plan_argv(self) -> list[str]:
        return [*self.argv(), "--dry-run"]

    def _plan_now(self) -> None:
        self._timer = None
        if self.errors:
            self.planning = False
            self._show_plan()
            return
        # One plan at a time: each loads the tokenizer and reads the whole dataset in the data helper (one process),
        # and one superseded there runs on, so plans asked at every pause in typing queued behind each other, the
        # newest and the wizard's own data checks last. The grid as it is then is planned when this one returns.
        if self._in_flight is None:
            self._in_flight = self._plan_argv()
            self._plan(self._in_flight)

    @work(thread=True, group="sweep-plan")
    def _plan(self, argv: list[str]) -> None:
        # In the wizard's data helper, as the data's tokenizing: the plan tokenizes the data too, and in threads of the
        # app two plans (the grid typed on while one ran: a thread worker runs on when superseded) imported
        # transformers at once ("cannot import name 'AutoTokenizer'"), which ended the app, and swapped each other's
        # redirected stdout.
        from tui.models.data_inspection import answer
        try:
            text, error = answer(run_sweep_verb, argv), None
        except Exception as e:  # noqa: BLE001 - shown in the panel (a bug logged), never the app ended
            text, error = "", say(e, "planning the sweep")
        try:
            self.app.call_from_thread(self._planned, argv, text, error)
        except RuntimeError:
            pass  # the app has closed meanwhile

    def _planned(self, argv: list[str], text: str, error: str | None) -> None:
        self._in_flight = None
        if not self.is_attached:
            return  # the panel has closed meanwhile
        if argv != self._plan_argv():   # the grid changed since: planned again now, unless a pause in typing will
            if self._timer is None:
                self._plan_now()
            return
        self.planning = False
        self.plan_text, self.plan_error = text.strip(), error
        self._show_plan()

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_plan)   # the plan refitted to the box's new width

    def _show_plan(self) -> None:
        box = self.query_one("#sweep-plan", Static)
        if self.errors:
            box.update(Content.styled("Fix the grid to see the plan.", "italic $text-muted"))
        elif self.plan_error:
            box.update(Content.styled(f"✗ {self.plan_error}", "$text-error"))
        elif self.plan_text:
            # The verb's "label  text" lines fitted to the box, continuations under the text, as the CLI's at 80.
            text = fit(self.plan_text, box.content_size.width or None)
            box.update(Content(text) if not self.planning else Content.styled(text, "$text-muted"))
        else:
            box.update(Content.styled("planning…", "italic $text-muted"))
        self.query_one("#sweep-start", Button).disabled = bool(self.errors or self.plan_error)

    # -- starting

    @on(Button.Pressed, "#sweep-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#sweep-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_start(self) -> None:
        problems = list(self.errors.values()) or ([self.plan_error] if self.plan_error else [])
        if problems:
            self.notify("\n".join(problems), title="Cannot start the sweep", severity="error", timeout=6)
            return
        if self._starting:
            return   # ctrl+l again while it starts: one sweep, not two
        self._starting = True
        self.query_one("#sweep-start", Button).disabled = True
        self.notify("Starting the sweep…", timeout=3)
        self._start([*self.argv(), "--yes", "--detach"])

    @work(thread=True, exclusive=True, group="sweep-start")
    def _start(self, argv: list[str]) -> None:
        # In the wizard's data helper, as the plan: the start tokenizes the data (transformers, torch), which in a
        # thread of the app imported them into the app's process, froze its keys and could collide with another
        # import there.
        from tui.models.data_inspection import answer
        try:
            printed = answer(run_sweep_verb, argv)
        except Exception as e:  # noqa: BLE001 - a bad model path, unreadable data: said, and the panel stays
            self.app.call_from_thread(self._start_failed, say(e, "starting the sweep"))
            return
        found = SWEEP_DIR_LINE.search(printed)
        if not found:
            self.app.call_from_thread(self._start_failed, f"the sweep said: {printed.strip() or 'nothing'}")
            return
        self.app.call_from_thread(self.dismiss, found.group(1).strip())

    def _start_failed(self, message: str) -> None:
        self._starting = False
        self.query_one("#sweep-start", Button).disabled = False
        self.notify(message, title="The sweep did not start", severity="error", timeout=10)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def exit_note(self) -> Text | None:
        """Left in the terminal when the app quits while the sweep starts (App.exit_note asks): the quit ends the
        data helper the start runs in, and the start is made whole or not at all (engine.detached.sigterm_deferred),
        so a sweep may go on that the user never saw start: where to look for it."""
        if not self._starting:
            return None
        root = safe_text(shlex.quote(str(runs_root(getattr(self.cfg, "runs_dir", None)))), one_line=True)
        return Text.assemble("lorapilot: the sweep was starting as you quit; if it had begun, it goes on in the "
                             "background: ", (f"lorapilot runs --root {root}", "bold"))
