"""One real sweep on the demo (tiny model, CPU), through the real CLI, driver and trainer processes."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import DEMO_CONFIG, run_cli
from engine.cli import main
from engine.config import load_config
from engine.rundir import MetricsWriter, pid_alive, read_metrics, read_status, write_status
from engine.sweep.driver import Driver
from engine.sweep.sweepdir import read_sweep


def small_demo(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    # 32 examples a micro-batch: steps long enough that the driver, polling every half second, sees the first rung
    # before a trial it halves has finished (at 4 the tiny model ran 6 steps within one poll on a fast machine)
    raw["training"].update(max_seq_length=64, micro_batch_size=32)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_real_sweep_halves_ranks_and_applies(tmp_path, demo_model_dir, capsys):
    cfg = small_demo(tmp_path)
    sweep_dir, best = tmp_path / "sweep", tmp_path / "best.yaml"
    # One at a time: 3e-3 (the grid's centre) first, then 3e-4, clearly worse at the first rung, then 1e-2.
    r = run_cli("sweep", str(cfg), "--lr", "3e-4,3e-3,1e-2", "--r", "4", "--steps", "6", "--parallel", "1",
                "--yes", "--sweep-dir", str(sweep_dir), "--apply", str(best), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr + (sweep_dir / "sweep.log").read_text()
    assert "Sweep trials" in r.stdout and "winner: lr" in r.stdout and "Eval loss, lr x r" in r.stdout

    s = read_sweep(sweep_dir)
    assert s["state"] == "done" and s["steps"] == 6 and s["rungs"] == [2, 4]
    trials = {t["id"]: t for t in s["trials"]}
    assert list(trials) == ["lr3e-3_r4", "lr3e-4_r4", "lr1e-2_r4"]
    for t in trials.values():  # every trial is an ordinary run directory, with an eval loss
        assert math.isfinite(t["eval_loss"]) and t["evals"][0][0] == 2 and read_status(t["run_dir"])["state"] in (
            "done", "stopped")
        assert t["tokens_per_s"] > 0 and t["train_loss"] > 0
        assert t["verdict"] or t["state"] == "stopped"  # a verdict needs two evaluations
    halved = trials["lr3e-4_r4"]
    assert halved["state"] == "stopped" and halved["stopped_by"] == "halving" and "worse half" in halved["stop_reason"]
    assert halved["step"] < 6
    done = [t for t in trials.values() if t["state"] == "done"]
    assert s["winner"]["id"] == min(done, key=lambda t: t["eval_loss"])["id"]
    assert len(s["table"]) == 3 and sum(row["winner"] for row in s["table"]) == 1
    assert s["plan"]["measured_trial_s"] > 0  # the CPU has no estimate: the first trial's time is measured

    applied = load_config(best)
    w = s["winner"]
    assert (applied.training.learning_rate, applied.lora.r, applied.lora.alpha) == (w["learning_rate"], 4, 8)
    assert applied.training.max_steps == 40 and applied.training.eval_steps == 10  # the base's own schedule

    again = tmp_path / "again.yaml"
    assert main(["sweep", "--apply", str(again), str(sweep_dir)]) == 0
    assert load_config(again).training.learning_rate == w["learning_rate"]
    assert main(["sweep", str(sweep_dir)]) == 0
    assert "halving" in capsys.readouterr().out


def _one_training_trial(tmp_path, lr: float, **trial_fields):
    """A one-trial sweep folder whose trial is training (its run folder made, empty): (sweep dir, trial, run dir)."""
    from engine.sweep.plan import Trial
    from engine.sweep.sweepdir import write_sweep

    t = Trial(lr, 4)
    sweep_dir = tmp_path / "sw"
    run_dir = sweep_dir / t.id
    run_dir.mkdir(parents=True)
    write_sweep(sweep_dir, {"base_config": load_config(DEMO_CONFIG).to_dict(), "steps": 6, "rungs": [2, 4],
                            "lanes": 1, "halving": True, "plan": {},
                            "trials": [{"id": t.id, "learning_rate": lr, "r": 4, "alpha": 8, "state": "training",
                                        "started": 1.0, "stopped_by": None, **trial_fields}]})
    return sweep_dir, t, run_dir


def _trial_exits(sweep_dir, t, run_dir):
    """The driver sees the trial's trainer exit with code 0: (driver, its record of the trial)."""
    driver = Driver(sweep_dir)
    trial = driver.trials[t.id]
    handle = SimpleNamespace(run_dir=run_dir, pid=None, process=SimpleNamespace(poll=lambda: 0))
    driver.handles[t.id], driver.tails[t.id], driver.lane_of[t.id] = handle, None, 0
    driver._on_exit(trial, handle, 0)
    return driver, trial


def test_driver_names_the_finding_that_stopped_a_trial(tmp_path):
    """A trial the trainer stopped on loss_explosion is reported so; the sweep goes on with the next."""
    sweep_dir, t, run_dir = _one_training_trial(tmp_path, 1.0)
    write_status(run_dir, state="stopped", step=3, max_steps=6, stop_reason="loss_explosion: The loss jumped")
    w = MetricsWriter(run_dir)
    w.write("train", 1, loss=8.0)
    w.write("eval", 2, eval_loss=9.0)
    w.write("train", 3, loss=30.0)
    w.write("finding", 3, code="loss_explosion", severity="error", message="The loss jumped")
    w.close()
    driver, trial = _trial_exits(sweep_dir, t, run_dir)
    assert trial["state"] == "stopped" and trial["stopped_by"] == "loss_explosion"
    assert trial["error_findings"] == ["loss_explosion"] and trial["eval_loss"] == 9.0
    assert not driver.handles and driver.stopping is None  # the sweep itself goes on


@pytest.mark.parametrize("why", ["halving", "user"])
def test_a_trial_that_finished_before_its_stop_took_effect_is_a_finished_trial(tmp_path, why):
    """Halving (or Ctrl-C) asked a short trial to stop, but it ran its last step first: the table said "halving"
    and the heatmap "† stopped early" beside a done 6/6 trial and its final eval loss."""
    from engine.sweep.report import render_stops

    sweep_dir, t, run_dir = _one_training_trial(
        tmp_path, 3e-4, stopped_by=why, stop_reason="eval loss 8.1 at step 2 is in the worse half")
    write_status(run_dir, state="done", step=6, max_steps=6)
    w = MetricsWriter(run_dir)
    w.write("eval", 2, eval_loss=8.1)
    w.write("eval", 6, eval_loss=7.9)
    w.close()
    driver, trial = _trial_exits(sweep_dir, t, run_dir)
    assert trial["state"] == "done" and trial["stopped_by"] is None and trial["stop_reason"] is None
    assert render_stops(driver.sweep) == []


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_resumes_where_it_was(tmp_path, demo_model_dir, capsys):
    """A pod preempted mid-sweep (the driver and the trainer killed at once, kill -9) lost the whole sweep: there was
    no way on. `sweep --resume` keeps what finished, resumes the trial cut short from its checkpoint and runs the
    rest; a config that is not the sweep's is refused."""
    import os
    import signal
    import time

    from engine.rundir import complete_checkpoints
    from engine.sweep.sweepdir import effective_sweep_state

    cfg = small_demo(tmp_path)
    sweep_dir = tmp_path / "sweep"
    r = run_cli("sweep", str(cfg), "--lr", "3e-3,1e-2", "--r", "4", "--steps", "6", "--parallel", "1",
                "--no-halving", "--yes", "--detach", "--sweep-dir", str(sweep_dir), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    first = sweep_dir / "lr3e-3_r4"   # the grid's first trial runs first
    deadline = time.monotonic() + 300
    while not complete_checkpoints(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert complete_checkpoints(first), (sweep_dir / "sweep.log").read_text()
    # The machine goes: the driver and the trainer die at once, with no word to anyone.
    killed = (read_sweep(sweep_dir)["driver_pid"], read_status(first)["pid"])
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # A killed process lives on until the kernel has ended it (a trainer in the middle of writing a checkpoint, on a
    # loaded machine, for seconds): a resume meanwhile rightly follows it as still saving. Wait for both to be gone.
    deadline = time.monotonic() + 60
    while (effective_sweep_state(read_sweep(sweep_dir)) != "lost" or any(map(pid_alive, killed))) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert effective_sweep_state(read_sweep(sweep_dir)) == "lost" and not any(map(pid_alive, killed))

    other = tmp_path / "other.yaml"   # the command that started it, but another config: refused, nothing written
    raw = yaml.safe_load(cfg.read_text())
    raw["training"]["warmup_ratio"] = 0.1
    other.write_text(yaml.safe_dump(raw))
    before = (sweep_dir / "sweep.json").read_bytes()
    assert main(["sweep", str(other), "--lr", "3e-3,1e-2", "--r", "4", "--steps", "6", "--no-halving",
                 "--sweep-dir", str(sweep_dir), "--resume", "--yes"]) == 2
    assert "training.warmup_ratio: 0.1 in" in capsys.readouterr().err
    assert (sweep_dir / "sweep.json").read_bytes() == before

    r = run_cli("sweep", str(cfg), "--lr", "3e-3,1e-2", "--r", "4", "--steps", "6", "--no-halving",
                "--sweep-dir", str(sweep_dir), "--resume", "--yes", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr + (sweep_dir / "sweep.log").read_text()
    assert "lr3e-3_r4: lost at step" in r.stdout and "resumes from its checkpoint at step" in r.stdout, r.stdout
    s = read_sweep(sweep_dir)
    assert s["state"] == "done" and s["resumes"] == 1 and s["spent_s"] > 0
    for t in s["trials"]:   # both trained to the end, evaluated at each rung and at the last step
        assert t["state"] == "done" and [e[0] for e in t["evals"]] == [2, 4, 6], t
    trials = {t["id"]: t for t in s["trials"]}
    assert trials["lr3e-3_r4"]["resumed"] and not trials["lr1e-2_r4"]["resumed"]
    events = [rec for rec in read_metrics(first) if rec["kind"] == "event"]
    assert any("resumed from checkpoint-" in rec["message"] for rec in events)
    assert s["winner"]["id"] in trials
    assert main(["sweep", "--resume", str(sweep_dir)]) == 2 and "nothing to resume" in capsys.readouterr().err
