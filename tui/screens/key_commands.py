"""A screen's keys in the command palette (ctrl+p): typing what a key does ("export", "log") finds it, footer or
not. Built from the screen's bindings, so a key added there is in the palette too; one the screen disables now
(check_action) is left out."""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

# Every screen's inherited keys (focus next, copy): the app's plumbing, not this screen's actions.
PLUMBING = {b.action for b in Screen.BINDINGS if isinstance(b, Binding)}


class CommandList(Provider):
    """A provider whose commands are one list of (title, callback, help), found by their titles."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        raise NotImplementedError

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


class KeyCommands(CommandList):
    """The screen's keys (and its focused widget's), not the app's own: each under what its footer label says. A key
    the screen disables now is still offered, and choosing it says why (the screen's `why_not(action)`), since a
    command a user typed should answer, not vanish."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        screen, app = self.screen, self.app
        out: list[tuple[str, Callable, str]] = []
        seen: set[str] = set()
        for node, bindings in screen._modal_binding_chain:
            if node is app:
                continue
            for _, b in bindings:
                if not b.description or b.system or b.action in PLUMBING:
                    continue
                state = app._check_action_state(b.action, node)
                title = b.description
                if title in seen or (state is False and any(
                        (x.description == title or x.key == b.key) and app._check_action_state(x.action, node)
                        for _, x in bindings if x is not b)):
                    continue   # two keys under one label (quit while running / when ended), or one key under two
                    # (esc: Runs or Back): the live one
                seen.add(title)
                key = f"key: {app.get_key_display(b)}"
                if state:
                    out.append((title, partial(app.run_action, b.action, node), key))
                else:
                    out.append((title, partial(self._unavailable, title, b.action), f"{key} (not now)"))
        return out

    def _unavailable(self, title: str, action: str) -> None:
        why = getattr(self.screen, "why_not", lambda _: None)(action)
        self.app.notify(why or "Not available on this screen now.", title=title, severity="warning", timeout=6)
