"""The playground's prompt: a text area where Enter runs and ctrl+j (or shift+enter, which tmux sends as Enter)
starts a new line."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui.widgets.typed_input import OwnBindingsFirst


class PromptBox(OwnBindingsFirst, TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder="Type a prompt; Enter asks both models (ctrl+j: new line)")

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self.text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self.replace("\n", start, end)
            return
        if await self._run_own_binding(event):   # backspace, the arrows: in order with the typed characters
            return
        await super()._on_key(event)
