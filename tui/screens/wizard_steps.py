"""The wizard's four steps, in order, and the move to one of them (the step screens, the step bar, the palette)."""

from __future__ import annotations

from textual.app import App

STEPS = ("model", "dataset", "hyperparams", "review")
STEP_TITLES = {"model": "Model", "dataset": "Dataset", "hyperparams": "Hyperparameters", "review": "Review"}


def screen_name(step: str) -> str:
    return f"wizard-{step}"


def go_to(app: App, step: str) -> None:
    app.switch_screen(screen_name(step))
