"""Asks which server a finished run is exported for (the monitor's `e`): Ollama, vLLM or llama.cpp."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

# key, target (engine.export.TARGETS), what the folder holds
CHOICES = (("o", "ollama", "merged model + Modelfile"), ("v", "vllm", "adapter + serve.sh"),
           ("l", "llama.cpp", "merged model + GGUF commands"))


class ExportChoice(ModalScreen[str | None]):
    CSS_PATH = "export_choice.tcss"

    BINDINGS: ClassVar = [*[Binding(key, f"choose('{target}')", target) for key, target, _ in CHOICES],
                Binding("escape", "choose(None)", "Cancel")]

    def __init__(self, run_name: str, out_hint: str):
        super().__init__()
        self.run_name = run_name
        self.out_hint = out_hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Export {self.run_name} for[/b]")
            for key, target, what in CHOICES:
                yield Button(f"{target} ({key}): {what}", id=f"export-{target.replace('.', '')}")
            yield Label(f"Written to {self.out_hint}-<target>/ with a model card (README.md).")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        chosen = {f"export-{t.replace('.', '')}": t for _, t, _ in CHOICES}.get(event.button.id or "")
        self.dismiss(chosen)

    def action_choose(self, target: str | None) -> None:
        self.dismiss(target)
