"""Review's GPU picker kept its 'reading the GPU list…' placeholder as the first entry once the list was read: picked
with the keys, it showed that text while the estimate, the checklist and Launch went on planning for the card picked
before. The placeholder is gone once the list is in: every entry is a card (or this machine's CPU)."""
from __future__ import annotations

from textual.widgets import Select

from tui.app import LorapilotApp
from wizard_pilot import settle


async def test_every_entry_of_the_gpu_picker_is_a_card_and_the_one_shown_is_the_one_planned(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        select = app.screen.query_one("#gpu-select", Select)
        select.focus()
        await pilot.press("enter", "home", "enter")   # the list's first entry, picked as a user picks it
        await settle(app, pilot)
        assert select.value == app.wizard.gpu_key, (select.value, app.wizard.gpu_key)
        await pilot.press("enter", "end", "enter")    # the last card
        await settle(app, pilot)
        assert select.value == app.wizard.gpu_key == app.wizard.gpus[-1].id
        assert app.wizard.estimate.gpu is not None and app.wizard.estimate.gpu.id == app.wizard.gpus[-1].id
