"""What an emptied field shows. A required number cleared showed its default as grey placeholder text ("16")
beside "lora.r: must be set", which read as if 16 were set; where empty is refused the placeholder is an
example ("e.g. 16"), and where empty is accepted it says what empty stands for (all visible GPUs).

An emptied max_steps showed "e.g. -1" and was refused: advice to type the one value that means "not set" (the
epochs decide). Empty now means just that, and says so; sample_prompts' "e.g. []" was the same mistake."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from engine.config import FIELDS, config_from_dict, value_problem
from engine.config_text import empty_text, from_raw
from tui.screens.hyperparams import PLACEHOLDERS
from tui.app import LorapilotApp
from wizard_pilot import row_label, row_problem, type_into


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
        # The demo's max_steps 40 decides how long it trains, not its num_epochs: the row says so.
        assert row_label(app, "training.num_epochs", "hint") == "max_steps sets the length"
        # An empty max_steps: the epochs decide, as -1 does; the saved config and the plan say the same.
        await type_into(pilot, "#field-training-max_steps", "")
        await pilot.pause(0.1)
        steps = app.screen.query_one("#field-training-max_steps", Input)
        assert row_problem(app, "training.max_steps") == "" and steps.placeholder == "from num_epochs"
        assert app.wizard.cfg.training.max_steps == -1
        assert row_label(app, "training.num_epochs", "hint").startswith("recommended 1-3")
        app.exit()


def test_the_placeholder_follows_what_the_validator_makes_of_an_empty_field():
    assert empty_text(FIELDS["training.learning_rate"]) == "e.g. 0.0002"
    assert empty_text(FIELDS["training.stop_on"]) == "e.g. [nan_loss]"       # as YAML writes it, not ['nan_loss']
    assert empty_text(FIELDS["training.report_to"], "[tensorboard]") == "none"   # not as if tensorboard were set
    assert empty_text(FIELDS["training.sample_prompts"]) == "3 held-out prompts"
    assert empty_text(FIELDS["training.max_steps"]) == "from num_epochs"
    assert empty_text(FIELDS["runs_dir"]) == "runs"                          # empty: the default folder
    assert empty_text(FIELDS["dataset.max_examples"]) == "all examples"


@pytest.mark.parametrize("path", [p for p, spec in FIELDS.items() if spec.type is not bool and not spec.choices])
def test_no_placeholder_suggests_typing_what_empty_already_means(path):
    """Every field a text box edits: an example ("e.g. X") only where empty is refused, and X is a value the
    validator takes that means something of its own, not -1 ("derive it") or [] (none)."""
    spec = FIELDS[path]
    shown = empty_text(spec, PLACEHOLDERS.get(path, ""))
    empty_ok = value_problem(spec, from_raw(spec, "")) is None
    if not shown.startswith("e.g. "):
        assert empty_ok, f"{path}: empty is refused, but {shown!r} is no example of what to type"
        return
    assert not empty_ok, f"{path}: empty is accepted, yet the placeholder gives an example ({shown!r})"
    example = from_raw(spec, shown.removeprefix("e.g. ").split(" or ")[0])
    assert value_problem(spec, example) is None, (path, shown)
    assert example not in spec.also and example not in ([], ""), f"{path}: {shown!r} is what empty means"


@pytest.mark.parametrize("path,empty", [("training.max_steps", -1), ("training.report_to", []),
                                        ("training.sample_prompts", [])])
def test_an_empty_value_means_the_same_in_a_field_and_in_the_file(path, empty):
    """`max_steps:` (null) in the file reads as an emptied field does: the epochs decide."""
    section, key = path.split(".")
    cfg = config_from_dict({"model": "m", "dataset": {"path": "d"}, section: {key: None}})
    assert getattr(cfg.training, key) == empty
    # stop_on's empty is refused (an emptied field would drop the guard against NaN): with its example.
    assert value_problem(FIELDS["training.stop_on"], None) == ("training.stop_on: must be set; type a list, "
                                                               "e.g. [nan_loss]")
