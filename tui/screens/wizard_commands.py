"""The wizard's moves in the command palette (ctrl+p): the steps, and what the current step can do."""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.screens.wizard_steps import STEP_TITLES, STEPS, go_to


class WizardCommands(Provider):
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
        return cmds

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
