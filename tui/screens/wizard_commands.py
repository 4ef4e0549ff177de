"""The wizard's moves in the command palette (ctrl+p): the steps, and what the current step can do."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, cast

from tui.screens.key_commands import CommandList
from tui.screens.wizard_steps import STEP_TITLES, STEPS, go_to

if TYPE_CHECKING:  # the app imports the wizard's screens
    from tui.app import LorapilotApp


class WizardCommands(CommandList):
    """The wizard's moves in the command palette (ctrl+p): experts type, nobody hunts for keys."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        app = self.app
        cmds: list[tuple[str, Callable, str]] = [
            (f"Go to: {STEP_TITLES[s]}", partial(go_to, app, s), f"Step {i + 1} of the wizard")
            for i, s in enumerate(STEPS)]
        screen = self.screen
        for name, description in (("save_config", "Save the config (Review)"),
                                  ("auto_fit", "Apply the suggested micro-batch and accumulation"),
                                  ("launch", "Start the run, detached, and open the monitor"),
                                  ("recipes", "Pick a hyperparameter recipe")):
            if hasattr(screen, f"action_{name}"):
                cmds.append((description, partial(screen.run_action, name), name.replace("_", " ")))
        # The runs already started (monitor, playground, export of each): the wizard had no way there but quitting
        # and typing `lorapilot monitor`.
        cmds.append(("Runs: the list of runs (monitor, playground, export)", cast("LorapilotApp", app).open_runs,
                     "runs"))
        return cmds
