"""Real induced failures on the tiny model: caught live, refused before training, flagged with the right count."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import DEMO_CONFIG, run_cli
from engine.cli import main
from engine.rundir import read_metrics, read_status

@pytest.mark.slow
def test_huge_learning_rate_is_caught_live_and_stops_the_run(tmp_path):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"].update(max_seq_length=64, micro_batch_size=4, max_steps=80, learning_rate=1.0, warmup_ratio=0.0,
                           max_grad_norm=1000.0, logging_steps=1, eval_steps=1000, save_steps=1000,
                           stop_on=["nan_loss", "loss_explosion"])
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    r = run_cli("train", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    status = read_status(run_dir)
    assert status["state"] == "stopped" and status["step"] < 80, status
    errors = [x for x in read_metrics(run_dir) if x["kind"] == "finding" and x["severity"] == "error"]
    assert errors and errors[0]["code"] in ("nan_loss", "loss_explosion") and errors[0]["fix"]
    assert status["stop_reason"].startswith(errors[0]["code"])
    assert (run_dir / "checkpoints" / f"checkpoint-{status['step']}").is_dir()  # stopped with a checkpoint
    assert "stopped at step" in r.stdout


def test_short_max_seq_length_flags_truncated_responses_with_the_count(tmp_path, capsys):
    long_answer = " ".join(f"item{i}" for i in range(40))
    rows = [{"instruction": f"List items for case {i}.", "output": long_answer} for i in range(20)]
    rows += [{"instruction": f"Say yes {i}.", "output": "yes"} for i in range(15)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = run_cli("inspect-data", str(data), "--max-seq-length", "48", "--json")
    out = json.loads(r.stdout)
    (f,) = [x for x in out["findings"] if x["code"] == "responses_truncated"]
    assert f["evidence"].startswith("20 of 35"), f["evidence"]
    assert "training.max_seq_length" in f["fix"]
    # The same command with room for the answers, in this process (the console entry is tested just above).
    capsys.readouterr()
    assert main(["inspect-data", str(data), "--max-seq-length", "512", "--json"]) == 0
    assert not [x for x in json.loads(capsys.readouterr().out)["findings"] if x["code"] == "responses_truncated"]
