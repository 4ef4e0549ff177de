"""`lorapilot runs`: the runs and sweeps under the runs root as an 80-column table, and `--watch`'s state lines.

The table fits a tmux pane (80 columns): a long name loses its middle, never the timestamp at its end, and the
numbers (state, step, losses, age) are never cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

WIDTH = 80
NAME_W = 32
# name state step loss eval age: 32+1+10+1+11+1+7+1+7+1+5 = 77 columns
HEADER = f"{'run':<{NAME_W}} {'state':<10} {'step':>11} {'loss':>7} {'eval':>7} {'age':>5}"
STALLED = "stalled?"
# A run directory copied (cp -r) from a run that trains: nothing trains the copy (rundir.copy_of).
COPY = "copy"

# Every state word a run, a sweep or a trial can be shown with, and what it means in plain words: the run's own
# (status.json, rundir.STATES), those worked out for it (lost, unknown, stalled?, copy), a sweep's and a trial's.
# The app styles each one (tui/widgets/progress_panel.py; a test keeps the two in step).
STATE_MEANINGS = {
    "starting": "its trainer process is starting",
    "loading": "reading the data and loading the model",
    "training": "training",
    "evaluating": "measuring the eval loss, or writing samples",
    "saving": "saving the adapter",
    "done": "finished: the adapter is saved",
    "failed": "ended with an error (the monitor and train.log say which)",
    "stopped": "stopped before its last step; lorapilot train --resume RUN_DIR continues it",
    "lost": "its process is gone without saying why (killed, out of memory, the machine restarted)",
    "unknown": "its status.json says no state",
    STALLED: "training, but no step finished lately; see lorapilot diagnose RUN_DIR",
    COPY: "copied from a run that is still training; nothing trains the copy",
    "planned": "a sweep not started yet, or waiting to be resumed",
    "running": "a sweep whose trials are training",
    "pending": "a trial of a sweep, not started yet",
    "skipped": "a trial the sweep did not run (its budget was spent, or it was stopped)",
}
# The states whose meaning a list prints under itself when one of its rows has it: the words a reader may not know.
NOTED_STATES = (STALLED, COPY)


def _shown_states() -> tuple[str, ...]:
    from engine.rundir import STATES
    from engine.sweep.sweepdir import SWEEP_STATES, TRIAL_PENDING, TRIAL_SKIPPED

    return tuple(dict.fromkeys(STATES + ("lost", "unknown", STALLED, COPY) + SWEEP_STATES
                               + (TRIAL_PENDING, TRIAL_SKIPPED)))


SHOWN_STATES = _shown_states()


def stall(state: str, status: dict | None, now: float, run_dir: str):
    """The `no_progress` finding of a run in state `state` (engine.diagnose.stall), or None: a live training run that
    stopped reporting, judged from status.json alone. The one rule by which `lorapilot runs`, the app's runs list
    and the monitor's progress panel show a run as `stalled?`."""
    from engine.diagnose.stall import REPORTING_STATES, no_progress

    return no_progress(status, None, now, run_dir) if state in REPORTING_STATES else None


def stalled_run(run) -> bool:
    return stall(run.state, run.extra, time.time(), str(run.path)) is not None


def state_notes(rows: list[Row]) -> list[str]:
    """What the rarer state words in `rows` mean, one line each ("stalled?: training, but ...")."""
    return [f"{state}: {STATE_MEANINGS[state]}" for state in NOTED_STATES if any(r.state == state for r in rows)]


@dataclass(frozen=True)
class Row:
    """One line of the table: a run, a sweep trial (name `sweep/trial`), or a whole sweep."""

    key: str            # the directory, as the watch compares rows
    name: str
    state: str
    progress: str       # "12/40" steps, or "3/6 trials"
    loss: float | None
    eval_loss: float | None
    age_s: float | None
    is_sweep: bool = False


def short_name(name: str, width: int = NAME_W) -> str:
    """Cut the middle, keep both ends: runs are told apart by the timestamp their name ends with."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[-(width - 1 - head):]




TRIAL_INDENT = "  · "


def collect(root: str | Path | None, stalled: Callable[[object], bool] = lambda r: False,
            problems: list[str] | None = None) -> list[Row]:
    """Runs and sweeps, newest first; each sweep followed by its trials, indented under it.

    Runs and sweeps whose record is corrupt are left out; why is appended to `problems` when given."""
    from engine.rundir import default_runs_root, list_runs, safe_text

    base = Path(root) if root else default_runs_root()
    top: list[tuple[float, Row]] = []
    trials: dict[str, list[Row]] = {}
    for r in list_runs(base, problems):
        in_sweep = r.path.parent != base
        # Escaped before the columns are laid out: a name's escapes take more columns than its control characters.
        row = Row(str(r.path), (TRIAL_INDENT if in_sweep else "") + safe_text(r.name, one_line=True),
                  STALLED if stalled(r) else COPY if r.copy_of else safe_text(r.state, one_line=True),
                  f"{r.step}/{r.max_steps}", r.loss, r.eval_loss, r.age_s)
        if in_sweep:
            trials.setdefault(str(r.path.parent), []).append(row)
        else:
            top.append((r.updated or 0, row))
    top += list(_sweeps(base, problems))
    top.sort(key=lambda pair: pair[0], reverse=True)
    out: list[Row] = []
    for _, row in top:
        out.append(row)
        out += sorted(trials.pop(row.key, []), key=lambda t: t.name)
    return out


def _sweeps(base: Path, problems: list[str] | None = None) -> Iterator[tuple[float, Row]]:
    """One row per sweep directory: its state, trials ended of all, the winner's eval loss."""
    from engine.errors import UserError
    from engine.rundir import safe_text
    from engine.sweep.sweepdir import SWEEP_FINAL_STATES, effective_sweep_state, is_sweep_dir, read_sweep

    if not base.is_dir():
        return
    for child in base.iterdir():
        try:
            if not (child.is_dir() and is_sweep_dir(child)):
                continue
            sweep = read_sweep(child)
        except UserError as e:
            if problems is not None:
                problems.append(f"{e.message}; skipped")
            continue
        except OSError:   # list_runs said it (a folder this user may not read)
            continue
        trials = [t for t in sweep.get("trials") or [] if isinstance(t, dict)]
        ended = sum(t.get("state") in SWEEP_FINAL_STATES + ("skipped",) for t in trials)
        winner = w if isinstance(w := sweep.get("winner"), dict) else {}
        updated = float(sweep.get("updated") or child.stat().st_mtime)
        yield updated, Row(str(child), safe_text(child.name, one_line=True),
                           safe_text(effective_sweep_state(sweep, child), one_line=True),
                           f"{ended}/{len(trials)} trials", None, winner.get("eval_loss"),
                           max(0.0, time.time() - updated), is_sweep=True)


LOSS_W = 7


def loss_cell(value: float | None) -> str:
    """A loss in its 7-column cell: loss_text, as every view shows it, where it fits; one below 0.01 or from 10000
    (0.001230 is 8 characters, 0.0001230 and 1.000e-06 are 9) in fewer digits, so that a row keeps to 80 columns:
    0.00123, 1.2e-04, -1e-06."""
    from engine.rundir import loss_text

    text = loss_text(value)
    if len(text) <= LOSS_W:
        return text
    # loss_text is that long only for a finite number; the last form is at most 7 for any float
    return next(t for t in (f"{value:#.3g}", f"{value:.1e}", f"{value:.0e}") if len(t) <= LOSS_W)


def format_row(row: Row) -> str:
    from engine.rundir import format_age

    return (f"{short_name(row.name):<{NAME_W}} {row.state[:10]:<10} {row.progress[-11:]:>11} "
            f"{loss_cell(row.loss):>{LOSS_W}} {loss_cell(row.eval_loss):>{LOSS_W}} {format_age(row.age_s):>5}")


def format_table(rows: list[Row]) -> list[str]:
    lines = [HEADER, *map(format_row, rows)]
    for note in state_notes(rows):
        lines.append(note)
        if note.startswith(f"{COPY}:"):
            lines.append(f"{'':{len(COPY)}}  (lorapilot train --resume RUN_DIR continues it on its own)")
    return lines


def watch_lines(root: str | Path | None, *, poll_s: float = 2.0, stalled: Callable[[object], bool] = lambda r: False,
                sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> Iterator[str]:
    """One line per state change of any run or sweep under the root (a new one counts), until interrupted.

    The first look prints nothing for what is already there: only changes from then on.
    """
    from engine.rundir import loss_text

    seen = {r.key: r.state for r in collect(root, stalled)}
    n = 0
    while rounds is None or n < rounds:
        sleep(poll_s)
        n += 1
        for row in reversed(collect(root, stalled)):  # oldest first: the order things happened in
            before = seen.get(row.key)
            if before != row.state:
                seen[row.key] = row.state
                was = f"{before} -> " if before else "new, "
                yield (f"{time.strftime('%H:%M:%S')}  {short_name(row.name, 40)}  {was}{row.state}"
                       f"  {row.progress}" + (f"  loss {loss_text(row.loss)}" if row.loss is not None else ""))
