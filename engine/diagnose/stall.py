"""A live run that stopped reporting: the trainer's process is alive, but no step has finished for a long time.

The trainer cannot say this itself (it is the thing that is stuck), so the monitor and `lorapilot diagnose`
work it out from the run directory: status.json's `updated` (refreshed with every step, at most every 2 s)
and the last record's time. A hang looks like a healthy run at step N otherwise; on several GPUs one rank
waiting for another never fails on its own.
"""

from __future__ import annotations

from engine.diagnose.finding import Finding
from engine.errors import shell_word
from engine.rundir import finite_number

# The first steps compile attention kernels: 1-3 minutes on a fresh machine (benchmarks/results/
# ddp-first-step-2026-11-23.md), so only a quiet spell beyond this is news.
STALL_MIN_S = 300.0
STALL_STEPS = 20  # or this many of the run's typical steps, where that is longer


def _age(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# The effective states (engine.rundir.effective_state) in which a live trainer can stall.
REPORTING_STATES = ("training", "evaluating")


def stallable(status: dict) -> bool:
    """A state in which the trainer reports at least every REFRESH_S: training, or evaluating batch by batch (the
    samples' generation, one long call, reports nothing until it ends)."""
    state = status.get("state")
    return state == "training" or (state == "evaluating" and status.get("phase") == "eval")


def no_progress(status: dict | None, last_record_time: float | None, now: float,
                run_dir: str = "RUN_DIR") -> Finding | None:
    """The `no_progress` finding, or None while the run reports or is not training.

    The pace is the trainer's own recent seconds per step (status.json's step_s).
    """
    if not status or not stallable(status):
        return None
    step_s = finite_number(status.get("step_s"))
    seen = [t for t in (finite_number(status.get("updated")), finite_number(last_record_time)) if t is not None]
    if not seen:
        return None
    quiet = now - max(seen)
    limit = max(STALL_MIN_S, STALL_STEPS * step_s) if step_s else STALL_MIN_S
    if quiet < limit:
        return None
    step = int(status.get("step") or 0)
    ranks = int(status.get("world_size") or 1)
    several = (f" On {ranks} GPUs one rank may be waiting for another: training.num_gpus: 1 shows whether one GPU "
               "trains.") if ranks > 1 else ""
    if step == 0:
        message = (f"No step has finished in {_age(quiet)}. The first steps compile kernels (1-3 minutes on a "
                   "fresh machine); this is longer.")
    elif status.get("state") == "evaluating":
        message = f"No evaluation batch has finished in {_age(quiet)}; the trainer looks stuck evaluating step {step}."
    else:
        message = f"No step has finished in {_age(quiet)}; the trainer looks stuck at step {step}."
    evidence = f"last report {_age(quiet)} ago" + (f"; a step takes ~{step_s:.1f} s" if step_s else "")
    # Only a pid that is this run's trainer now: status.json's may have been reused by any process (pid 1 too).
    from engine.rundir import trainer_pid

    pid = trainer_pid(run_dir, status)
    end = f"kill {pid}" if pid else f"kill PID (PID: the process whose command line names {run_dir})"
    # A stop request is honoured at the end of a step, which a hung trainer never reaches.
    fix = (f"Read the end of train.log for where it stopped. A stop request waits for the next step: end the "
           f"trainer with {end}, then continue from the last checkpoint with lorapilot train "
           f"--resume {shell_word(run_dir)}.{several}")
    return Finding(code="no_progress", severity="warning", step=step, message=message, evidence=evidence,
                   fix=fix, time=now)
