"""The wizard's advice and checklist: each field warns when outside the usual range, each checklist line answers."""

from __future__ import annotations

from tui.app import LorapilotApp
from wizard_pilot import row_label, settle, type_into

SIZE = (100, 32)


def row_advice(app, path: str) -> str:
    return row_label(app, path, "advice")


def checklist_lines(app) -> list[str]:
    return str(app.screen.query_one("#checklist").render()).splitlines()


async def test_learning_rate_outside_the_usual_range_warns_on_its_row():
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        await type_into(pilot, "#field-training-learning_rate", "3e-3")
        await pilot.pause(0.1)
        warning = row_advice(app, "training.learning_rate")
        assert "3e-3" in warning.replace("0.003", "3e-3") and "usual" in warning
        await type_into(pilot, "#field-training-learning_rate", "2e-4")
        await pilot.pause(0.1)
        assert row_advice(app, "training.learning_rate") == ""
        # An invalid value shows its problem, not advice about the last good one.
        await type_into(pilot, "#field-training-learning_rate", "-1")
        await pilot.pause(0.1)
        assert row_advice(app, "training.learning_rate") == ""
        app.exit()


async def test_review_checklist_ticks_the_settings_and_flags_no_warmup():
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        lines = checklist_lines(app)
        assert not any("not checked yet" in line for line in lines), lines
        assert any(line.startswith("✓ Warmup") for line in lines), lines
        assert any(line.startswith("✓ Gradient checkpointing") for line in lines), lines

        await pilot.press("escape")  # back to the hyperparameters
        await type_into(pilot, "#field-training-warmup_ratio", "0")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        lines = checklist_lines(app)
        warmup = next(i for i, line in enumerate(lines) if "Warmup at the start" in line)
        assert lines[warmup].startswith("! "), lines[warmup]
        assert "No warmup" in lines[warmup + 1]
        app.exit()
