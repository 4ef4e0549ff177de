"""What an emptied field shows. A required number cleared showed its default as grey placeholder text ("16")
beside "lora.r: must be set", which read as if 16 were set; where empty is refused the placeholder is an
example ("e.g. 16"), and where empty is accepted it says what empty stands for (all visible GPUs)."""

from __future__ import annotations

from textual.widgets import Input

from engine.config import FIELDS
from engine.config_text import empty_text
from tui.app import LorapilotApp
from wizard_pilot import row_problem, type_into


async def test_a_cleared_required_number_shows_an_example_not_its_default_as_if_set():
    app = LorapilotApp()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        await type_into(pilot, "#field-lora-r", "")
        await type_into(pilot, "#field-training-num_gpus", "")
        await pilot.pause(0.1)
        r = app.screen.query_one("#field-lora-r", Input)
        assert row_problem(app, "lora.r").startswith("✗ lora.r: must be set")
        assert r.value == "" and r.placeholder == "e.g. 16"
        assert "e.g. 16" in str(r.render_line(0).text)    # what the user sees in the box
        # An empty GPU count is accepted (all visible GPUs): no problem, and its placeholder says what it means.
        gpus = app.screen.query_one("#field-training-num_gpus", Input)
        assert row_problem(app, "training.num_gpus") == "" and gpus.placeholder == "all visible"
        app.exit()


def test_the_placeholder_follows_what_the_validator_makes_of_an_empty_field():
    assert empty_text(FIELDS["training.learning_rate"]) == "e.g. 0.0002"
    assert empty_text(FIELDS["training.stop_on"]) == "e.g. [nan_loss]"       # as YAML writes it, not ['nan_loss']
    assert empty_text(FIELDS["training.report_to"], "[tensorboard]") == "e.g. [tensorboard]"
    assert empty_text(FIELDS["runs_dir"]) == "runs"                          # empty: the default folder
    assert empty_text(FIELDS["dataset.max_examples"]) == ""                  # empty: every example
