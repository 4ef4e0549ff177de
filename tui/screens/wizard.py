"""The wizard's frame: four step screens (Model -> Dataset -> Hyperparameters -> Review) over one shared state.

Each step shows the step bar, its body, the live estimate line and the footer,
and redraws from the state (tui.wizard_state) when it publishes a change. The
run is launched from Review.
"""

from __future__ import annotations

from typing import Any

from textual import events, getters, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from engine.config import FieldSpec
from tui.app import LorapilotApp
from tui.screens.wizard_commands import WizardCommands
from tui.screens.wizard_steps import STEP_TITLES, STEPS, go_to, screen_name
from tui.widgets.estimate_line import EstimateLine
from tui.widgets.field_row import FieldRow, hint_text
from tui.widgets.finding_blocks import FindingBlocks
from tui.widgets.problem_list import title_of
from tui.widgets.step_bar import StepBar
from tui.wizard_state import DEMO_LEFT, SET, WizardState


class WizardStep(Screen):
    """One step: the step bar, the body, the live estimate line and the footer."""

    STEP = ""
    app = getters.app(LorapilotApp)  # typed: the steps read the app's wizard state and call its jumps
    # The first field, not the scroll container around it: typing should land in a field at once.
    AUTO_FOCUS = ".field-editor"
    COMMANDS = App.COMMANDS | {WizardCommands}
    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        # Shown only while a finding names a setting as its fix (check_action). enter on one finding applies its
        # fix alone (tui.widgets.finding_blocks).
        Binding("ctrl+g", "apply_fixes", "Apply all"),
    ]
    # Below this width the footer drops its padding: at 80 columns every key still shows, none is cut.
    COMPACT_FOOTER_BELOW = 100

    @property
    def state(self) -> WizardState:
        state = self.app.wizard
        assert state is not None, "the app opens its wizard state before the step screens"
        return state

    def compose(self) -> ComposeResult:
        yield StepBar(STEPS, STEP_TITLES, self.STEP)
        yield from self.compose_body()
        yield EstimateLine()
        yield Footer(compact=self.app.size.width < self.COMPACT_FOOTER_BELOW)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.state.changed.subscribe(self, self._state_changed)
        self.refresh_from_state(SET)

    def on_resize(self, event: events.Resize) -> None:
        footer = self.query_one(Footer)
        compact = event.size.width < self.COMPACT_FOOTER_BELOW
        if footer.compact != compact:
            footer.compact = compact
            footer.refresh(recompose=True)  # keys drawn before the change keep their old padding otherwise

    def on_screen_resume(self) -> None:
        # Back from another step or a modal: nobody is typing here, so every field may be rewritten.
        self.refresh_from_state(SET)

    def _state_changed(self, what: str) -> None:
        if self.is_current:
            self.refresh_from_state(what)

    def refresh_from_state(self, what: str) -> None:
        """Bring every widget in line with the state; `what` says what changed (EDITED, SET, a kind)."""
        overwrite = what == SET
        for row in self.query(FieldRow):
            row.sync(self.state.raw[row.path], self.state.problems_for(row.path), self.state.advice.get(row.path),
                     overwrite=overwrite or (what == DEMO_LEFT and row.path != self.state.typing_in))
            if row.path == "training.max_seq_length":
                row.set_hint(hint_text(row.spec, self._length_recommended(row.spec)))
            elif row.path == "training.num_epochs":
                # The trainer stops at max_steps when it is set: num_epochs then has no effect; max_steps alone sets
                # the run's length and how many epochs (each its own shuffle) it walks (engine.data.packing.epochs_to_plan).
                row.set_hint("max_steps sets the length" if self.state.cfg.training.max_steps > 0 else
                             hint_text(row.spec))
        self.query_one(EstimateLine).show(self.state)

    def _length_recommended(self, spec: FieldSpec) -> str:
        """max_seq_length's hint: the number for this dataset, not only the rule ("keeps 95% of examples whole").
        A floor, not a target: longer costs nothing with packed rows, and the demo's 128 above its 64 is no fault."""
        n = self.state.data_length()
        if n is not None:
            return f"recommended at least {n:,} ({spec.recommended})"
        if self.state.busy_with("data") or self.state.busy_with("rows"):
            return "recommended: reading the data…"
        return f"recommended at least the length that {spec.recommended}; no data read yet"

    @on(FieldRow.Edited)
    def _field_edited(self, event: FieldRow.Edited) -> None:
        self.state.edit(event.path, event.text)

    @on(StepBar.Picked)
    def _step_picked(self, event: StepBar.Picked) -> None:
        go_to(self.app, event.step)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "apply_fixes":   # hidden where no finding this step shows names a setting
            return bool(self.state.fixes(self.shown_findings()))
        return True

    def shown_findings(self) -> list[Any]:
        """The findings this step shows, the only ones its ctrl+g (apply all) applies: none unless a step lists
        them (a fix the user cannot read on the screen is not applied behind their back)."""
        return []

    @on(FindingBlocks.Apply)
    def _apply_finding(self, event: FindingBlocks.Apply) -> None:
        """enter on a finding: its fix only, and what it changed (the estimate and the checks re-run)."""
        f = event.finding
        title = f"Fix: {title_of(f.code)}"
        change = self.state.apply_finding(f)
        if change is not None:
            self.notify(change, title=title, timeout=8)
        elif f.fix:
            self.notify(f"This fix is not one setting the wizard can change; it is yours to do:\n{f.fix}",
                        title=title, severity="warning", timeout=8)
        else:
            self.notify("This finding names no fix.", title=title, severity="warning", timeout=4)

    def action_apply_fixes(self) -> None:
        changes = self.state.apply_fixes(self.shown_findings())
        if changes:
            self.notify("\n".join(changes), title="Applied the findings' fixes", timeout=8)
        else:
            self.notify("No finding names a setting to change.", timeout=3)

    def action_next(self) -> None:
        i = STEPS.index(self.STEP)
        if i + 1 < len(STEPS):
            go_to(self.app, STEPS[i + 1])

    def action_back(self) -> None:
        i = STEPS.index(self.STEP)
        if i > 0:
            go_to(self.app, STEPS[i - 1])
        else:
            self.notify("This is the first step; ctrl+q quits.", timeout=3)


def start_wizard(app: App, state: WizardState) -> None:
    """Opens the wizard on the model step, over `state` (the app shell calls this with its own)."""
    from tui.screens.dataset import DatasetScreen
    from tui.screens.hyperparams import HyperparamsScreen
    from tui.screens.model import ModelScreen
    from tui.screens.review import ReviewScreen

    screens = {"model": ModelScreen, "dataset": DatasetScreen, "hyperparams": HyperparamsScreen,
               "review": ReviewScreen}
    for step in STEPS:
        # Installed screens outlive switching, so focus and scroll positions survive going back and forth.
        if not app.is_screen_installed(screen_name(step)):
            app.install_screen(screens[step](), screen_name(step))
    app.push_screen(screen_name("model"))
    for note in state.notes:
        where = "shown next to the fields" + ("; keys with no field are left out (Review lists them)"
                                              if state.left_out else "")
        app.notify(note, title=f"The config has problems; they are {where}", severity="error", timeout=15)
    state.refresh_all()
