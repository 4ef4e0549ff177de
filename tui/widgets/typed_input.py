"""An Input whose editing keys keep their place among the typed characters.

Textual's Input inserts a printable key where it arrives, but a bound key (backspace, delete, the arrows, home,
end, ctrl+u) travels up to the app before its action runs. In a burst (tmux delivering a typed line, a loaded
machine, key repeat) the characters typed after it overtake it: `data/trian` + end + 6 x backspace + `ain.jsonl`
became `ain`, and the wizard validated and saved that path. Textualize/textual#6605 (open); the fix proposed there
(#6631) runs the widget's own bindings inline, as here.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class TypedInput(Input):
    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable and await self._run_own_binding(event.key):
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    async def _run_own_binding(self, key: str) -> bool:
        """The Input's own binding for the key, run now: what the app would run once the key reached it (the
        focused widget is the first place it looks; priority bindings ran before the key came here)."""
        for binding in self._bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                return True
        return False
