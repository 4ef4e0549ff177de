"""A synthetic sweep directory for the sweep monitor's tests and screenshots: sweep.json as the driver writes it,
beside one ordinary run directory (status.json + metrics.jsonl) per trial.

    make_sweep(root, state="running" | "done", pid=None) -> Path
    advance(sweep_dir, trial_id, steps, pid) -> None      more training steps (and evals) for a running trial
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

from engine.config import config_from_dict
from engine.rundir import MetricsWriter, process_start, read_metrics, read_status, write_status
from engine.sweep.plan import Trial, rungs
from engine.sweep.report import RESULT_KEYS, choose_winner, table_rows, trial_metrics
from engine.sweep.sweepdir import TRIAL_PENDING, write_sweep
from monitor_fakerun import hold_run_lock

LRS = (5e-5, 2e-4, 1e-3)
RS = (8, 16, 32)
STEPS = 60
EVAL_EVERY = 10

# How each trial ends in a finished sweep: (state, stopped_by, last step).
OUTCOMES = {
    (5e-5, 8): ("stopped", "halving", 20), (5e-5, 16): ("stopped", "halving", 20), (5e-5, 32): ("done", None, 60),
    (2e-4, 8): ("done", None, 60), (2e-4, 16): ("done", None, 60), (2e-4, 32): ("done", None, 60),
    (1e-3, 8): ("stopped", "halving", 40), (1e-3, 16): ("done", None, 60), (1e-3, 32): ("stopped", "nan_loss", 14),
}
REASONS = {"halving": "halving: in the worse half at its rung", "nan_loss": "nan_loss: The training loss is NaN"}


def loss_at(lr: float, r: int, step: int) -> float:
    """A plausible curve: faster with a larger lr, a lower floor with a larger r, the wildest one diverging."""
    if (lr, r) == (1e-3, 32) and step >= 14:
        return float("nan")
    speed = {5e-5: 0.015, 2e-4: 0.05, 1e-3: 0.12}[lr]
    floor = 1.05 + 8.0 / r * 0.04 + (0.12 if lr == 1e-3 else 0.0) + (0.25 if lr == 5e-5 else 0.0)
    rnd = random.Random(hash((lr, r, step)) & 0xFFFF)
    return floor + 1.3 * math.exp(-speed * step) + rnd.uniform(-0.04, 0.04)


def eval_at(lr: float, r: int, step: int) -> float:
    x = loss_at(lr, r, step)
    return x if not math.isfinite(x) else x + 0.06 + (0.02 * step / STEPS if lr == 1e-3 else 0.0)


def _write_steps(run_dir: Path, lr: float, r: int, first: int, last: int) -> None:
    w = MetricsWriter(run_dir)
    for step in range(first, last + 1):
        w.write("train", step, loss=loss_at(lr, r, step), learning_rate=lr, grad_norm=0.8,
                tokens_per_s=2400.0 - 12 * r + (step % 5), gpu_peak_alloc_gib=[5.2 + r / 32])
        if step % EVAL_EVERY == 0:
            w.write("eval", step, eval_loss=eval_at(lr, r, step))
        if not math.isfinite(loss_at(lr, r, step)):
            w.write("finding", step, code="nan_loss", severity="error", message="The training loss is NaN")
            break
    w.close()


def _trial_record(sweep_dir: Path, lr: float, r: int) -> dict:
    t = Trial(lr, r)
    return {"id": t.id, "learning_rate": lr, "r": r, "alpha": t.alpha, "run_dir": str(sweep_dir / t.id),
            "gpu": "0", "state": TRIAL_PENDING, "step": 0, "stopped_by": None, "stop_reason": None}


def make_sweep(root: str | Path, state: str = "done", pid: int | None = None, name: str = "sweep-qwen-alpaca") -> Path:
    """A 3 x 3 sweep. `done`: every trial finished (halving, nan_loss, done), winner and table written.
    `running`: the first row done or halved, lr 2e-4 r 8 training at step 30 (`pid` alive stands in for its
    trainer and the driver), the rest pending."""
    sweep_dir = Path(root) / name
    sweep_dir.mkdir(parents=True)
    pid = pid or os.getpid()
    now = time.time()
    base = config_from_dict({"model": "Qwen/Qwen2.5-0.5B-Instruct", "dataset": {"path": "data/alpaca.jsonl"},
                             "training": {"max_steps": 600, "learning_rate": 2e-4}})
    trials = [_trial_record(sweep_dir, lr, r) for lr in LRS for r in RS]
    for t in trials:
        key = (t["learning_rate"], t["r"])
        end_state, stopped_by, last = OUTCOMES[key]
        if state == "running":
            if key == (2e-4, 8):
                end_state, stopped_by, last = "training", None, 30
            elif t["learning_rate"] != 5e-5:
                continue
        run = sweep_dir / t["id"]
        run.mkdir()
        _write_steps(run, *key, 1, last)
        live = end_state == "training"
        write_status(run, state=end_state, pid=pid if live else None, pid_start=process_start(pid) if live else None,
                     step=last, max_steps=STEPS, run_name=t["id"])
        if live and pid == os.getpid():   # this process stands in for the trial's trainer: it holds the run's lock
            hold_run_lock(run)
        t.update(state=end_state, step=last, stopped_by=stopped_by, stop_reason=REASONS.get(stopped_by))
        if not live:
            t.update({k: v for k, v in trial_metrics(read_metrics(run)).items() if k in RESULT_KEYS},
                     seconds=40.0 * last / STEPS)
    sweep = {"version": 1, "name": name, "sweep_dir": str(sweep_dir), "created": now - 900, "state": state,
             "driver_pid": pid if state == "running" else None, "started": now - 880,
             "ended": now - 20 if state == "done" else None, "base_config_path": str(Path(root) / "base.yaml"),
             "base_config": base.to_dict(), "grid": {"learning_rate": list(LRS), "r": list(RS)},
             "requested_steps": STEPS, "steps": STEPS, "rungs": rungs(STEPS), "eval_steps": EVAL_EVERY,
             "halving": True, "stop_on": ["nan_loss", "loss_explosion"], "lanes": 1, "devices": ["0"],
             "plan": {"lanes": 1, "trial_s": 40.0}, "apply_path": None, "trials": trials,
             "winner": None, "table": None}
    if state == "done":
        sweep["winner"] = choose_winner(trials)
        sweep["table"] = table_rows(sweep)
    write_sweep(sweep_dir, sweep)
    return sweep_dir


def advance(sweep_dir: str | Path, trial_id: str, steps: int, pid: int | None = None) -> None:
    """The trainer of a running trial logs `steps` more steps."""
    run = Path(sweep_dir) / trial_id
    status = read_status(run) or {}
    first = int(status.get("step") or 0) + 1
    lr, r = next(t for t in _grid() if Trial(*t).id == trial_id)
    _write_steps(run, lr, r, first, first + steps - 1)
    write_status(run, step=first + steps - 1, pid=pid or os.getpid())


def _grid():
    return [(lr, r) for lr in LRS for r in RS]
