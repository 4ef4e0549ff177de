"""The time a run has left: its training steps, and the evaluations and checkpoint saves still to come.

Records in (metrics.jsonl, fed one at a time as the monitor tails it), seconds out; pure, no I/O but
`run_schedule`, which reads what the trainer will still do from status.json (config.yaml for older runs).

The pace is measured from the records themselves. A train record at step S is written before the evaluation and the
checkpoint at S (transformers' order: log, evaluate, save), so:

- an evaluation lasts from the train record at its step to its last eval or sample record (samples are generated
  at each evaluation and count as part of it, but the batch that compiles fast decode, once a run, is a pause and no
  evaluation's cost);
- a save lasts from the record before its `checkpoint_saved` event, at the same step, to the event;
- a training step is the time between two train records with those pauses taken out, over the last WINDOW of them.

Before the first evaluation or save is seen, their cost is the estimate's rule, counted by the estimate's own
function (engine.estimate.timing.pauses: at step 0 with the estimate's step time the ETA is the estimate's time
less its start-up and compile), and the ETA says it leans on an estimate. Before any step time is measured there is no
ETA: a countdown from the estimate's time would fall while the model loads or the layers compile, as if training. The
monitor says what the trainer is doing and the estimate's time of the whole run, which the trainer writes into
status.json, as the estimate's (starting_eta).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.estimate.timing import Schedule, pauses
from engine.rundir import FAST_DECODE_COMPILE, RESUMED, finite_number

# Train-record intervals the step time is averaged over (the monitor's window before this module).
WINDOW = 40


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def run_schedule(run_dir: str | Path, status: dict | None, config: dict | None = None) -> Schedule:
    """The run's schedule from status.json's `schedule` and `plan` (written by the trainer); a run written before
    `schedule` existed: from its config.yaml, read as `config` (a dict) when given, else from the run directory."""
    st = status or {}
    plan = _dict(st.get("plan"))
    sched = st.get("schedule")
    max_steps = _int(st.get("max_steps")) or _int(plan.get("max_steps")) or 0
    per_step = _int(plan.get("examples_per_step"))
    if isinstance(sched, dict):
        return Schedule(max_steps, _int(sched.get("eval_steps")), _int(sched.get("save_steps")),
                        _int(sched.get("eval_examples")), per_step, sched.get("samples") is True,
                        _seconds(sched.get("sample_batch_s")))
    if config is None:
        config = read_run_config(run_dir)
    t, d = _dict(config.get("training")), _dict(config.get("dataset"))
    split = d.get("validation_split")
    has_eval = bool(d.get("validation_path")) or (isinstance(split, (int, float)) and split > 0)
    return Schedule(max_steps, _int(t.get("eval_steps")) if has_eval else None, _int(t.get("save_steps")),
                    None, per_step)


def read_run_config(run_dir: str | Path) -> dict:
    """The run's config.yaml as a plain mapping; {} when it is missing or unreadable (the ETA then counts steps)."""
    from engine.config_file import read_yaml_config
    from engine.errors import UserError
    from engine.rundir import CONFIG_FILE

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        raw = read_yaml_config(path)
    except (UserError, OSError):
        return {}
    return raw if isinstance(raw, dict) else {}


@dataclass
class Pace:
    """Step time, evaluation time and save time, measured from records as they come (`add`)."""
    _intervals: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=WINDOW))  # (steps, s)
    evals: list[float] = field(default_factory=list)
    saves: list[float] = field(default_factory=list)
    _train: tuple[int, float] | None = None        # the last train record's (step, time)
    _last: tuple[int, float] | None = None         # the last record's (step, time), any kind
    # An evaluation under way: (step, start or None, end of what it costs, end of its pause). The two ends part
    # where the samples compile fast decode (once a run, about a minute): a pause, but no cost of the others.
    _eval: tuple[int, float | None, float, float] | None = None
    _pause: float = 0.0                            # pauses measured since the last train record
    _unmeasured: bool = False                      # ... and whether one of them could not be measured
    _compile_at: int | None = None                 # the step whose samples compile fast decode

    def add(self, rec: dict) -> None:
        kind, step, t = rec.get("kind"), rec.get("step"), finite_number(rec.get("time"))
        if not isinstance(step, int) or t is None:
            return
        if kind == "train":
            self._close_eval()
            prev = self._train
            if prev is not None and step > prev[0] and t > prev[1] and not self._unmeasured:
                pure = (t - prev[1]) - self._pause
                if pure > 0:
                    self._intervals.append((step - prev[0], pure))
            self._train = (step, t) if prev is None or step != prev[0] else prev
            self._pause, self._unmeasured = 0.0, False
        elif kind == "eval":
            self._close_eval()  # the one before, at an earlier step with no train record since
            # When it began: the trainer says so (`began`); older runs only when a train record has this step.
            start = _began(rec, t)
            if start is None and self._train and self._train[0] == step:
                start = self._train[1]
            self._eval = (step, start, t, t)
        elif kind == "sample" and self._eval and self._eval[0] == step:
            self._eval = (step, self._eval[1], self._eval[2] if self._compile_at == step else t, t)
        elif kind == "event" and rec.get("code") == FAST_DECODE_COMPILE:
            self._compile_at = step
        elif kind == "event" and rec.get("code") == "checkpoint_saved":
            self._close_eval()
            start = _began(rec, t)
            if start is None and self._last is not None and self._last[0] == step and t >= self._last[1]:
                start = self._last[1]
            if start is not None:
                self.saves.append(t - start)
                self._pause += t - start
            else:
                self._unmeasured = True
        elif kind == "event" and rec.get("code") == RESUMED:
            # The gap before a resume is a restart, not training: no interval spans it.
            self._train, self._eval, self._pause, self._unmeasured = None, None, 0.0, False
        self._last = (step, t)

    def _close_eval(self) -> None:
        if self._eval is None:
            return
        _, start, end, paused_to = self._eval
        self._eval = None
        if start is None or end < start:
            self._unmeasured = True
            return
        self.evals.append(end - start)
        self._pause += paused_to - start

    def step_s(self) -> float | None:
        steps = sum(n for n, _ in self._intervals)
        return sum(s for _, s in self._intervals) / steps if steps else None

    def eval_s(self) -> float | None:
        """An evaluation's seconds as measured (median), its sample batch included; None before the first ends."""
        done = self.evals + ([self._eval[2] - self._eval[1]] if self._eval and self._eval[1] is not None else [])
        return statistics.median(done) if done else None

    def save_s(self) -> float | None:
        return statistics.median(self.saves) if self.saves else None


def _began(rec: dict, t: float) -> float | None:
    """When the pause a record ends began (its `began`, the trainer's clock), when it says so sensibly."""
    began = finite_number(rec.get("began"))
    return began if began is not None and began <= t else None


@dataclass(frozen=True)
class Eta:
    seconds: float
    steps_s: float            # of seconds: training steps
    evals_s: float            # ... evaluations (and their samples) still to come
    saves_s: float            # ... checkpoint saves and the adapter
    estimated: bool = False   # an evaluation's or a save's cost is the estimate's, not yet measured on this run


def eta(pace: Pace, schedule: Schedule, step: int, *, evaluated_at: int | None = None,
        saved_at: int | None = None) -> Eta | None:
    """Seconds until the run is done, from `step` (the last step finished): the steps left at the measured step time,
    each evaluation and save still to come at its measured (median) cost, or the estimate's before the first.
    evaluated_at / saved_at: the step of the last evaluation / checkpoint seen (one due at `step` and not yet seen
    is still to come). None without a step time."""
    step_s = pace.step_s()
    if step_s is None or not schedule.max_steps:
        return None
    return eta_from(step_s, schedule, step, eval_each=pace.eval_s(), save_each=pace.save_s(),
                    evaluated_at=evaluated_at, saved_at=saved_at)


def eta_from(step_s: float, schedule: Schedule, step: int, *, eval_each: float | None = None,
             save_each: float | None = None, evaluated_at: int | None = None, saved_at: int | None = None) -> Eta:
    """The ETA from a step time and what is measured of the evaluations and saves (None: not yet)."""
    step = min(step, schedule.max_steps)
    p = pauses(schedule, step_s, step, eval_each=eval_each, save_each=save_each, evaluated_at=evaluated_at,
               saved_at=saved_at)
    steps_s = (schedule.max_steps - step) * step_s
    return Eta(steps_s + p.seconds, steps_s, p.evals_s, p.saves_s, p.estimated)


# What the trainer is doing before its first step time is measured: status.json's phase while it starts
# (engine.train.run writes it), its first steps once it trains (with the plan's compile of the layers, in the first).
STARTING_PHASES = {"data": "reading the data", "model": "loading the model"}
FIRST_STEPS = "first steps"
COMPILING = "first steps (compiling the layers)"


@dataclass(frozen=True)
class Starting:
    """A live run with no step time measured yet: no ETA, but what the trainer is doing, and the estimate's time of
    the whole run."""
    estimate_s: float | None  # the estimate's time of the run's plan, start-up and compile included; None: not planned
    doing: str                # "loading the model", "first steps", ...; "" once a train record is in


def starting_eta(status: dict | None, trained: bool = False) -> Starting:
    """Before a step time is measured no time left is known (a model that loads or layers that compile for minutes
    shorten nothing): what the trainer is doing, by status.json's state and phase, and the estimate's time of the
    run's plan (the trainer writes it into status.json once planned), shown as the estimate's, never counted down.
    trained: a train record has been read (the step time waits for the next)."""
    st = status or {}
    state = st.get("state")
    if state in ("starting", "loading"):
        doing = STARTING_PHASES.get(str(st.get("phase")), "starting")
    elif state == "training" and not trained:
        doing = COMPILING if _dict(st.get("plan")).get("compile_layers") else FIRST_STEPS
    else:
        doing = ""
    return Starting(_seconds(_dict(st.get("estimate")).get("time_s")), doing)


def _seconds(v: Any) -> float | None:
    seconds = finite_number(v)
    return seconds if seconds is not None and seconds >= 0 else None
