"""Asks which server a finished run is exported for (the monitor's `e`): Ollama, vLLM or llama.cpp."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from engine.rundir import safe_text

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
            # a run's name and its folder are text: never markup, their control characters escaped
            yield Label(Content.from_markup("[b]Export $name for[/b]", name=safe_text(self.run_name, one_line=True)))
            for key, target, what in CHOICES:
                yield Button(f"{target} ({key}): {what}", id=f"export-{target.replace('.', '')}")
            yield Label(Content(safe_text(f"Written to {self.out_hint}-<target>/ with a model card (README.md).")))
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        chosen = {f"export-{t.replace('.', '')}": t for _, t, _ in CHOICES}.get(event.button.id or "")
        self.dismiss(chosen)

    def action_choose(self, target: str | None) -> None:
        self.dismiss(target)
