"""The Review checklist: each line holds only the findings of its own rule."""

from __future__ import annotations

from textual.app import App, ComposeResult

from engine.diagnose.finding import Finding
from tui.widgets.checklist import Checklist
from wizard_pilot import shown

FEW_TOKENS = Finding("few_target_tokens", "warning", None, "12 examples train fewer than 3 tokens.",
                     "chat.jsonl: lines 2, 3", "Give those examples longer responses.")


class One(App):
    def compose(self) -> ComposeResult:
        yield Checklist(id="checklist")


async def test_the_examples_line_is_ticked_when_only_short_responses_are_found():
    """'few trained tokens' is not 'fewer than 100 examples': that line passes, and the finding stands apart."""
    app = One()
    async with app.run_test(size=(100, 40)) as pilot:
        app.query_one(Checklist).show([FEW_TOKENS])
        await pilot.pause()
        lines = shown(app, "#checklist").splitlines()
        assert "✓ At least 100 examples with trained tokens" in lines
        last = lines.index("✓ At least 100 examples with trained tokens")
        assert any("Examples with few trained tokens" in line for line in lines[last + 1:])


async def test_the_epochs_line_ticks_only_what_is_checked():
    """The check flags more than 3 passes over the data, nothing fewer: the demo (40 steps of a 48-step epoch)
    was ticked "1-3 passes over the data", which it does not make."""
    from engine.diagnose.settings_check import MANY_EPOCHS

    app = One()
    async with app.run_test(size=(100, 40)) as pilot:
        app.query_one(Checklist).show([])
        await pilot.pause()
        lines = shown(app, "#checklist").splitlines()
        assert f"✓ At most {MANY_EPOCHS} passes over the data (epochs)" in lines
