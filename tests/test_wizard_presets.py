"""The model step's preset list: the demo is in it (the way back after trying another model), and Enter in the
filter picks the one preset left, without a second key. At 80x24, the keys a user presses."""

from __future__ import annotations

from tui.app import LorapilotApp
from wizard_pilot import settle, type_into

SIZE = (80, 24)


def preset_ids(app) -> list[str]:
    presets = app.screen.query_one("#preset-list")
    return [presets.get_option_at_index(i).id for i in range(presets.option_count)]


async def test_enter_in_the_preset_filter_picks_the_single_match(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        # Several matches: Enter goes to the list to choose, it picks none.
        await type_into(pilot, "#preset-filter", "qwen")
        assert len(preset_ids(app)) > 1
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.focused.id == "preset-list" and s.raw["model"] == "lorapilot-demo"
        # One match: Enter picks it, and the model field has it.
        await type_into(pilot, "#preset-filter", "smollm2-360")
        assert preset_ids(app) == ["HuggingFaceTB/SmolLM2-360M"]
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.raw["model"] == "HuggingFaceTB/SmolLM2-360M" and s.cfg.model == "HuggingFaceTB/SmolLM2-360M"
        assert app.screen.query_one("#field-model").value == "HuggingFaceTB/SmolLM2-360M"
        assert app.focused.id == "field-model" and s.model_info.source == "preset"
        app.exit()


async def test_the_demo_model_is_in_the_preset_list_and_picks_back(demo_model_dir):
    from engine.demo.model import DEMO_MODEL_ID

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        assert DEMO_MODEL_ID in preset_ids(app)
        # Its size is read like any preset's (no "?" in the size column).
        demo = app.screen.query_one("#preset-list").get_option(DEMO_MODEL_ID)
        assert "997,504" in str(demo.prompt), demo.prompt
        # Another model, then back to the demo by its alias.
        await type_into(pilot, "#field-model", "Qwen/Qwen2.5-0.5B")
        await settle(app, pilot)
        await type_into(pilot, "#preset-filter", "demo")
        assert preset_ids(app) == [DEMO_MODEL_ID]
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.cfg.model == DEMO_MODEL_ID and s.model_error is None
        app.exit()
