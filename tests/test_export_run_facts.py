"""Exports of a run made here in a second (an untrained adapter on the demo model, no training): what the verb
prints while it loads, and what the model card says of the steps when status.json is gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_CONFIG, run_cli


@pytest.fixture
def adapter_run(tmp_path, demo_model_dir) -> Path:
    """A run folder with config.yaml and adapter/ only: no status.json, no metrics, no checkpoints."""
    from peft import LoraConfig, get_peft_model

    from engine.model import causal_lm, load_tokenizer

    rd = tmp_path / "run"
    rd.mkdir()
    shutil.copy(DEMO_CONFIG, rd / "config.yaml")
    model = get_peft_model(causal_lm(str(demo_model_dir)),
                           LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(str(rd / "adapter"))
    load_tokenizer(str(demo_model_dir)).save_pretrained(str(rd / "adapter"))
    return rd


def test_merged_export_prints_no_loading_progress_bars(adapter_run, tmp_path):
    """transformers' "Loading weights" and "Writing model shards" bars are noise in a script's log (carriage
    returns); the verb's own line says what it does, as chat's does."""
    r = run_cli("export", str(adapter_run), "--merged", str(tmp_path / "merged"))
    assert r.returncode == 0, r.stderr
    assert "merging the adapter" in r.stderr
    assert "Loading weights" not in r.stderr and "%|" not in r.stderr and "\r" not in r.stderr, r.stderr[:500]


def test_a_merge_on_the_cpu_says_fp32_as_its_files_are(adapter_run, tmp_path):
    """Without a GPU the base is merged in fp32 (twice a 16-bit model's size): the verb's line and the model card
    said "16-bit" of files saved in float32."""
    out = tmp_path / "merged"
    r = run_cli("export", str(adapter_run), "--merged", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert "in 32-bit (fp32, no GPU)" in r.stderr and "16-bit" not in r.stderr, r.stderr
    card = (out / "README.md").read_text()
    assert "saved 32-bit, fp32" in card and "16-bit" not in card


def test_quieting_keeps_the_hubs_download_bars(monkeypatch):
    """A base model not in the cache is gigabytes to download: that bar is real progress and stays on; only
    transformers' own bars go. A user who turned the hub's off keeps them off."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    from engine.model import quiet_progress_bars

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)
    hub_utils.enable_progress_bars()
    try:
        quiet_progress_bars()
        assert not hf_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()
        hub_utils.disable_progress_bars()
        quiet_progress_bars()
        assert hub_utils.are_progress_bars_disabled()
    finally:
        hub_utils.enable_progress_bars()


def _steps_row(out: Path) -> str:
    return next(line for line in (out / "README.md").read_text().splitlines() if line.startswith("| Steps |"))


def test_card_of_a_run_without_any_step_record_says_unknown(adapter_run, tmp_path):
    """No status.json, checkpoint or metrics: "Steps 0 of 0" was a false claim; nothing knows, so it says so."""
    r = run_cli("export", str(adapter_run), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "0 of 0" not in _steps_row(tmp_path / "out") and "unknown" in _steps_row(tmp_path / "out")


def test_card_without_status_json_reads_the_checkpoint_and_metrics(adapter_run, tmp_path):
    """status.json gone: the planned count from the last checkpoint's trainer_state.json (rundir.planned_steps),
    the steps trained from the most advanced of it and metrics.jsonl's last train record."""
    from engine.export import export_adapter

    ckpt = adapter_run / "checkpoints" / "checkpoint-20"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 20, "max_steps": 40}))
    (adapter_run / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "train", "step": s, "time": 1000.0 + s, "loss": 2.0}) + "\n" for s in (2, 38, 40)))
    assert _steps_row(export_adapter(adapter_run, tmp_path / "a")) == "| Steps | 40 of 40 |"
    (adapter_run / "metrics.jsonl").unlink()
    assert _steps_row(export_adapter(adapter_run, tmp_path / "b")) == "| Steps | 20 of 40 |"


def test_export_without_a_target_says_nothing_was_written_and_what_would(tmp_path, capsys):
    """`lorapilot export RUN` printed one bare path, which reads as "exported there": it is where the adapter already
    is, and nothing is written. The path stays alone on stdout (scripts read it); stderr says what to add."""
    from conftest import fake_adapter
    from engine.cli import main

    run = tmp_path / "run"
    fake_adapter(run / "adapter")
    shutil.copy(DEMO_CONFIG, run / "config.yaml")
    assert main(["export", str(run)]) == 0
    out, err = capsys.readouterr()
    err = " ".join(err.split())  # wrapped to the terminal's width
    assert out == f"{run / 'adapter'}\n"
    assert "nothing written" in err
    for option in ("--out DIR", "--merged DIR", "--for ollama|vllm|llama.cpp"):
        assert option in err, err


def test_card_says_what_the_run_trained_with_when_config_yaml_was_edited_after(adapter_run, tmp_path):
    """config.yaml is read by no trainer once it started: edited after the run, the card described settings the
    adapter never trained with (r 8 and a learning rate of 1e-4 for an r 16 adapter trained at 3e-3). The card says
    what the newest checkpoint recorded, and names each edit."""
    from engine.config import load_config
    from engine.export import export_adapter
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import flat_config

    ckpt = adapter_run / "checkpoints" / "checkpoint-40"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 40, "max_steps": 40}))
    recorded = flat_config(load_config(adapter_run / "config.yaml"))
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps({"config": recorded, "data_sha256": "", "optimizer": ""}))
    text = (adapter_run / "config.yaml").read_text()
    (adapter_run / "config.yaml").write_text(text.replace("r: 16", "r: 8").replace("learning_rate: 3.0e-3",
                                                                                     "learning_rate: 1.0e-4"))
    card = (export_adapter(adapter_run, tmp_path / "out") / "README.md").read_text()
    assert "r 16, alpha 32" in card and "| Learning rate | 0.003," in card, card
    assert ("config.yaml was edited after the run trained (lora.r 16 -> 8; training.learning_rate 0.003 -> 0.0001): "
            "this card says what the run trained with, as checkpoint-40 recorded it") in card
    (adapter_run / "config.yaml").write_text(text)   # as it trained: nothing to say
    assert "edited" not in (export_adapter(adapter_run, tmp_path / "again") / "README.md").read_text()


def test_a_loss_no_float_holds_is_left_out_of_the_cards_numbers(tmp_path):
    """An integer JSON allows and no float holds (a hand-edited metrics line) became the card's last training loss
    and ended its "{:.4f}" in an OverflowError; true was a loss of 1. The readers' rule: no number."""
    from engine.config import Config
    from engine.export.facts import RunFacts, _training_facts

    huge = 10 ** 400
    records = [{"kind": "train", "step": 1, "time": 1.0, "loss": 2.0}, {"kind": "eval", "step": 1, "eval_loss": 1.5},
               {"kind": "train", "step": 2, "time": 2.0, "loss": huge}, {"kind": "eval", "step": 2, "eval_loss": True}]
    facts = RunFacts(run_dir=tmp_path, cfg=Config(model="m"), adapter=tmp_path, base_model="m", base_path="m")
    _training_facts(facts, records)
    assert (facts.train_loss, facts.eval_loss, facts.best_eval) == (2.0, 1.5, (1, 1.5))


@pytest.mark.parametrize(("planned", "said"), [(False, False), (True, True), (None, True)])
def test_the_card_says_packed_as_the_plan_trained(tmp_path, planned, said):
    """A model whose layers carry state across a packed row (Qwen3.5, Mamba, LFM2) trains padded though its config
    packs (engine.plan.packing_for): the card read training.packing and said "packed". The plan in status.json
    says; a status without it (an older run) leaves the config's word."""
    from engine.config import Config
    from engine.export.card import training_table
    from engine.export.facts import RunFacts, _training_facts

    facts = RunFacts(run_dir=tmp_path, cfg=Config(model="m"), adapter=tmp_path, base_model="m", base_path="m")
    assert facts.cfg.training.packing
    _training_facts(facts, [], {"plan": {"packing": planned}} if planned is not None else {})
    batch = dict(training_table(facts))["Batch"]
    assert batch.endswith(", packed") == said, batch
