"""An Input (and any text widget) whose editing keys keep their place among the typed characters.

Textual's Input inserts a printable key where it arrives, but a bound key (backspace, delete, the arrows, home,
end, ctrl+u) travels up to the app before its action runs. In a burst (tmux delivering a typed line, a loaded
machine, key repeat) the characters typed after it overtake it: `data/trian` + end + 6 x backspace + `ain.jsonl`
became `ain`, and the wizard validated and saved that path. Textualize/textual#6605 (open); the fix proposed there
(#6631) runs the widget's own bindings inline, as here.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class OwnBindingsFirst:
    """For a text widget: its own bindings for a non-printable key run as the key arrives (the module's docstring
    says why). Used by TypedInput and the playground's PromptBox."""

    async def _run_own_binding(self, event: events.Key) -> bool:
        """The widget's own binding for the key, run now: what the app would run once the key reached it (the
        focused widget is the first place it looks; priority bindings ran before the key came here)."""
        if event.is_printable:
            return False
        for binding in self._bindings.key_to_bindings.get(event.key, ()):  # type: ignore[attr-defined]
            if not binding.priority and await self.app.run_action(binding.action, self):  # type: ignore[attr-defined]
                event.stop()
                event.prevent_default()
                return True
        return False


class TypedInput(OwnBindingsFirst, Input):
    async def _on_key(self, event: events.Key) -> None:
        if await self._run_own_binding(event):
            return
        await super()._on_key(event)
