"""The wizard writes into the user's config as a careful editor would: only what changed, comments and order
kept, never over a file it could not read; and one key applies the settings the findings name."""

from __future__ import annotations

from tui.app import LorapilotApp
from wizard_pilot import paste_into, settle, shown, type_and_save, type_into

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


def broken_config(tmp_path):
    """A config of the user's that does not load (max_steps: lots): its path and its text."""
    from engine.demo.model import demo_data_path

    broken = tmp_path / "broken.yaml"
    original = MINE.format(data=demo_data_path()).replace("max_steps: 4", "max_steps: lots")
    broken.write_text(original, encoding="utf-8")
    return broken, original


async def test_ctrl_s_keeps_comments_and_never_overwrites_a_file_that_did_not_load(tmp_path, monkeypatch):
    from engine.demo.model import demo_data_path

    monkeypatch.chdir(tmp_path)
    good = tmp_path / "mine.yaml"
    good.write_text(MINE.format(data=demo_data_path()), encoding="utf-8")
    app = LorapilotApp(config_path=str(good))
    async with app.run_test(size=SIZE) as pilot:
        await type_and_save(pilot, "#field-lora-r", "8")
        text = good.read_text(encoding="utf-8")
        assert "# my run: keep these notes" in text and "# the tiny one" in text and "# short on purpose" in text
        assert "sample_prompts" in text and "r: 8" in text
        assert text.index("model:") < text.index("dataset:") < text.index("training:")
        app.exit()

    broken, original = broken_config(tmp_path)
    app = LorapilotApp(config_path=str(broken))
    async with app.run_test(size=SIZE) as pilot:
        await type_and_save(pilot, "#field-training-max_steps", "4")   # fixed in the wizard...
        assert broken.read_text(encoding="utf-8") == original          # ...but the file is not replaced
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
        assert {"training.warmup_ratio", "training.learning_rate"} <= set(s.fixes(app.screen.shown_findings()))
        # On the Model step, which shows none of these findings, ctrl+g neither shows nor applies them.
        await pilot.press("escape", "escape", "escape")
        assert app.screen.STEP == "model" and "ctrl+g" not in app.screen.active_bindings
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert s.cfg.training.warmup_ratio == 0 and s.cfg.training.learning_rate == 0.01
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        assert app.screen.STEP == "review"
        assert "ctrl+g applies them all" in shown(app, "#checklist")
        assert app.screen.active_bindings["ctrl+g"].binding.description == "Apply all"
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert s.cfg.training.warmup_ratio == 0.03 and s.cfg.training.learning_rate == 2e-4
        notes = [n.message for n in app._notifications]
        assert any("training.warmup_ratio 0 -> 0.03" in m and "training.learning_rate 0.01 -> 0.0002" in m
                   for m in notes), notes
        lines = shown(app, "#checklist")
        assert "No warmup" not in lines and "far above the recommended" not in lines
        # The key is in the footer exactly while a finding names a setting.
        assert ("ctrl+g" in app.screen.active_bindings) == bool(s.fixes(app.screen.shown_findings()))
        app.exit()


async def test_launch_says_the_full_path_and_never_overwrites_a_config_it_did_not_open(tmp_path, monkeypatch):
    """Launch (and ctrl+s) writes the config Review names into the current directory: the toast says where in full
    (a tmux user does not see the cwd), and a lorapilot.yaml already there that the wizard did not open is the
    user's: left as it is, the config saved beside it under a new name, said in full, that the command names."""
    import engine.train.launch

    def no_run(cfg, config_name=None, **kw):
        started.append(config_name)
        raise RuntimeError("no run in this test")

    started: list = []
    monkeypatch.setattr(engine.train.launch, "start_run", no_run)
    tmp_path = tmp_path.resolve()  # the toast names the resolved path
    monkeypatch.chdir(tmp_path)
    theirs = tmp_path / "lorapilot.yaml"
    mine = "# another project's config\nmodel: Qwen/Qwen2.5-7B\ndataset: {path: their.jsonl}\n"
    theirs.write_text(mine, encoding="utf-8")

    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        await pilot.press("ctrl+l")
        for _ in range(100):
            await pilot.pause(0.05)
            if started:
                break
        assert theirs.read_text(encoding="utf-8") == mine  # not a byte of theirs changed
        saved = tmp_path / "lorapilot-2.yaml"
        assert saved.exists() and started == ["lorapilot-2"]
        notes = "\n".join(f"{n.title} {n.message}" for n in app._notifications)
        assert str(theirs) in notes and "not overwritten" in notes and f"Saved {saved}" in notes, notes
        assert app.screen.query_one("#save-path").value == "lorapilot-2.yaml"
        assert "lorapilot-2.yaml" in str(app.screen.query_one("#train-command").render())

        # From now on the file is the one this wizard wrote: saving again writes into it, and says where.
        app._notifications.clear()
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert not (tmp_path / "lorapilot-3.yaml").exists()
        assert any(str(saved) in n.message for n in app._notifications)
        app.exit()

    theirs.unlink()
    saved.unlink()
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert theirs.exists()
        assert any(f"Saved {theirs}" in n.message for n in app._notifications)  # the full path, not the bare name
        app.exit()


async def test_a_launch_whose_config_cannot_be_saved_starts_no_run(tmp_path, monkeypatch):
    """Launch saves the config first, so that the train command Review shows trains what runs. Where that save was
    refused (the file opened with problems is not overwritten), the run started anyway: the command shown then
    named a file holding another config."""
    from engine.train import launch

    started: list = []
    monkeypatch.setattr(launch, "start_run", lambda *a, **k: started.append(a))   # would detach a trainer
    monkeypatch.chdir(tmp_path)
    broken, original = broken_config(tmp_path)
    app = LorapilotApp(config_path=str(broken))
    async with app.run_test(size=SIZE) as pilot:
        await type_and_save(pilot, "#field-training-max_steps", "4")
        await settle(app, pilot)
        await pilot.press("ctrl+l", "ctrl+l")        # the second: past any pre-flight error's confirmation
        await settle(app, pilot)
        assert started == [] and broken.read_text(encoding="utf-8") == original
        assert any("not overwritten" in n.message for n in app._notifications)
        assert not any("Starting the run" in n.message for n in app._notifications)
        app.exit()


async def test_saving_into_a_config_the_wizard_did_not_open_asks_first(tmp_path, monkeypatch):
    """The save-to field naming a config file the wizard did not open (a typo of another project's name): ctrl+s and
    launch wrote the wizard's values into it without a word, said only afterwards. They ask first, listing what
    would change; no leaves the file as it was, yes writes it (its comments kept) and the launch goes on."""
    import engine.train.launch
    from engine.config import load_config
    from engine.demo.model import demo_data_path
    from tui.screens.confirm_replace import ConfirmReplace

    started: list = []
    monkeypatch.setattr(engine.train.launch, "start_run",
                        lambda cfg, config_name=None, **kw: started.append(config_name) or _no_run())
    monkeypatch.chdir(tmp_path)
    theirs = tmp_path / "theirs.yaml"
    mine = MINE.format(data=demo_data_path())
    theirs.write_text(mine, encoding="utf-8")
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        await paste_into(pilot, "#save-path", str(theirs))
        for key in ("ctrl+s", "ctrl+l"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert isinstance(app.screen, ConfirmReplace), (key, app.screen)
            assert any("training.max_steps: 4 -> " in str(s.render()) for s in app.screen.query(".replace-change"))
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, ConfirmReplace)
            assert theirs.read_text(encoding="utf-8") == mine and started == []
        await pilot.press("ctrl+l")
        await pilot.pause(0.2)
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.05)
            if started:
                break
        assert started == ["theirs"]
        text = theirs.read_text(encoding="utf-8")
        assert "# my run: keep these notes" in text and load_config(theirs).training.max_steps != 4
        app.exit()


def _no_run():
    raise RuntimeError("no run in this test")
