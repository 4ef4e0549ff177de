"""The wizard's step bar: where you are, and a click away from any other step."""

from __future__ import annotations

from pathlib import Path

from textual.content import Content
from textual.message import Message
from textual.widgets import Static


class StepBar(Static):
    """`1 Model > 2 Dataset > 3 Hyperparameters > 4 Review`, the current step highlighted."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    class Picked(Message):
        def __init__(self, step: str) -> None:
            super().__init__()
            self.step = step

    def __init__(self, steps: tuple[str, ...], titles: dict[str, str], current: str) -> None:
        super().__init__()
        self.steps, self.titles, self.current = steps, titles, current

    def on_mount(self) -> None:
        parts: list[Content] = [Content.styled("lorapilot  ", "bold $text-primary")]
        for i, step in enumerate(self.steps):
            label = f" {i + 1} {self.titles[step]} "
            if step == self.current:
                parts.append(Content.styled(label, "reverse bold"))
            else:
                parts.append(Content.from_markup(f"[@click=pick('{step}')]$label[/]", label=label))
            if i + 1 < len(self.steps):
                parts.append(Content.styled(" › ", "dim"))
        self.update(Content("").join(parts))

    def action_pick(self, step: str) -> None:
        self.post_message(self.Picked(step))
