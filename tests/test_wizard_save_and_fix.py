"""The wizard writes into the user's config as a careful editor would: only what changed, comments and order
kept, never over a file it could not read; and one key applies the settings the findings name."""

from __future__ import annotations

from tui.app import LorapilotApp
from wizard_pilot import paste_into, settle, shown, type_into

SIZE = (100, 32)

MINE = """\
# my run: keep these notes
model: lorapilot-demo   # the tiny one
dataset:
  path: {data}
training:
  # short on purpose
  max_steps: 4
  sample_prompts: ["Say hi"]
"""


async def test_ctrl_s_keeps_comments_and_never_overwrites_a_file_that_did_not_load(tmp_path, monkeypatch):
    from engine.demo.model import demo_data_path

    monkeypatch.chdir(tmp_path)
    good = tmp_path / "mine.yaml"
    good.write_text(MINE.format(data=demo_data_path()), encoding="utf-8")
    app = LorapilotApp(config_path=str(good))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-lora-r", "8")
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        text = good.read_text(encoding="utf-8")
        assert "# my run: keep these notes" in text and "# the tiny one" in text and "# short on purpose" in text
        assert "sample_prompts" in text and "r: 8" in text
        assert text.index("model:") < text.index("dataset:") < text.index("training:")
        app.exit()

    broken = tmp_path / "broken.yaml"
    original = MINE.format(data=demo_data_path()).replace("max_steps: 4", "max_steps: lots")
    broken.write_text(original, encoding="utf-8")
    app = LorapilotApp(config_path=str(broken))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-max_steps", "4")   # fixed in the wizard...
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert broken.read_text(encoding="utf-8") == original      # ...but the file is not replaced
        assert any("not overwritten" in n.message for n in app._notifications)
        other = tmp_path / "fixed.yaml"
        await paste_into(pilot, "#save-path", str(other))
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert other.exists()
        app.exit()


async def test_ctrl_g_applies_the_settings_the_findings_name(tmp_path, demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        await paste_into(pilot, "#field-model", str(demo_model_dir))
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-warmup_ratio", "0")
        await type_into(pilot, "#field-training-learning_rate", "0.01")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert {"training.warmup_ratio", "training.learning_rate"} <= set(s.fixes())
        assert "ctrl+g applies them all" in shown(app, "#checklist")
        assert app.screen.active_bindings["ctrl+g"].binding.description == "Apply all"
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert s.cfg.training.warmup_ratio == 0.03 and s.cfg.training.learning_rate == 2e-4
        notes = [n.message for n in app._notifications]
        assert any("training.warmup_ratio 0 -> 0.03" in m and "training.learning_rate 0.01 -> 0.0002" in m
                   for m in notes), notes
        lines = shown(app, "#checklist")
        assert "No warmup" not in lines and "high for LoRA" not in lines
        # The key is in the footer exactly while a finding names a setting.
        assert ("ctrl+g" in app.screen.active_bindings) == bool(s.fixes())
        app.exit()
