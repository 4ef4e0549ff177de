"""The wizard's advice and checklist: each field warns when outside the usual range, each checklist line answers."""

from __future__ import annotations

from tui.app import LorapilotApp
from wizard_pilot import own_data, own_model_and_data, paste_into, row_label, settle, shown, type_into

SIZE = (100, 32)


def row_advice(app, path: str) -> str:
    return row_label(app, path, "advice")


def checklist_lines(app) -> list[str]:
    return shown(app, "#checklist").splitlines()


async def test_the_learning_rate_row_grades_the_value_against_the_demo_models_own_range():
    """The wizard opens on the demo, whose tiny model trains at ~3e-3: its rate is said to suit it, and the
    recipe's 2e-4 is far too low for it (tests/test_lr_seam.py: the same words on the checklist and the estimate)."""
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        await type_into(pilot, "#field-training-learning_rate", "3e-3")
        await pilot.pause(0.1)
        assert row_advice(app, "training.learning_rate") == "✓ 3e-3: the demo's tiny model trains at ~3e-3"
        await type_into(pilot, "#field-training-learning_rate", "6e-3")
        await pilot.pause(0.1)
        assert row_advice(app, "training.learning_rate").startswith("i 6e-3 is a little above the demo's 1e-3 to 5e-3")
        await type_into(pilot, "#field-training-learning_rate", "2e-4")
        await pilot.pause(0.1)
        assert row_advice(app, "training.learning_rate").startswith("! 2e-4 is far below the demo's 1e-3 to 5e-3")
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


async def test_review_on_the_cpu_says_what_holds_there_and_a_card_brings_the_gpu_checks_back(monkeypatch):
    # No card on this machine: the run trains on the CPU in fp32, in RAM. Review shows no fit line, no card and
    # no CUDA context, and the checklist's GPU lines are information, not ticks for checks that were not made.
    import tui.models.wizard_engine_calls as engine_calls

    def presets_only():
        from engine.estimate import list_gpus
        return list_gpus(), None

    monkeypatch.setattr(engine_calls, "detect_gpus", presets_only)
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        assert app.wizard.gpu is None and app.wizard.estimate.on_cpu
        lines, bar = checklist_lines(app), shown(app, "#vram-bar")
        assert "i fp32 on this CPU (no GPU)" in lines and "i no GPU to fit: the run uses this machine's RAM" in lines
        assert not any("GPU" in line and line.startswith("✓") for line in lines), lines
        for gone in ("fit line", "card", "CUDA context", "nvidia-smi", "16-bit"):
            assert gone not in bar, (gone, bar)
        assert "at the peak, in this machine's RAM (no GPU to fit)" in bar and "in fp32 during its matmul" in bar

        app.wizard.select_gpu("t4")       # what picking the T4 in Review's GPU list does
        await settle(app, pilot)
        lines, bar = checklist_lines(app), shown(app, "#vram-bar")
        assert "✓ bf16 or fp16 to suit the GPU" in lines and "✓ Memory under 90 % of the GPU" in lines
        assert not any("CPU" in line for line in lines), lines
        assert "┊ 90% of the card: the fit line" in bar and "CUDA context" in bar
        app.exit()


async def test_a_model_without_an_estimate_leaves_the_memory_line_unchecked_on_a_card(tmp_path, demo_model_dir):
    # A card is picked, but the model's config.json cannot be read: there is no estimate, so nothing compared the
    # memory with the card. The line says so, with the reason, instead of a tick; the checks that ran still tick.
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, "vocab_size": -1}), encoding="utf-8")
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await paste_into(pilot, "#field-model", str(model))
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        app.wizard.select_gpu("h100-80")   # what picking the H100 in Review's GPU list does
        await settle(app, pilot)
        s = app.wizard
        assert s.gpu is not None and s.estimate is None and s.findings is not None and "vocab_size" in s.model_error
        lines = checklist_lines(app)
        memory = next(line for line in lines if "Memory under 90 % of the GPU" in line)
        assert memory == "? Memory under 90 % of the GPU (not checked: the estimate needs the model's size: pick a " \
                         "model that can be read)", memory
        assert not any(line.startswith("✓") and "Memory" in line for line in lines), lines
        assert "✓ Warmup at the start" in lines and "✓ bf16 or fp16 to suit the GPU" in lines
        app.exit()


async def test_bf16_on_a_card_of_unknown_bf16_support_is_not_ticked(monkeypatch):
    # A card without a preset whose compute capability NVML did not give: nobody knows whether it has bf16. An
    # explicit bf16 is then not checked (the trainer refuses it at load if the card lacks it); auto needs no check.
    import tui.models.wizard_engine_calls as engine_calls
    from engine.estimate import GpuSpec, list_gpus

    card = GpuSpec(id="detected", name="NVIDIA Mystery 48GB", memory_gib=48.0, bf16=None, tflops_16bit=None,
                   detected=True)
    monkeypatch.setattr(engine_calls, "detect_gpus", lambda: (list_gpus(), card))
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        assert app.wizard.gpu is card and "✓ bf16 or fp16 to suit the GPU" in checklist_lines(app)
        app.wizard.set_raw("training.precision", "bf16")
        await settle(app, pilot)
        lines = checklist_lines(app)
        assert "? bf16 or fp16 to suit the GPU (not checked: whether the NVIDIA Mystery 48GB has bf16 is " \
               "unknown)" in lines, lines
        assert "✓ Memory under 90 % of the GPU" in lines   # the estimate was made: that check stands
        app.exit()


async def test_own_data_resets_the_demo_tuning_but_keeps_what_the_user_changed(tmp_path):
    from wizard_pilot import paste_into

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        assert s.cfg.training.learning_rate == 3e-3 and s.cfg.training.max_steps == 40  # the demo's
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-eval_steps", "5")  # the user's own choice survives
        await pilot.press("escape")
        await paste_into(pilot, "#field-dataset-path", own_data(tmp_path))
        await settle(app, pilot)
        assert s.cfg.training.learning_rate == 2e-4 and s.cfg.training.max_steps == -1
        assert s.cfg.training.num_epochs == 3 and s.cfg.training.eval_steps == 5
        notes = [n.message for n in app._notifications]
        assert any("learning_rate 0.003 -> 0.0002" in m and "max_steps 40 -> -1" in m for m in notes), notes
        # The dataset step's own row shows the reset too, without leaving the step.
        assert app.screen.query_one("#field-training-max_seq_length").value == "512"
        # Back to the demo data: nothing is reset twice (the user's values stay theirs).
        await type_into(pilot, "#field-training-max_seq_length", "256")
        await settle(app, pilot)
        assert s.cfg.training.max_seq_length == 256
        app.exit()


async def test_review_checklist_carries_the_learning_rate_and_epoch_findings(tmp_path, demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await own_model_and_data(pilot, demo_model_dir, own_data(tmp_path))
        # What a user who kept the demo's tuning would run: 40 steps of 8 on 48 examples, at 3e-3.
        for field, text in (("learning_rate", "3e-3"), ("max_steps", "40"), ("micro_batch_size", "8"),
                            ("gradient_accumulation_steps", "1")):
            await type_into(pilot, f"#field-training-{field}", text)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        lines = checklist_lines(app)
        lr = next(i for i, line in enumerate(lines) if "Learning rate in the recommended range" in line)
        assert lines[lr].startswith("! ") and "far above the recommended" in lines[lr + 1], lines[lr:lr + 2]
        epochs = next(i for i, line in enumerate(lines) if "passes over the data" in line)
        assert lines[epochs].startswith("! "), lines[epochs]
        assert "times" in lines[epochs + 1], lines[epochs + 1]
        app.exit()


async def test_leaving_the_demo_while_typing_fast_keeps_every_keystroke():
    """tmux delivers a typed path in one burst: the editor runs ahead of the state when the demo's tuning resets."""
    from textual.widgets import Input

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        editor = app.screen.query_one("#field-dataset-path", Input)
        with editor.prevent(Input.Changed):
            editor.value = "data/train.jsonl"          # the keys already typed...
        app.wizard.edit("dataset.path", "")           # ...while the state hears the first one (ctrl+u)
        await pilot.pause(0.1)
        assert editor.value == "data/train.jsonl"
        assert app.screen.query_one("#field-training-max_seq_length", Input).value == "512"  # reset, and shown
        app.exit()


async def test_max_seq_length_past_the_context_is_an_error_and_auto_fit_stays_within_the_data():
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        await pilot.press("ctrl+n")
        await type_into(pilot, "#field-training-max_seq_length", "1000000")
        await settle(app, pilot)
        assert "past the model's context of 1,024" in row_label(app, "training.max_seq_length", "problem")
        await pilot.press("ctrl+n", "ctrl+n")
        await settle(app, pilot)
        assert "context" in str(app.screen.query_one("#review-problems").render())
        await pilot.press("ctrl+f")
        await settle(app, pilot)
        # The demo's examples are at most 40 tokens long: 64 keeps 95 % whole (never 500,000).
        assert s.cfg.training.max_seq_length == 64 and s.valid
        assert any("1000000 -> 64" in n.message for n in app._notifications)
        app.exit()


async def test_statistics_show_the_trainers_split_and_a_tiny_validation_set_is_flagged(tmp_path):
    from wizard_pilot import paste_into

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        stats = str(app.screen.query_one("#data-stats").render())
        assert "400 read: 380 train, 20 validation (validation_split 0.05)" in stats, stats
        await paste_into(pilot, "#field-dataset-path", own_data(tmp_path))   # 48 rows: 2 held out
        await settle(app, pilot)
        problems = shown(app, "#data-problems")
        assert "Only 2 examples held out for validation" in problems
        assert "Set dataset.validation_split to 0.2" in problems
        app.exit()


async def test_the_problems_tab_counts_the_steps_the_status_line_counts(tmp_path):
    from wizard_pilot import paste_into

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await paste_into(pilot, "#field-dataset-path", own_data(tmp_path, 400))
        await settle(app, pilot)
        est = app.wizard.estimate
        (rare,) = [f for f in app.wizard.findings if f.code == "eval_too_rare"]
        assert f"{est.steps_per_epoch} steps per epoch, {est.total_steps} in all" in rare.evidence
        assert f"{est.total_steps} steps ({est.steps_per_epoch}/epoch)" in str(
            app.screen.query_one("EstimateLine").render())
        app.exit()


async def test_an_alpha_typo_is_a_problem_on_its_row_and_a_usual_one_is_not():
    """alpha 16000 at r 16 was accepted without a word of its 1000x scale; the row now shows the validator's
    refusal (engine.lora_scale's bound), and the recipe's 2 x r shows nothing."""
    from wizard_pilot import row_problem

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        await type_into(pilot, "#field-lora-alpha", "16000")
        await pilot.pause(0.1)
        assert "allowed up to 32 x r (512)" in row_problem(app, "lora.alpha")
        await type_into(pilot, "#field-lora-alpha", "32")
        await pilot.pause(0.1)
        assert row_problem(app, "lora.alpha") == "" and row_advice(app, "lora.alpha") == ""
        app.exit()


async def test_a_typo_in_the_demos_path_and_its_correction_bring_the_demos_tuning_back():
    """A beginner mistypes the demo's path, then corrects it: the first keystroke left the demo (its tuning went
    back to the recipe's: 512 tokens, 3 epochs, lr 2e-4), and the demo then trained with values made for a 7B model.
    Back on the demo's data, its tuning returns, except a value the user set in between."""
    from textual.widgets import Input

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        demo_path = s.raw["dataset.path"]
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        await paste_into(pilot, "#field-dataset-path", demo_path.replace("train.jsonl", "trian.jsonl"))
        await settle(app, pilot)
        assert (s.raw["training.max_seq_length"], s.raw["training.learning_rate"]) == ("512", "0.0002")
        s.edit("training.num_epochs", "2")            # the user's own value, typed while off the demo
        await paste_into(pilot, "#field-dataset-path", demo_path)
        await settle(app, pilot)
        assert (s.raw["training.max_seq_length"], s.raw["training.learning_rate"]) == ("128", "0.003")
        assert s.raw["training.max_steps"] == "40" and s.raw["training.num_epochs"] == "2"
        assert app.screen.query_one("#field-training-max_seq_length", Input).value == "128"   # shown
        assert any("max_seq_length 512 -> 128" in n.message for n in app._notifications)
        # And a second typo leaves it again.
        await paste_into(pilot, "#field-dataset-path", demo_path + "x")
        await settle(app, pilot)
        assert s.raw["training.max_seq_length"] == "512"
        app.exit()
