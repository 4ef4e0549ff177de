"""Step 3: the hyperparameters, grouped as the schema groups them, each with its help and ranges."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Label

from engine.config import FIELDS
from engine.config_paths import flatten
from tui.screens.recipe_picker import RecipePicker
from tui.screens.wizard import WizardStep
from tui.widgets.field_row import FieldRow

# Examples where an empty field is refused; what an accepted empty value means is the schema's (empty_means).
PLACEHOLDERS = {"lora.target_modules": "all-linear or [q_proj, v_proj]"}


def groups() -> dict[str, list[str]]:
    """Field paths per group, groups in the schema's order."""
    out: dict[str, list[str]] = {}
    for path, spec in FIELDS.items():
        if spec.group:
            out.setdefault(spec.group, []).append(path)
    return out


class HyperparamsScreen(WizardStep):
    STEP = "hyperparams"
    CSS_PATH = "hyperparams.tcss"
    BINDINGS = [Binding("ctrl+r", "recipes", "Recipes"), Binding("ctrl+t", "sweep", "Quick sweep")]

    def compose_body(self) -> ComposeResult:
        raw = self.state.raw
        with VerticalScroll(id="hyper-body", can_focus=False):
            for group, paths in groups().items():
                yield Label(group, classes="group-title")
                for path in paths:
                    yield FieldRow(FIELDS[path], raw[path], placeholder=PLACEHOLDERS.get(path, ""))

    def action_recipes(self) -> None:
        from engine.estimate.presets import list_recipes, load_recipe

        def picked(name: str | None) -> None:
            if not name:
                return
            # What it changed, each value: a count ("11 values set") hid that it replaced what the user had typed.
            changes = self.state.set_and_say(flatten(load_recipe(name)))
            self.notify("\n".join(changes) or "Every value it names is already set.", title=f"Recipe {name}",
                        timeout=10 if changes else 4)

        self.app.push_screen(RecipePicker(list_recipes()), picked)

    def action_sweep(self) -> None:
        """Short trials over lr x r on the config as it stands; the monitor opens on the sweep once started."""
        from tui.screens.sweep_panel import SweepPanel
        from tui.wizard_state import CPU, DETECTED

        s = self.state
        if not s.valid:
            self.notify("\n".join(s.all_problems()), title="Fix these before a sweep", severity="error", timeout=8)
            return
        name = Path(s.config_path).stem if s.config_path else "lorapilot"
        gpu = s.gpu_key if s.gpu_key not in (None, DETECTED, CPU) else None  # None: plan where it runs

        def started(sweep_dir: str | None) -> None:
            if sweep_dir:
                self.app.open_monitor(sweep_dir)

        self.app.push_screen(SweepPanel(s.cfg, gpu=gpu, price=s.price_per_hour, name=name), started)
