"""One config field: its YAML name, the editor, the recommended range, the help line and its problems.

Everything it says about the field comes from the engine's FieldSpec; the
problems come from the engine's validator. The editor always shows what the
user typed, valid or not: the row never "corrects" a value behind their back.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select

from engine.config import Advice, FieldSpec
from engine.config_text import empty_text, from_raw
from tui.widgets.problem_list import MARK
from tui.widgets.typed_input import TypedInput

# How an advice line is marked: as the checklist marks a finding of that level, and ok as its tick.
ADVICE_MARK = {**MARK, "ok": ("✓", "$text-success")}

# A bool field gets a checkbox, a field with choices a select, every other field a text input.
FieldEditor = Checkbox | Select[str] | Input


def checkbox_on(spec: FieldSpec, raw: str) -> bool:
    """A bool field's checkbox is on where the config reads its text as true (true, yes, on, as YAML does); text
    the validator refuses for a bool (1, "tRue") leaves it off, with the problem line saying why."""
    return from_raw(spec, raw) is True


def editor_id(path: str) -> str:
    return "field-" + path.replace(".", "-")


def hint_text(spec: FieldSpec, recommended: str | None = None) -> str:
    """The recommended range first (what to pick), then the hard limits (what is allowed).

    `recommended`: what the screen knows better than the schema's words (the value for this dataset)."""
    parts = []
    if recommended or spec.recommended:
        parts.append(recommended or f"recommended {spec.recommended}")
    if not spec.choices and spec.range_text():
        parts.append(f"allowed {spec.range_text()}")
    return " · ".join(parts)


class FieldRow(Vertical):
    """Posts `Edited(path, text)` on every keystroke or pick."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    class Edited(Message):
        def __init__(self, path: str, text: str) -> None:
            super().__init__()
            self.path = path
            self.text = text

    def __init__(self, spec: FieldSpec, raw: str, *, placeholder: str = "", label: str | None = None,
                 wide: bool = False, compact: bool = False) -> None:
        classes = "field-row" + (" -wide" if wide else "") + (" -compact" if compact else "")
        super().__init__(classes=classes, id="row-" + spec.path.replace(".", "-"))
        self._compact = compact
        self.spec = spec
        self.path = spec.path
        self._initial = raw
        self._placeholder = placeholder
        self._shown: tuple | None = None  # (problems, advice) last drawn
        self._label = label or spec.name
        self._hint = hint_text(spec)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-line"):
            # Content, never markup: a help text says "e.g. [tensorboard]", a problem quotes what was typed
            yield Label(Content(self._label), classes="field-name")
            self._editor = self._make_editor(self._initial)
            yield self._editor
            yield Label(Content(self._hint), classes="field-hint")
        # Compact rows (screens short of lines) keep the help as the editor's tooltip.
        if not self._compact:
            yield Label(Content(self.spec.help), classes="field-help")
        yield Label("", classes="field-problem")
        yield Label("", classes="field-advice")

    def _make_editor(self, raw: str) -> FieldEditor:
        spec, wid = self.spec, editor_id(self.path)
        if spec.type is bool:
            on = checkbox_on(spec, raw)
            return Checkbox("on" if on else "off", on, compact=True, id=wid, classes="field-editor")
        if spec.choices:
            options = [(str(c), str(c)) for c in spec.choices]
            known = raw in {str(c) for c in spec.choices}
            # An unknown value (from a saved config) shows blank; the problem line says what it was.
            return Select(options, value=raw if known else Select.NULL, allow_blank=not known, compact=True,
                          id=wid, classes="field-editor")
        return TypedInput(value=raw, placeholder=empty_text(spec, self._placeholder), compact=True, id=wid,
                     classes="field-editor")

    def on_mount(self) -> None:
        self.editor.tooltip = Content(self.spec.help)

    def set_hint(self, text: str) -> None:
        """Replace the range hint with something this screen knows better (e.g. the detected format)."""
        if text != self._hint:  # every keystroke anywhere refreshes every row: no relayout when nothing changed
            self._hint = text
            self.query_one(".field-hint", Label).update(Content(text))

    def _editor_text(self) -> str:
        editor = self.editor
        if isinstance(editor, Checkbox):
            return "true" if editor.value else "false"
        if isinstance(editor, Select):
            return "" if editor.value is Select.NULL else str(editor.value)
        return editor.value

    @property
    def editor(self) -> FieldEditor:
        return self._editor

    def _send(self, text: str) -> None:
        self.post_message(self.Edited(self.path, text))

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._send(event.value)

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        # Enter moves on, so an expert can fill a screen with text and Enter alone.
        event.stop()
        self.screen.focus_next()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self._send(str(event.value))

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        event.checkbox.label = "on" if event.value else "off"
        self._send("true" if event.value else "false")

    def sync(self, raw: str, problems: list[str], advice: Advice | None = None, *, overwrite: bool = False) -> None:
        """Show the problems; show the value too when it was set elsewhere (`overwrite`: a recipe, auto-fit).

        Never on the user's own keystrokes: the editor runs ahead of the state while they type, and
        writing the state's older text back would eat the characters in between.
        """
        if overwrite and raw != self._editor_text():
            editor = self.editor
            with editor.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
                if isinstance(editor, Checkbox):
                    editor.value = checkbox_on(self.spec, raw)
                    editor.label = "on" if editor.value else "off"
                elif isinstance(editor, Select):
                    if raw in {str(c) for c in self.spec.choices or ()}:
                        editor.value = raw
                elif isinstance(editor, Input):
                    editor.value = raw
        # Every keystroke anywhere syncs every row: touch the DOM only when this row's words change,
        # or typing on a screen of 25 fields lags.
        shown = (tuple(problems), advice)
        if shown == self._shown:
            return
        self._shown = shown
        problem = self.query_one(".field-problem", Label)
        problem.update(Content("\n".join(f"✗ {p}" for p in problems)))
        problem.display = bool(problems)
        self.set_class(bool(problems), "-invalid")
        note = self.query_one(".field-advice", Label)
        mark, style = ADVICE_MARK[advice.level] if advice else ("", "")
        note.update(Content.styled(f"{mark} {advice.text}", style) if advice else "")
        note.display = bool(advice) and not problems
        # The user is typing here: what the row now says about it comes into view (at 80x24 a field at the foot of
        # the screen had its problem below the fold, and "✗ 2 problems" at the bottom said nothing of which).
        said = problem if problems else note if advice else None
        if said is not None and self.editor.has_focus:
            self.call_after_refresh(said.scroll_visible, animate=False)
