"""The seam between the wizard, the saved config and the trainer's plan: what a field shows after a save is what
config.yaml holds and what the run's plan (engine/plan.py) uses, for numbers written as people write them."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from engine.config import load_config
from engine.plan import Machine, plan_run
from tui.app import LorapilotApp
from tui.screens.wizard_steps import screen_name
from wizard_pilot import own_data, paste_into, settle, type_and_save, type_into

SIZE = (100, 32)

# field -> (what the user types, the value it stands for)
TYPED = {
    "training.learning_rate": ("2E-4", 2e-4),
    "lora.r": ("8", 8),
    "lora.alpha": ("1.6e1", 16.0),
    "lora.dropout": (".1", 0.1),
    "lora.target_modules": ("[q_proj, v_proj]", ["q_proj", "v_proj"]),
    "training.micro_batch_size": ("2", 2),
    "training.gradient_accumulation_steps": ("010", 10),   # YAML 1.1 made this octal 8
    "training.num_epochs": ("2.", 2.0),
    "training.max_steps": ("1_000", 1000),
    "training.seed": ("042", 42),                          # ... and this 34
    "training.warmup_ratio": ("3e-2", 0.03),
    "training.sample_prompts": ('["Yes", "on"]', ["Yes", "on"]),  # text YAML 1.1 reads as true
    "training.report_to": ("", []),
    "training.num_gpus": ("1", 1),
}


def field_value(cfg, path: str):
    head, _, tail = path.partition(".")
    return getattr(getattr(cfg, head), tail) if tail else getattr(cfg, head)


async def test_what_the_fields_show_is_what_is_saved_and_what_the_plan_uses(tmp_path, monkeypatch, demo_model_dir):
    home, work = tmp_path / "home", tmp_path / "work"
    (home / "my data").mkdir(parents=True)
    work.mkdir()
    data = Path(own_data(home / "my data"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        await paste_into(pilot, "#field-model", str(demo_model_dir))
        await pilot.press("ctrl+n")
        await paste_into(pilot, "#field-dataset-path", "~/my data/mine.jsonl")
        await pilot.press("ctrl+n")
        # A field cleared, then typed again.
        await type_into(pilot, "#field-training-learning_rate", "")
        for path, (text, _) in TYPED.items():
            await type_into(pilot, f"#field-{path.replace('.', '-')}", text)
        await settle(app, pilot)
        assert s.valid, s.all_problems()
        await pilot.press("ctrl+n")
        await paste_into(pilot, "#save-path", "my configs/run.yaml")   # not the working folder; a space in it
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        saved = load_config(work / "my configs" / "run.yaml")
        # The command Review shows trains that file when pasted into a shell (it read `train my configs/run.yaml`).
        assert shlex.split(str(app.screen.query_one("#train-command").render()))[:3] == [
            "lorapilot", "train", "my configs/run.yaml"]
        for path, (text, value) in TYPED.items():
            shown = app.get_screen(screen_name("hyperparams")).query_one(f"#field-{path.replace('.', '-')}").value
            assert shown == text, path                      # the text stays as typed
            assert field_value(s.cfg, path) == value, path
            assert field_value(saved, path) == value, path
        assert os.path.samefile(os.path.expanduser(saved.dataset.path), data)
        mine, theirs = (plan_run(c, Machine.for_gpu(None), n_examples=48) for c in (s.cfg, saved))
        assert mine.to_dict() == theirs.to_dict()
        assert (theirs.max_steps, theirs.examples_per_step) == (1000, 20)
        app.exit()


async def test_a_recipe_says_which_typed_values_it_replaced_and_keeps_the_rest_as_typed():
    """A recipe over typed values said only "Recipe qlora-default: 15 values set": the learning rate the user had
    typed was gone without a word. It names each change; a value it names that the field already holds (3e-2 for
    0.03) keeps the user's text."""
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-learning_rate", "1e-4")
        await type_into(pilot, "#field-training-warmup_ratio", "3e-2")
        await type_into(pilot, "#field-lora-r", "eight")               # refused: the recipe's 16 replaces it
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        app.screen.query_one("#recipe-list").highlighted = list(app.screen.recipes).index("qlora-default")
        await pilot.press("enter")
        await pilot.pause(0.1)
        said = list(app._notifications)[-1]
        assert said.title == "Recipe qlora-default"
        assert "training.learning_rate 1e-4 -> 0.0002" in said.message and "lora.r eight -> 16" in said.message
        assert "warmup_ratio" not in said.message
        fields = {p: app.screen.query_one(f"#field-{p.replace('.', '-')}").value
                  for p in ("training.learning_rate", "training.warmup_ratio", "lora.r")}
        assert fields == {"training.learning_rate": "0.0002", "training.warmup_ratio": "3e-2", "lora.r": "16"}
        assert app.wizard.cfg.training.learning_rate == 2e-4 and app.wizard.valid
        app.exit()


async def test_a_value_of_many_digits_is_saved_back_as_it_was(tmp_path, monkeypatch):
    """The field showed learning_rate 0.00012345678 with six digits (0.000123457); saving any other change wrote that
    into the user's file, a learning rate they never typed."""
    from engine.demo.model import demo_data_path

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"model: lorapilot-demo\ndataset: {{path: {demo_data_path()}}}\n"
                    "training: {learning_rate: 0.00012345678, num_epochs: 1.23456789}\n", encoding="utf-8")
    app = LorapilotApp(config_path=str(mine))
    async with app.run_test(size=SIZE) as pilot:
        await type_and_save(pilot, "#field-lora-r", "8")
        saved = load_config(mine)
        assert (saved.lora.r, saved.training.learning_rate, saved.training.num_epochs) == (8, 0.00012345678, 1.23456789)
        assert "0.00012345678" in mine.read_text(encoding="utf-8")
        app.exit()


async def test_the_demo_model_is_read_again_once_built(tmp_path, monkeypatch, demo_model_dir):
    """On a fresh machine the wizard reads the demo's shapes before the model is built (the data's tokenization
    builds it), with the tokenizer's target of 1,024 as its vocabulary; the built one has fewer (820), and the
    Model step, the estimate and the trainer's plan disagreed until the app was restarted."""
    import json
    import shutil

    from engine.demo.model import demo_model_dir as cached_demo

    monkeypatch.setenv("LORAPILOT_CACHE", str(tmp_path / "cache"))   # a newcomer's: nothing built yet
    built = json.loads((demo_model_dir / "config.json").read_text())["vocab_size"]
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        if not (cached_demo() / "config.json").exists():   # the data's helper may have built it there already
            assert s.model_info.arch.vocab != built
            shutil.copytree(demo_model_dir, cached_demo())    # as the helper's first tokenization does
            s.schedule("data", 0)
            await settle(app, pilot)
        assert s.model_info.arch.vocab == built
        assert f"vocab ({built:,})" in " ".join(c.note for c in s.estimate.components)


async def test_the_review_shows_the_plan_the_trainer_runs_as_lorapilot_estimate_words_it():
    """(c) The review said "memory lean" but not what the rules make of the other fields: the optimizer field showed
    paged_adamw_32bit while lean trains paged_adamw_8bit (and the fast path torch's fused AdamW), and nothing said
    whether the decoder layers compile. Its plan line is `lorapilot estimate`'s, from the same plan."""
    from engine.estimate.command import plan_words

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        s.set_raw("model", "meta-llama/Meta-Llama-3-8B")
        for _ in range(3):
            await pilot.press("ctrl+n")
            await settle(app, pilot)
        s.select_gpu("h100-80")
        for memory, compile_, words in (("lean", "true", ("paged_adamw_8bit", "activations offloaded",
                                                          "decoder layers compiled")),
                                        ("fast", "false", ("adamw_torch_fused",))):
            s.set_raw("training.memory", memory)
            s.set_raw("training.compile", compile_)
            await settle(app, pilot)
            text = " ".join(str(app.screen.query_one("#plan").render()).split())
            assert plan_words(s.estimate.plan) in text
            assert all(w in text for w in words), text
            assert (s.estimate.plan.memory, s.estimate.plan.compile_layers) == (memory, compile_ == "true")
        app.exit()
