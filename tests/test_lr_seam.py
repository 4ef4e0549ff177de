"""The learning rate, judged once: the hyperparameters screen's hint, the review checklist's line and
`lorapilot estimate`'s lr line (table and --json) render one verdict (engine.learning_rate) and never disagree.

Found walking the demo at 80x24: the hyperparameters screen said `! 0.003 is outside the usual 1e-4-3e-4` while
the checklist ticked `✓ Learning rate in the usual LoRA range`; for a real model 5e-4 was a warning on one screen
and a tick on the other."""

from __future__ import annotations

import contextlib
import itertools
import io
import json

import pytest

from engine.config import save_config
from tui.app import LorapilotApp
from wizard_pilot import own_data, own_model_and_data, row_label, settle, shown, type_into

SIZE = (80, 24)
MARKS = {"✓": "ok", "i": "info", "!": "warning"}
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    """The wizard and the CLI plan the same machine: this CPU (the verdict does not depend on it)."""
    import engine.estimate as estimate_pkg
    import tui.models.wizard_engine_calls as engine_calls

    def presets_only():
        from engine.estimate import list_gpus
        return list_gpus(), None

    monkeypatch.setattr(engine_calls, "detect_gpus", presets_only)
    monkeypatch.setattr(estimate_pkg, "detect_gpu", lambda: None)


def row_verdict(app) -> tuple[str, str]:
    """(level, message) of the learning rate's row; a row that says nothing is ok."""
    text = row_label(app, "training.learning_rate", "advice")
    return (MARKS[text[0]], text[2:]) if text else ("ok", "")


def checklist_verdict(app) -> tuple[str, str]:
    lines = shown(app, "#checklist").splitlines()
    i = next(i for i, line in enumerate(lines) if line[2:].startswith("Learning rate"))
    level = MARKS[lines[i][0]]
    return level, (lines[i] if level == "ok" else lines[i + 1]).strip()


def estimate_verdict(cfg, tmp_path) -> tuple[str | None, str]:
    """`lorapilot estimate` on the wizard's config, saved (the app holds stdout while it runs: read it here)."""
    from engine.estimate import command

    path = tmp_path / "seam.yaml"
    save_config(cfg, path)
    outputs = []
    for flags in (["--json"], []):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert command.main([str(path), *flags]) == 0
        outputs.append(out.getvalue())
    hint = json.loads(outputs[0])["lr_hint"]
    lines = outputs[1].splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("lr "))
    # the line wraps at the terminal's width (engine/wrap.py): its continuation is indented under its text
    more = [line.strip() for line in itertools.takewhile(lambda line: line.startswith(" "), lines[i + 1:])]
    return hint.get("level"), " ".join([lines[i], *more])


async def _verdicts_at(app, pilot, text, tmp_path):
    await pilot.press("escape")  # from the review back to the hyperparameters
    await type_into(pilot, "#field-training-learning_rate", text)
    await settle(app, pilot)
    row = row_verdict(app)
    await pilot.press("ctrl+n")
    await settle(app, pilot)
    checklist = checklist_verdict(app)
    estimate = estimate_verdict(app.wizard.cfg, tmp_path)
    return row, checklist, estimate


def _assert_one_verdict(text, expected, row, checklist, estimate):
    levels = {"hyperparameters": row[0], "checklist": checklist[0], "estimate": estimate[0]}
    assert set(levels.values()) == {expected}, f"lr {text}: {levels}; row {row[1]!r}; checklist {checklist[1]!r}; " \
                                               f"estimate {estimate[1]!r}"
    message = checklist[1].removeprefix("✓ Learning rate ").removeprefix("✓ ")
    assert message in estimate[1], (message, estimate[1])
    if row[1]:
        assert row[1] == message
    for line in (row[1], checklist[1], message):
        assert len(line) + 4 <= 80, line   # a mark and an indent: one line of the checklist at 80 columns
        assert "seed" not in line


# (learning rate, the verdict's level) on a model of one's own: in, a little outside, far outside
OWN = [("2e-4", "ok"), ("5e-4", "info"), ("5e-5", "info"), ("1e-2", "warning"), ("1e-5", "warning")]
# the demo's tiny model trains at ~3e-3: the recipe's 2e-4 is far too low for it
DEMO = [("3e-3", "ok"), ("2e-4", "warning")]


@pytest.mark.parametrize("own", [True, False], ids=["own model", "demo"])
async def test_one_verdict_on_every_surface(own, tmp_path, demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        if own:   # 200 rows, so the epochs stay in range and only the learning rate is in question
            await own_model_and_data(pilot, demo_model_dir, own_data(tmp_path, 200))
            await pilot.press("ctrl+n")
        else:
            await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        failures = []
        for text, expected in OWN if own else DEMO:
            seen = await _verdicts_at(app, pilot, text, tmp_path)
            try:
                _assert_one_verdict(text, expected, *seen)
                if not own and expected == "ok":   # said as what it is: the demo's own range, not the LoRA range
                    assert "demo" in seen[0][1] and "demo" in seen[1][1], seen
            except AssertionError as e:
                failures.append(str(e))
        assert not failures, "\n".join(failures)
        app.exit()


@pytest.mark.parametrize("model", ["some/model", "lorapilot-demo"])
@pytest.mark.parametrize("lr", [1e-6, 3e-5, 5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 9e-4, 1e-3, 3e-3, 5e-3, 6e-3, 1e-2, 0.5])
def test_the_row_the_preflight_and_the_estimate_read_one_rule(model, lr):
    """Below the screens: advice (the row), check_settings (the checklist, inspect-data, diagnose) and lr_hint
    (the estimate) give the rule's level and words for every rate, on either side of every band edge."""
    from engine.config import Config, advice, config_from_dict
    from engine.diagnose.settings_check import check_settings
    from engine.estimate.lr import lr_hint
    from engine.learning_rate import lr_verdict

    cfg = config_from_dict({"model": model, "dataset": {"path": "train.jsonl"}, "training": {"learning_rate": lr}})
    verdict = lr_verdict(lr, model)
    row = advice(cfg).get("training.learning_rate")
    found = [f for f in check_settings(cfg, 2000) if f.code == "learning_rate_unusual"]
    hint = lr_hint(lr, model, None, {})
    assert hint["level"] == verdict.level and hint["text"] == verdict.message
    if verdict.level == "ok":
        assert not found
        assert (row is not None) == verdict.demo   # the demo's rate is said to suit it; a real one says nothing
    else:
        assert [(f.severity, f.message, f.fix) for f in found] == [(verdict.level, verdict.message, verdict.fix)]
        assert (row.level, row.text) == (verdict.level, verdict.message)
    assert Config().training.learning_rate == lr_verdict(1.0, "some/model").typical   # the recipe's default


def test_the_demo_range_holds_the_demo_presets_rate():
    import yaml

    from engine.config import FIELDS
    from engine.learning_rate import DEMO_RANGE, DEMO_TYPICAL, lr_verdict
    from tests.conftest import DEMO_CONFIG

    preset = yaml.safe_load(DEMO_CONFIG.read_text())
    assert preset["training"]["learning_rate"] == DEMO_TYPICAL and DEMO_RANGE[0] < DEMO_TYPICAL < DEMO_RANGE[1]
    assert lr_verdict(DEMO_TYPICAL, preset["model"]).level == "ok"
    assert FIELDS["training.learning_rate"].recommended == "1e-4 to 3e-4, 2e-4 typical"   # the field's hint line
