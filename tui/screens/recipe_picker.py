"""A modal list of the hyperparameter recipes (presets/recipes/*.yaml); Enter applies one."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


def recipe_summary(path: Path) -> str:
    """The recipe file's opening comment: its authors' one-paragraph reason for it."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(lines)


class RecipePicker(ModalScreen[str | None]):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, recipes: dict[str, Path]) -> None:
        super().__init__()
        self.recipes = recipes

    def compose(self) -> ComposeResult:
        with Vertical(id="recipes"):
            yield Label("Apply a recipe: it sets the values it names, the rest stay", id="recipes-title")
            yield OptionList(*[Option(f"[b]{name}[/b]\n[dim]{recipe_summary(path)}[/dim]", id=name)
                               for name, path in self.recipes.items()], id="recipe-list")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
