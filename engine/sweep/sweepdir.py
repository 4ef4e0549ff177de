"""The sweep directory: sweep.json (the driver's record, atomically replaced) beside one run directory per trial.

```
runs/sweep-<name>-<time>/
  sweep.json        the plan, every trial's state and results, the table and the winner (schema: README)
  base_config.yaml  the config the sweep started from
  sweep.log         the driver's own output
  stop.request      present while a stop of the whole sweep is asked for
  <trial id>/       an ordinary run directory per trial (lr2e-4_r8/ ...)
```
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine.errors import DataError, UserError, quote, shell_word, type_word
from engine.rundir import RunLock, create_request_file, finite_number, lock_held, pid_alive, replace_file

SWEEP_FILE = "sweep.json"
BASE_CONFIG_FILE = "base_config.yaml"
SWEEP_LOG = "sweep.log"
SWEEP_STOP_FILE = "stop.request"
SWEEP_LOCK_FILE = "sweep.lock"
SWEEP_FINAL_STATES = ("done", "stopped", "failed")
# A sweep's states as sweep.json holds them (effective_sweep_state adds lost and unknown).
SWEEP_STATES = ("planned", "running") + SWEEP_FINAL_STATES
# A trial's states: a run's states, plus these two before and instead of a run.
TRIAL_PENDING, TRIAL_SKIPPED = "pending", "skipped"


class SweepLock(RunLock):
    """The sweep folder's lock: taken before the folder is checked empty and held by the driver for its life, so a
    second `lorapilot sweep` into the same folder is refused instead of writing sweep.json and trials over the
    first's. A flock like the run lock (released when the holder dies, kill -9 included)."""

    FILE = SWEEP_LOCK_FILE
    HELD = "another sweep is writing into this folder"
    HELD_FIX = "wait for it, stop it (lorapilot stop {dir}), or choose another --sweep-dir"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def predicted_trial_s(plan: dict | None) -> float | None:
    """A trial's time as the sweep predicts it: the finished trials' measured mean (the driver's measured_trial_s),
    the plan's estimate until one has finished; None when neither is known. The budget check and the time left
    both read it."""
    plan = plan or {}
    for key in ("measured_trial_s", "trial_s"):
        v = finite_number(plan.get(key))
        if v is not None and v > 0:
            return v
    return None


def elapsed_s(sweep: dict, now: float) -> float:
    """Seconds the sweep has run: its earlier runs (`spent_s`, before a resume) and the current one, from the driver's
    latest start (`run_started`) to `now` (or to its end, once it ended). The budget and the monitor read it."""
    # A resumed sweep counts from its latest driver's start only: before that driver's first word (run_started not
    # yet set) its first start would count again the time `spent_s` holds, and the time it lay dead.
    start = sweep.get("run_started") or (None if sweep.get("resumes") else sweep.get("started"))
    if not start:
        return float(sweep.get("spent_s") or 0.0)
    end = sweep.get("ended") or now
    return float(sweep.get("spent_s") or 0.0) + max(0.0, end - start)


def read_sweep(sweep_dir: str | Path, *, complete: bool = False) -> dict:
    """sweep.json, checked for what every reader indexes (a listing: the trials' ids and states), or with
    `complete` for all a summary and the report index too; a DataError naming the file and key otherwise."""
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        sweep = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except (OSError, ValueError, RecursionError) as e:   # ValueError: not UTF-8
        raise DataError(f"{path}: unreadable ({type(e).__name__})") from None
    problem = _sweep_problem(sweep, complete)
    if problem:
        raise DataError(f"{path}: {problem}")
    # Where it is now: a folder moved since it was made (--apply reads the copy of the user's config in it).
    sweep["sweep_dir"] = str(Path(sweep_dir).resolve())
    return sweep


def resume_command(run_dir: str | Path) -> str:
    """The command that goes on with a run cut short where it is now: `lorapilot train --resume RUN_DIR`, or, for a
    trial of a sweep (a folder its sweep's sweep.json names), the sweep's resume: a trial resumed on its own trains
    outside its sweep, which then neither ranks it nor runs the trials it did not start."""
    rd = Path(run_dir)
    try:
        sweep = read_sweep(rd.parent)
    except UserError:   # no sweep there, or one unreadable: the run is its own
        sweep = None
    if sweep is not None and any(t["id"] == rd.name for t in sweep["trials"]):
        return f"lorapilot sweep --resume {shell_word(rd.parent)}"
    return f"lorapilot train --resume {shell_word(rd)}"


_NUMBER = (int, float)
# Keys the readers index, and the type of each; trials' likewise. The listing needs the first ones only,
# the summary and the report (complete) all of them.
_SWEEP_KEYS: dict[str, Any] = {"trials": list}
_TRIAL_KEYS: dict[str, Any] = {"id": str, "state": str}
_COMPLETE_SWEEP_KEYS: dict[str, Any] = {"steps": int}
_COMPLETE_TRIAL_KEYS: dict[str, Any] = {"learning_rate": _NUMBER, "r": int}
_OPTIONAL_KEYS: dict[str, Any] = {"driver_pid": int, "updated": _NUMBER, "started": _NUMBER, "ended": _NUMBER,
                                  "winner": dict, "state": str}


def _wrong(value, kind) -> bool:
    return not isinstance(value, kind) or isinstance(value, bool)


def _sweep_problem(sweep, complete: bool) -> str | None:
    if not isinstance(sweep, dict):
        return f"expected a JSON object, got {type_word(sweep)}"
    for key in ("rungs", "grid") if complete else ():
        if key not in sweep:
            return f"{key}: missing"
    for key, kind in {**_SWEEP_KEYS, **(_COMPLETE_SWEEP_KEYS if complete else {})}.items():
        if _wrong(sweep.get(key), kind):
            return f"{key}: {quote(sweep.get(key))} is not valid"
    for key, kind in _OPTIONAL_KEYS.items():
        if sweep.get(key) is not None and _wrong(sweep[key], kind):
            return f"{key}: {quote(sweep[key])} is not valid"
    pid = sweep.get("driver_pid")
    if pid is not None and not 0 <= pid < 2**31:   # os.kill overflows past 2**31; -1 means every process
        return f"driver_pid: {quote(pid)} is not valid"
    for i, t in enumerate(sweep["trials"]):
        if not isinstance(t, dict):
            return f"trials[{i}]: expected an object, got {type_word(t)}"
        for key, kind in {**_TRIAL_KEYS, **(_COMPLETE_TRIAL_KEYS if complete else {})}.items():
            if _wrong(t.get(key), kind):
                return f"trials[{i}].{key}: {quote(t.get(key))} is not valid"
    return None


def write_sweep(sweep_dir: str | Path, sweep: dict) -> None:
    """Replaces sweep.json with `sweep` through a temporary file of this writer's own (rundir.replace_file): a
    shared sweep.json.tmp was written through when a link was planted there (a sweep folder may come from anyone:
    `sweep --resume` overwrote the file it pointed to), and two writers replaced it under each other. The record is
    written whole, not merged: only the holder of the sweep's lock writes it (the command that starts or resumes
    the sweep, then the driver it hands the lock to), so no other process has fields in it to lose."""
    sweep["updated"] = time.time()
    replace_file(Path(sweep_dir) / SWEEP_FILE, json.dumps(sweep, indent=1).encode("utf-8"))


def effective_sweep_state(sweep: dict, sweep_dir: str | Path | None = None) -> str:
    """The state to show: a sweep whose driver is gone before it finished is `lost`. With `sweep_dir`, a driver pid
    alive but not holding the sweep's lock is another process's now (a pod restarted after a preemption reuses
    pids): gone too."""
    state = sweep.get("state", "unknown")
    if state in SWEEP_FINAL_STATES:
        return state
    if not pid_alive(sweep.get("driver_pid")):
        return "lost"
    if sweep_dir is not None and (Path(sweep_dir) / SWEEP_LOCK_FILE).exists() \
            and not lock_held(sweep_dir, SWEEP_LOCK_FILE):
        return "lost"
    return state


def request_sweep_stop(sweep_dir: str | Path) -> bool:
    """Asks the driver to stop every running trial gracefully and start no more. False if not running."""
    sweep = read_sweep(sweep_dir)
    if effective_sweep_state(sweep, sweep_dir) in SWEEP_FINAL_STATES + ("lost",):
        return False
    create_request_file(Path(sweep_dir) / SWEEP_STOP_FILE)
    return True
