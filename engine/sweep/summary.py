"""`summarize_sweep(sweep_dir)`: everything a monitor shows about a sweep, from sweep.json and the trial run dirs.

Reads only; safe to call on a timer while the driver runs, after it finished, or after it died.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.rundir import FINAL_STATES, effective_state, finite, read_metrics, read_status
from engine.sweep.plan import time_lanes
from engine.sweep.report import diverged, rank_key, table_rows, trial_metrics, winner_notes
from engine.sweep.sweepdir import (SWEEP_STOP_FILE, TRIAL_PENDING, TRIAL_SKIPPED, effective_sweep_state,
                                   elapsed_s, predicted_trial_s, read_sweep)

# Points kept of each trial's training-loss history (a sparkline's width).
SPARK_POINTS = 60


def _thin(values: list, n: int = SPARK_POINTS) -> list:
    if len(values) <= n:
        return list(values)
    stride = len(values) / n
    return [values[int(i * stride)] for i in range(n - 1)] + [values[-1]]


def remaining_seconds(sweep: dict, now: float, *, stopping: bool = False) -> float | None:
    """Time left of a running sweep: each running trial's rest, then the pending ones on the free lanes, at the
    measured trial time (the plan's estimate until a trial has finished). An upper bound, as the plan's: trials
    stopped early finish sooner. `stopping`: a stop was asked for, no pending trial will start. None when no trial
    time is known."""
    per = predicted_trial_s(sweep.get("plan"))
    if per is None:
        return None
    lanes = max(1, int(sweep.get("lanes") or 1))
    if not (sweep.get("plan") or {}).get("measured_trial_s"):
        # the estimate times a trial alone: trials sharing a GPU (or the CPU) take as long as one after another
        lanes = time_lanes(lanes, sweep.get("devices") or [])
    busy = sorted((max(0.0, per - (now - t["started"])) for t in sweep["trials"]
                   if t["state"] not in (TRIAL_PENDING, TRIAL_SKIPPED) + FINAL_STATES and finite(t.get("started"))),
                  reverse=True)
    free_at = [0.0] * lanes
    for rest in busy:   # the running trials' rests on the lanes their time runs on (more trials than lanes share them)
        free_at.sort()
        free_at[0] += rest
    for _ in range(0 if stopping else sum(t["state"] == TRIAL_PENDING for t in sweep["trials"])):
        free_at.sort()
        free_at[0] += per
    return max(free_at)


def summarize_sweep(sweep_dir: str | Path) -> dict:
    """The sweep as a monitor needs it.

    Returns {"sweep_dir", "name", "state" (planned|running|done|stopped|failed|lost), "driver_pid", "steps",
    "rungs", "lanes", "grid", "plan", "elapsed_s", "remaining_s" (running only: remaining_seconds), "trials": [...],
    "best", "winner", "table", "error", "winner_notes" (engine.sweep.report.winner_notes: the winner at the grid's
    edge, on more GPUs than its trial; [] without a winner)}.
    Each trial: {"id", "learning_rate", "r", "alpha", "run_dir", "gpu", "state" (pending|skipped or the run's
    state, `lost` for a dead trainer), "step", "max_steps", "loss", "eval_loss", "losses" (training losses,
    thinned to SPARK_POINTS for a sparkline), "evals" ([step, eval_loss] pairs), "stopped_by"
    (nan_loss|loss_explosion|halving|budget|user|failed|None), "stop_reason", "error"}.
    "best": the trial with the lowest latest eval loss so far ({"id", "learning_rate", "r", "eval_loss", "step"})
    or None. "table" and "winner" are those of sweep.json once the driver has finished, else None.
    """
    path = Path(sweep_dir)
    sweep = read_sweep(path, complete=True)
    trials = []
    gone: set[str] = set()   # the trials that diverged: never the best so far
    for t in sweep["trials"]:
        row = {k: t.get(k) for k in ("id", "learning_rate", "r", "alpha", "run_dir", "gpu", "stopped_by",
                                     "stop_reason", "error")}
        run_dir = path / t["id"]
        if t["state"] in (TRIAL_PENDING, TRIAL_SKIPPED) or not run_dir.is_dir():
            row.update(state=t["state"], step=0, max_steps=sweep["steps"], loss=None, eval_loss=None, losses=[],
                       evals=[])
        else:
            status = read_status(run_dir) or {}
            m = trial_metrics(read_metrics(run_dir))
            row.update(state=effective_state(status, run_dir) if status else t["state"],
                       step=max(int(status.get("step") or 0), m["step"]),
                       max_steps=int(status.get("max_steps") or sweep["steps"]),
                       loss=m["losses"][-1] if m["losses"] else None, eval_loss=m["eval_loss"],
                       losses=_thin(m["losses"]), evals=m["evals"])
            if diverged({**t, "error_findings": m["error_findings"], "verdict": m["verdict"]}):
                gone.add(t["id"])   # its records say so before the driver has seen it end
        trials.append(row)
    scored = [t for t in trials if finite(t["eval_loss"]) and t["id"] not in gone]
    best = min(scored, key=rank_key) if scored else None
    state = effective_sweep_state(sweep, path)
    finished = state in ("done", "stopped", "failed")
    out = {
        "sweep_dir": str(path.resolve()), "name": sweep.get("name"), "state": state,
        "driver_pid": sweep.get("driver_pid"), "steps": sweep["steps"], "rungs": sweep["rungs"],
        "lanes": sweep.get("lanes"), "grid": sweep["grid"], "plan": sweep.get("plan"),
        "elapsed_s": round(elapsed_s(sweep, time.time()), 1) if sweep.get("started") else None,
        "remaining_s": remaining_seconds(sweep, time.time(), stopping=(path / SWEEP_STOP_FILE).exists())
        if state == "running" else None,
        "trials": trials,
        "best": None if best is None else {"id": best["id"], "learning_rate": best["learning_rate"],
                                           "r": best["r"], "eval_loss": best["eval_loss"],
                                           "step": best["evals"][-1][0] if best["evals"] else None},
        "winner": sweep.get("winner") if finished else None,
        "table": (sweep.get("table") or table_rows(sweep)) if finished else None,
        "error": sweep.get("error"),
    }
    # What the report and --apply say of the winner, read from these trials (their folders' latest word).
    out["winner_notes"] = winner_notes({**sweep, **out}) if out["winner"] else []
    return out
