"""The wizard, driven as a user drives it: keys into the real app, assertions on what the screens show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tui.app import LorapilotApp
from wizard_pilot import own_data, paste_into, row_problem, settle, shown, type_into

SIZE = (100, 32)


async def test_flow_model_data_values_estimate_and_recovery(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        # No arguments: the demo is preselected.
        assert type(app.screen).__name__ == "ModelScreen"
        assert s.cfg.model == "lorapilot-demo"
        assert s.cfg.dataset.path.endswith("demo/train.jsonl")
        assert s.data_rows == 400 and s.data_format == "alpaca"

        # A local model directory: read from disk, and the estimate appears.
        await paste_into(pilot, "#field-model", str(demo_model_dir))
        await settle(app, pilot)
        assert s.model_error is None and s.model_info.source == "local"
        assert "a local directory" in str(app.screen.query_one("#model-info").render())
        assert s.estimate is not None
        small_vram = s.estimate.device_total_gib

        # A wrong path: inline error, the text stays as typed.
        await type_into(pilot, "#field-model", "/nowhere/model")
        await settle(app, pilot)
        assert s.model_error and "/nowhere/model" in s.model_error
        assert app.screen.query_one("#field-model").value == "/nowhere/model"

        # A preset: bigger model, bigger estimate.
        await type_into(pilot, "#preset-filter", "qwen2.5-0.5")
        await pilot.press("enter", "enter")  # filter -> list, then pick the highlighted preset
        await settle(app, pilot)
        assert s.cfg.model == "Qwen/Qwen2.5-0.5B"
        assert app.screen.query_one("#field-model").value == "Qwen/Qwen2.5-0.5B"
        assert s.model_info.source == "preset"
        assert s.estimate.device_total_gib > small_vram

        # Dataset step: statistics and preview from the engine.
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "DatasetScreen"
        assert "detected: alpaca" in str(app.screen.query_one("#row-dataset-format .field-hint").render())
        await paste_into(pilot, "#field-dataset-path", "/nowhere/data.jsonl")
        await settle(app, pilot)
        assert s.data_error and "/nowhere/data.jsonl" in s.data_error
        assert "/nowhere/data.jsonl" in shown(app, "#data-problems")
        await paste_into(pilot, "#field-dataset-path", str(Path("presets/demo/train.jsonl").resolve()))
        await settle(app, pilot)
        assert s.data_error is None and s.data_rows == 400

        # Hyperparameters: steps follow the batch as it is typed.
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        await type_into(pilot, "#field-training-max_steps", "-1")
        await type_into(pilot, "#field-training-micro_batch_size", "2")
        await settle(app, pilot)
        steps_mb2 = s.estimate.total_steps
        await type_into(pilot, "#field-training-micro_batch_size", "4")
        await settle(app, pilot)
        assert s.cfg.effective_batch_size == 4 * s.cfg.training.gradient_accumulation_steps
        assert s.estimate.total_steps < steps_mb2
        assert f"{s.estimate.total_steps} steps" in str(app.screen.query_one("EstimateLine").render())

        # A bad value: shown next to the field, kept as typed, the rest still estimated.
        good_lr = s.cfg.training.learning_rate
        await type_into(pilot, "#field-training-learning_rate", "-1")
        await settle(app, pilot)
        assert "out of range" in row_problem(app, "training.learning_rate")
        assert s.raw["training.learning_rate"] == "-1"
        assert s.cfg.training.learning_rate == good_lr  # the last good value feeds the estimate
        assert "1 problem" in str(app.screen.query_one("EstimateLine").render())

        # Forward to review (launch refused, problem listed), back again: nothing lost.
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert "learning_rate" in str(app.screen.query_one("#review-problems").render())
        await pilot.press("ctrl+l")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ReviewScreen"
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        assert app.screen.query_one("#field-training-learning_rate").value == "-1"
        assert app.screen.query_one("#field-training-micro_batch_size").value == "4"
        await pilot.press("escape", "escape")
        await pilot.pause(0.1)
        assert app.screen.query_one("#field-model").value == "Qwen/Qwen2.5-0.5B"

        # Recover: fix the value where it was typed.
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        await type_into(pilot, "#field-training-learning_rate", "3e-4")
        await settle(app, pilot)
        assert row_problem(app, "training.learning_rate") == ""
        assert s.valid and s.cfg.training.learning_rate == pytest.approx(3e-4)


async def test_recipe_and_auto_fit_change_the_values(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        s.set_raw("model", "meta-llama/Llama-2-7b-hf")
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        option_list = app.screen.query_one("#recipe-list")
        names = [option_list.get_option_at_index(i).id for i in range(option_list.option_count)]
        option_list.highlighted = names.index("consumer-24gb")
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.cfg.training.max_seq_length == 2048 and s.cfg.training.micro_batch_size == 2
        assert app.screen.query_one("#field-training-micro_batch_size").value == "2"

        # A micro-batch far too big for a T4's fast path: memory auto goes lean, and the review says so.
        await type_into(pilot, "#field-training-micro_batch_size", "64")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        s.select_gpu("t4")
        await settle(app, pilot)
        assert s.estimate.memory_mode == "lean" and s.estimate.fits
        assert "memory lean (auto: the fast path does not fit)" in str(app.screen.query_one("#plan").render())
        # Insisting on the fast path: it does not fit, and one key fits it.
        s.set_raw("training.memory", "fast")
        await settle(app, pilot)
        assert s.estimate.fits is False
        effective = s.cfg.effective_batch_size
        await pilot.press("ctrl+f")
        await settle(app, pilot)
        # The fast path packs a whole optimizer step per micro-batch whatever micro_batch_size says: the fit is lean.
        assert s.cfg.training.memory == "lean"
        assert s.cfg.effective_batch_size == effective
        assert s.estimate.fits


async def test_saved_config_opens_filled_and_bad_values_stay_visible(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model: Qwen/Qwen2.5-0.5B\ndataset: {path: data.jsonl}\nlora: {r: 32}\n")
    app = LorapilotApp(config_path=str(good))
    async with app.run_test(size=SIZE):
        assert app.wizard.raw["lora.r"] == "32"
        assert app.screen.query_one("#field-model").value == "Qwen/Qwen2.5-0.5B"
        app.exit()

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: Qwen/Qwen2.5-0.5B\ndataset: {path: data.jsonl}\ntraining: {learning_rate: -1}\n")
    app = LorapilotApp(config_path=str(bad))
    async with app.run_test(size=SIZE) as pilot:
        assert app.wizard.raw["training.learning_rate"] == "-1"
        assert "training.learning_rate" in app.wizard.problems
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        assert "out of range" in row_problem(app, "training.learning_rate")
        app.exit()


async def test_save_config_round_trips(tmp_path):
    from engine.config import load_config

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-lora-r", "8")
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        target = tmp_path / "sub" / "mine.yaml"
        await paste_into(pilot, "#save-path", str(target))
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert target.exists()
        assert load_config(target).lora.r == 8
        assert str(target) in str(app.screen.query_one("#train-command").render())
        app.exit()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard: the run trains to its end
async def test_launch_trains_what_was_typed_to_done_with_an_adapter(tmp_path, monkeypatch, demo_model_dir):
    """Values typed into the wizard are the values the trainer reads, and the launched run finishes on its own,
    detached from the app that started it (the app has quit before it ends)."""
    from engine.config import load_config
    from engine.rundir import read_status

    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)  # Launch writes the config Review names (lorapilot.yaml) where the user is
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-max_steps", "4")
        await type_into(pilot, "#field-training-learning_rate", "0.002")
        await type_into(pilot, "#field-training-micro_batch_size", "4")
        await type_into(pilot, "#field-lora-r", "8")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        await pilot.press("ctrl+l")
        deadline = time.monotonic() + 120  # a hang guard
        while type(app.screen).__name__ != "MonitorScreen" and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert type(app.screen).__name__ == "MonitorScreen"
        handle = app.wizard.last_run
        run_dir = Path(handle.run_dir)
        assert run_dir.parent == tmp_path / "runs"
        # The command Review showed works: the config it names is there, and is this run's.
        assert load_config(tmp_path / "lorapilot.yaml").training.max_steps == 4
        app.exit()
    assert handle.process is not None  # our child: reaped here; a hang is killed (conftest stops the rest)
    try:
        handle.process.wait(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(handle.pid, signal.SIGKILL)
        handle.process.wait()
    cfg = load_config(run_dir / "config.yaml")
    assert (cfg.training.max_steps, cfg.training.learning_rate, cfg.training.micro_batch_size, cfg.lora.r) == (
        4, 0.002, 4, 8)
    status = read_status(run_dir) or {}
    assert status.get("state") == "done", (run_dir / "train.log").read_text()[-2000:]
    assert status.get("step") == 4
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((run_dir / "adapter" / "adapter_config.json").read_text())["r"] == 8  # what peft built


async def test_typing_never_waits_for_the_tokenizer():
    """Keys echo at once while the dataset is tokenized (that runs in a helper process, not on our GIL)."""
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)

        async def worst_key(keys: str) -> float:
            worst = 0.0
            for key in keys:
                start = time.monotonic()
                await pilot.press(key)
                worst = max(worst, time.monotonic() - start)
            return worst

        # The same keys on the same machine with nothing to tokenize: a loaded CI box slows both alike, so the
        # bound is relative to it. Tokenizing on the UI thread would hold a key for the whole dataset (seconds).
        idle = await worst_key("xyz")
        app.wizard.schedule("data", 0)  # a fresh inspection, as when the model or the data change
        await pilot.pause(0.05)
        busy = await worst_key("abcdef")
        assert app.screen.query_one("#field-model").value.endswith("xyzabcdef")
        assert busy < max(1.0, 5 * idle), f"a key took {busy:.2f} s to be handled (idle: {idle:.2f} s)"
        app.exit()


async def test_a_quoted_path_as_a_terminal_drops_it_is_read(tmp_path, demo_model_dir):
    """A file dragged into the terminal, or copied from `ls`, arrives quoted when its path holds a space:
    '/home/me/my data/chat.jsonl'. It read 'no such file or directory' for the path with its quotes; the field now
    reads it as the YAML config reads a quoted value: the path inside."""
    folder = tmp_path / "my data"
    folder.mkdir()
    data = folder / "chat.jsonl"
    data.write_text("".join(f'{{"instruction": "say {i}", "output": "number {i}"}}\n' for i in range(40)),
                    encoding="utf-8")
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        await paste_into(pilot, "#field-model", f"'{demo_model_dir}'")
        await settle(app, pilot)
        assert s.model_error is None and s.cfg.model == str(demo_model_dir)
        await pilot.press("ctrl+n")
        await paste_into(pilot, "#field-dataset-path", f'"{data}" ')
        await settle(app, pilot)
        assert s.data_error is None and s.data_rows == 40, s.data_error
        assert s.cfg.dataset.path == str(data)


async def test_status_line_counts_no_steps_from_data_that_does_not_read(tmp_path):
    """A dataset with a row the reader refuses ("✗ 1 problem"): the status line showed "6 steps (2/epoch)" and a
    time, counted from the file's lines. Now no count, as `lorapilot estimate` says for the same config; fixed,
    the count comes back."""
    from tui.widgets.estimate_line import EstimateLine

    data = Path(own_data(tmp_path, 8))
    data.write_text(data.read_text() + "{not json\n")
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        s = app.wizard
        s.set_many({"training.max_steps": -1, "training.num_epochs": 3, "training.micro_batch_size": 1,
                    "training.gradient_accumulation_steps": 4})
        s.set_raw("dataset.path", str(data))
        await settle(app, pilot)
        line = str(app.screen.query_one(EstimateLine).render())
        assert s.data_error and "mine.jsonl:9" in s.data_error
        assert line.startswith("✗ 1 problem") and "steps: need the data" in line, line
        assert s.estimate is not None and s.estimate.total_steps is None and s.estimate.time_s is None
        data.write_text(data.read_text().replace("{not json\n", '{"instruction": "a", "output": "b"}\n'))
        s.set_raw("dataset.path", str(data) + " ")
        s.set_raw("dataset.path", str(data))
        await settle(app, pilot)
        assert s.data_error is None and "6 steps (2/epoch)" in str(app.screen.query_one(EstimateLine).render())
