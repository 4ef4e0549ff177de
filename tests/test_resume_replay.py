"""A resumed run trains exactly what the uninterrupted run trained (tiny demo model, CPU, the real CLI).

A resume that silently re-trains the first micro-batches of an epoch, restarts the schedule, or redraws the
dropout masks raises no error: the loss only looks a little different. Here it must be the same, bit for bit,
across an epoch boundary: the plan's micro-batches (engine.data.packing), the Trainer's skip of those already
trained, the learning-rate schedule and the RNG states restored from the checkpoint.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import DEMO_CONFIG, run_cli
from engine.run_clock import run_elapsed
from engine.rundir import read_metrics, read_status

pytestmark = pytest.mark.slow


def _records_after_resume(run_dir) -> dict[int, tuple[float, float, float]]:
    """The train records the resumed trainer wrote (those after its "resumed from" event)."""
    records = read_metrics(run_dir)
    starts = [i for i, r in enumerate(records) if r["kind"] == "event" and "resumed from" in r.get("message", "")]
    after = records[starts[-1] + 1:] if starts else records
    return {r["step"]: (r["loss"], r["grad_norm"], r["learning_rate"]) for r in after if r["kind"] == "train"}


def test_a_run_killed_and_resumed_trains_what_the_uninterrupted_run_trained(tmp_path):
    rows = (DEMO_CONFIG.parent / "demo" / "train.jsonl").read_text().splitlines()[:40]
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(tmp_path / "d.jsonl")
    raw["lora"]["dropout"] = 0.1  # masks drawn from the RNG: the restored RNG state matters
    # 38 training rows, 16 a step: 3 steps an epoch, so steps 3-6 cross from the first epoch into the second, one
    # past num_epochs that max_steps asks for: its own shuffle (engine.data.packing.epochs_to_plan), replayed too
    raw["training"].update(max_seq_length=64, micro_batch_size=4, gradient_accumulation_steps=4, num_epochs=1,
                           max_steps=6, logging_steps=1, save_steps=2, eval_steps=100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    whole = tmp_path / "whole"
    r = run_cli("train", str(cfg), "--run-dir", str(whole), timeout=1800)  # a hang guard, not a timing
    assert r.returncode == 0, r.stderr

    # As a kill -9 after checkpoint-2 leaves it: later records in metrics.jsonl, no later checkpoint, no adapter
    killed = tmp_path / "killed"
    shutil.copytree(whole, killed, symlinks=True)
    for later in ("checkpoint-4", "checkpoint-6"):
        shutil.rmtree(killed / "checkpoints" / later)
    shutil.rmtree(killed / "adapter")
    r = run_cli("train", "--resume", str(killed), timeout=1800)
    assert r.returncode == 0, r.stderr

    resumed = _records_after_resume(killed)
    uninterrupted = {s: v for s, v in _records_after_resume(whole).items() if s > 2}
    assert sorted(resumed) == [3, 4, 5, 6]
    assert resumed == uninterrupted, json.dumps({"resumed": resumed, "uninterrupted": uninterrupted}, indent=1)
    epochs = {r["step"]: r["epoch"] for r in read_metrics(killed) if r["kind"] == "train"}
    assert epochs[3] <= 1.0 < epochs[4]  # the resumed steps do cross into the second epoch

    # Its elapsed time is its two lives, the time between them (the copy, here) left out: the first from its
    # launch (kept by the resume as first_launched) to its last record, the second from its own launch.
    status, records = read_status(killed), read_metrics(killed)
    assert status["first_launched"] == read_status(whole)["launched"] < status["launched"]
    at = max(i for i, r in enumerate(records) if r.get("code") == "resumed")
    assert records[at]["launched"] == status["launched"]
    first_life = max(r["time"] for r in records[:at]) - status["first_launched"]
    assert run_elapsed(status, records) == pytest.approx(first_life + records[-1]["time"] - status["launched"])
