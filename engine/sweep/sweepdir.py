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
import os
import time
from pathlib import Path

from engine.errors import UserError
from engine.rundir import pid_alive

SWEEP_FILE = "sweep.json"
BASE_CONFIG_FILE = "base_config.yaml"
SWEEP_LOG = "sweep.log"
SWEEP_STOP_FILE = "stop.request"
SWEEP_FINAL_STATES = ("done", "stopped", "failed")
# A trial's states: a run's states, plus these two before and instead of a run.
TRIAL_PENDING, TRIAL_SKIPPED = "pending", "skipped"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def read_sweep(sweep_dir: str | Path) -> dict:
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def write_sweep(sweep_dir: str | Path, sweep: dict) -> None:
    sweep["updated"] = time.time()
    path = Path(sweep_dir) / SWEEP_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sweep, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def effective_sweep_state(sweep: dict) -> str:
    """The state to show: a sweep whose driver is gone before it finished is `lost`."""
    state = sweep.get("state", "unknown")
    if state not in SWEEP_FINAL_STATES and not pid_alive(sweep.get("driver_pid")):
        return "lost"
    return state


def request_sweep_stop(sweep_dir: str | Path) -> bool:
    """Asks the driver to stop every running trial gracefully and start no more. False if not running."""
    sweep = read_sweep(sweep_dir)
    if effective_sweep_state(sweep) in SWEEP_FINAL_STATES + ("lost",):
        return False
    (Path(sweep_dir) / SWEEP_STOP_FILE).touch()
    return True
