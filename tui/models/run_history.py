"""What the monitor knows about a run, built from metric records and samples; no widget code.

Widgets draw from one RunHistory and redraw a part only when that part's
version moved, so a new log line does not redraw the loss chart. Series that
grow with the run (loss, learning rate) are plain lists: a 100 000-step run
is a few MB; lists a user scrolls (findings, events, samples, log lines) are
bounded deques.
"""

from __future__ import annotations

from collections import OrderedDict, deque
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from engine.diagnose.codes import STATE_CODES
from engine.diagnose.finding import SEVERITY_RANK, Finding
from engine.eta import Eta, Pace, Schedule, eta
from engine.run_clock import RunClock
from engine.rundir import FINAL_STATES, RESUMED, LaunchStart, finite_number, json_number

if TYPE_CHECKING:
    from engine.gpu import GpuSample
    from engine.system import MachineSample, ProcessSample

# One metrics.jsonl record (or status.json, or a checkpoint's entry): JSON as read, control characters escaped.
Record = dict[str, Any]

# Parts of the screen; a widget names the parts it draws from.
LOSS, LR, PROGRESS, FINDINGS, SAMPLES, LOG, GPU, SYSTEM = (
    "loss", "lr", "progress", "findings", "samples", "log", "gpu", "system")


class Series:
    """(step, value) pairs in step order, stored in growable numpy arrays.

    The charts hand these to numpy every redraw; turning a 50 000-item list
    into an array each time cost more than drawing it. `x` and `y` are
    views of the filled part.

    A resumed run starts again from its last checkpoint, so a step at or
    below the last one cuts the series back first: the chart shows the
    trajectory the adapter actually followed, not two overlapping ones.
    """

    def __init__(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self._n = 0
        self.rewinds = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[:self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self._n]

    def add(self, step: float, value: float) -> None:
        n = self._n
        if n and step <= self._x[n - 1]:
            n = self._n = int(np.searchsorted(self._x[:n], step, side="left"))
            self.rewinds += 1
        if n == len(self._x):
            self._x = np.concatenate([self._x, np.empty(n)])
            self._y = np.concatenate([self._y, np.empty(n)])
        self._x[n], self._y[n] = step, value
        self._n = n + 1

    def cut_after(self, step: float) -> None:
        """Drops the points after `step` (a resume from its checkpoint at `step`): they belong to a trajectory
        the adapter no longer follows."""
        n = int(np.searchsorted(self.x, step, side="right"))
        if n < self._n:
            self._n = n
            self.rewinds += 1

    def __len__(self) -> int:
        return self._n

    def last(self) -> float | None:
        return float(self._y[self._n - 1]) if self._n else None


@dataclass(frozen=True)
class RepeatedFinding(Finding):
    """The latest record of one finding code, with how often it came and since which step."""
    first_step: int | None = None
    count: int = 1


@dataclass
class RunHistory:
    run_dir: str
    loss: Series = field(default_factory=Series)
    eval_loss: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    grad_norm: Series = field(default_factory=Series)
    last_train: Record | None = None
    last_eval: Record | None = None
    first_time: float | None = None
    last_time: float | None = None
    clock: RunClock = field(default_factory=RunClock)   # the run's lives, for its elapsed time
    last_checkpoint: Record | None = None
    adapter: Record | None = None
    records: int = 0
    # One entry per finding code, most recent last; repeats raise the count
    # instead of flooding the list (a loss_flat check fires every eval).
    findings: "OrderedDict[str, RepeatedFinding]" = field(default_factory=OrderedDict)
    events: deque[Record] = field(default_factory=lambda: deque(maxlen=200))
    samples: deque[Record] = field(default_factory=lambda: deque(maxlen=50))
    log_lines: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    log_total: int = 0          # lines ever added: lets a log widget append only the new ones
    log_resets: int = 0
    status: Record | None = None
    status_error: str | None = None   # why status.json could not be read; `status` is then empty
    planned_steps: int = 0            # the run's step count: status.json's, else its last checkpoint's
    state: str = "unknown"
    machine: MachineSample | None = None
    process: ProcessSample | None = None
    gpu_state: str | None = None
    gpu_reason: str = ""
    gpus: list[GpuSample] = field(default_factory=list)
    # The run's step, evaluation and save times, measured from its records, and what it still has to do (engine.eta).
    pace: Pace = field(default_factory=Pace)
    schedule: Schedule | None = None
    # The last train record's (time, step, tokens_seen), and the tokens and seconds of the intervals between train
    # records; whether the last train record is the first of its launch (its interval holds the warm-up).
    _prev_train: tuple[float, float, float | None] | None = None
    _first_of_life: bool = True
    _launch: LaunchStart = field(default_factory=LaunchStart)
    _tokens: float = 0.0
    _tokens_s: float = 0.0
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (LOSS, LR, PROGRESS, FINDINGS, SAMPLES, LOG, GPU, SYSTEM), 0))

    MAX_FINDINGS = 100

    # ------------------------------------------------------------ applying input

    def bump(self, *parts: str) -> None:
        for p in parts:
            self.versions[p] += 1

    def apply_records(self, records: Iterable[Record]) -> set[str]:
        changed: set[str] = set()
        for rec in records:
            self.records += 1
            kind = rec.get("kind")
            step = finite_number(rec.get("step"))
            t = finite_number(rec.get("time"))
            self.clock.add(rec)
            first_of_life = self._launch.first(rec)
            if t is not None:
                self.first_time = t if self.first_time is None else min(self.first_time, t)
                self.last_time = t if self.last_time is None else max(self.last_time, t)
            if step is None:
                continue
            self.pace.add(rec)
            if kind == "train":
                self._first_of_life = first_of_life
                self._apply_train(rec, step, t, changed)
            elif kind == "eval":
                v = json_number(rec.get("eval_loss"))
                if v is not None:
                    self.eval_loss.add(step, v)
                    changed.add(LOSS)
                self.last_eval = rec
                changed.add(PROGRESS)
            elif kind == "finding":
                self._apply_finding(rec, int(step))
                changed.add(FINDINGS)
            elif kind == "event":
                self.events.append(rec)
                code = rec.get("code")
                if code == RESUMED:   # a new launch: its first train record holds a warm-up
                    self._prev_train = None
                    for series in (self.loss, self.eval_loss, self.lr, self.grad_norm):
                        series.cut_after(step)
                    # ... and the step, epoch and eval loss the panel shows are the checkpoint's, not the stopped life's
                    if (finite_number((self.last_train or {}).get("step")) or 0) > step:
                        self.last_train = None
                    if (finite_number((self.last_eval or {}).get("step")) or 0) > step:
                        self.last_eval = None
                    changed.update((LOSS, LR))
                elif code == "checkpoint_saved":
                    self.last_checkpoint = rec
                elif code == "adapter_saved":
                    self.adapter = rec
                changed.add(PROGRESS)
            elif kind == "sample":
                self.samples.append(rec)
                changed.add(SAMPLES)
        for part in changed:
            self.versions[part] += 1
        return changed

    def _apply_train(self, rec: Record, step: float, t: float | None, changed: set[str]) -> None:
        v = json_number(rec.get("loss"))
        if v is not None:
            self.loss.add(step, v)
            changed.add(LOSS)
        for name, series in (("learning_rate", self.lr), ("grad_norm", self.grad_norm)):
            v = json_number(rec.get(name))
            if v is not None:
                series.add(step, v)
                changed.add(LR)
        if t is not None:
            tps = finite_number(rec.get("tokens_per_s"))
            prev, seen = self._prev_train, finite_number(rec.get("tokens_seen"))
            # Each record's rate covers the training since the one before, its pauses left out (the trainer's
            # tokens_seen says how many tokens; older records without it: the rate over the whole interval). A
            # launch's first record covers its warm-up and compile: no interval (engine.rundir.LaunchStart).
            if not self._first_of_life and prev and tps and t > prev[0]:
                tokens = seen - prev[2] if seen is not None and prev[2] is not None and seen > prev[2] \
                    else tps * (t - prev[0])
                self._tokens += tokens
                self._tokens_s += tokens / tps
            self._prev_train = (t, step, seen)
        self.last_train = rec
        changed.add(PROGRESS)
        if "gpu_mem_gib" in rec or "gpu_peak_alloc_gib" in rec:
            changed.add(GPU)

    def _apply_finding(self, rec: Record, step: int) -> None:
        code = str(rec.get("code") or rec.get("message") or "finding")
        old = self.findings.pop(code, None)
        if code in STATE_CODES:  # the current verdict replaces the last one; it is not a repeat
            old = None
        severity = str(rec.get("severity") or "info")
        f = RepeatedFinding(code=code, severity=severity if severity in SEVERITY_RANK else "info",
                            message=str(rec.get("message") or ""), evidence=str(rec.get("evidence") or ""),
                            fix=str(rec.get("fix") or ""), step=step, time=rec.get("time"),
                            first_step=old.first_step if old else step, count=(old.count + 1) if old else 1)
        self.findings[code] = f
        while len(self.findings) > self.MAX_FINDINGS:
            self.findings.popitem(last=False)

    def apply_log(self, lines: list[str], reset: bool) -> None:
        if reset:
            self.log_lines.clear()
            self.log_resets += 1
        self.log_lines.extend(lines)
        self.log_total += len(lines)
        self.bump(LOG)

    # ------------------------------------------------------------ derived figures

    def findings_newest_first(self) -> list[RepeatedFinding]:
        return list(reversed(self.findings.values()))

    @property
    def step(self) -> int:
        from_status = int((self.status or {}).get("step") or 0)
        from_metrics = int(self.loss.x[-1]) if len(self.loss) else 0
        if self.last_train and finite_number(self.last_train.get("step")) is not None:
            from_metrics = max(from_metrics, int(self.last_train["step"]))
        return max(from_status, from_metrics)

    @property
    def epoch(self) -> float | None:
        """The epoch at `step`: the status's where it is newer than the last train record (logged every
        logging_steps), so that it never reads step 1's 0.06 beside a step counter at 8."""
        status, last = self.status or {}, self.last_train or {}
        from_status, status_step = finite_number(status.get("epoch")), finite_number(status.get("step"))
        from_metrics, train_step = finite_number(last.get("epoch")), finite_number(last.get("step"))
        if from_status is not None and status_step is not None and (train_step is None or status_step > train_step):
            return from_status
        return from_metrics

    @property
    def max_steps(self) -> int:
        return int((self.status or {}).get("max_steps") or 0) or self.planned_steps

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def steps_per_s(self) -> float | None:
        """Training steps a second, evaluation and save pauses taken out (engine.eta.Pace)."""
        step_s = self.pace.step_s()
        return 1 / step_s if step_s else None

    def tokens_per_s(self) -> float | None:
        """The last train record's tokens/s; None while that is the first record of its launch (its interval holds
        the warm-up and, with compiled layers, the compile: minutes at a fraction of the speed)."""
        tps = finite_number((self.last_train or {}).get("tokens_per_s"))
        return None if self._first_of_life else tps

    def avg_tokens_per_s(self) -> float | None:
        """Tokens per second over the training the records cover (from the first train record on): the run's own
        figure once it has ended, where the last interval alone (short, or spent evaluating) says little."""
        return self._tokens / self._tokens_s if self._tokens_s > 0 else None

    def elapsed_s(self, now: float | None = None) -> float | None:
        """Time trained so far: each life of the run from its launch, the downtime between them left out."""
        live = self.state not in FINAL_STATES and self.state not in ("lost", "unknown")
        return self.clock.elapsed(self.status, live=live, now=now)

    def eta(self) -> Eta | None:
        """The time left (engine.eta): steps, evaluations and saves still to come; None for an ended run."""
        if self.state in FINAL_STATES or self.state == "lost" or not self.max_steps:
            return None
        sched = self.schedule or Schedule(self.max_steps)
        if sched.max_steps != self.max_steps:  # the status's step count (a resume may raise it) wins
            sched = dataclasses.replace(sched, max_steps=self.max_steps)
        ev = finite_number((self.last_eval or {}).get("step"))
        ck = finite_number((self.last_checkpoint or {}).get("step"))
        return eta(self.pace, sched, self.step, evaluated_at=None if ev is None else int(ev),
                   saved_at=None if ck is None else int(ck))

    def eta_s(self) -> float | None:
        left = self.eta()
        return None if left is None else left.seconds

    def estimated_peak_gib(self) -> float | None:
        """The estimate's peak of the run's plan as the allocator counts it (torch.cuda.max_memory_allocated, one
        process), which the trainer writes into status.json: what the trainer's gpu_peak_alloc_gib measures."""
        est = (self.status or {}).get("estimate")
        peak = finite_number(est.get("peak_allocated_gib")) if isinstance(est, dict) else None
        return peak if peak is not None and peak > 0 else None

    def trainer_gpu_mem(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """(used now, total, utilisation, peak allocated) per GPU, as the trainer last reported them."""
        rec = self.last_train or {}
        return (_floats(rec.get("gpu_mem_gib")), _floats(rec.get("gpu_mem_total_gib")),
                _floats(rec.get("gpu_util")), _floats(rec.get("gpu_peak_alloc_gib")))


def _floats(v: Any) -> list[float]:
    if v is None:
        return []
    items = v if isinstance(v, (list, tuple)) else [v]
    return [n for n in map(json_number, items) if n is not None]
