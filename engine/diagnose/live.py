"""Live training-health findings over metrics.jsonl records.

`LiveDiagnostics.update(records)` is what the trainer calls at every log: it
looks at each new record once, keeps only small running summaries (O(1) per
record), and returns the findings that are new. A condition that persists is
reported once; it is reported again only when it gets clearly worse or when it
comes back after having cleared. A state (the learning-curve verdict, codes.STATE_CODES) is said again at
every evaluation, so the latest one is current. `diagnose_records` runs the same evaluator
over a whole history, so a run diagnosed afterwards says exactly what the
trainer said live.

Thresholds are chosen so that a healthy run (fast first drop, a bump while the
learning rate warms up, +-10 % batch noise, a long plateau) raises nothing
above `info`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Literal

from engine.diagnose.codes import STATE_CODES
from engine.diagnose.copying import CopyDetector
from engine.diagnose.curves import EvalPoint, best_eval, check_learning_curve, check_overfitting
from engine.diagnose.finding import Finding
from engine.rundir import finite_number, record_number

# --- loss_explosion
# A logged loss at 3x the first one: a healthy run's loss only falls from its
# start, warmup bumps are ~10-20 %, so this is divergence, not noise.
SPIKE_FACTOR = 3.0
# Sustained climb: the smoothed loss 1.5x above its lowest value AND at least
# half a nat above it (so a low, noisy loss near 0.1 does not count) ...
CLIMB_FACTOR = 1.5
CLIMB_MIN_NATS = 0.5
# ... for 3 logs in a row, which outlasts a warmup wobble.
CLIMB_LOGS = 3
# Smoothing of the loss for the climb check (exponential moving average):
# 0.3 keeps it within a few per cent under +-10 % batch noise ...
EMA_ALPHA = 0.3
# The run's own log-to-log noise: a robust standard deviation of ln(loss) around the smoothed loss over the last
# NOISE_WINDOW logs. A run that logs every step of a small batch swings +-40 % from log to log: a single log at 3x
# the start came once in 70 logs, and the smoothed loss's lowest dip sat 1.5x below its level; both thresholds
# called most healthy runs of that shape diverging. A spike must stand this many of its standard deviations above
# the smoothed loss (at least NOISE_FLOOR assumed, a few logs tell nothing) ...
SPIKE_NOISE_SIGMAS = 4.0
NOISE_WINDOW = 20
NOISE_FLOOR = 0.1
# Before NOISE_MIN_LOGS logs measure it, the noise of a run that logs every step of one small batch is assumed: a
# real divergence still shows (2.0 -> 7.5 is 3.7x the smoothed loss), a noisy first log does not.
NOISE_MIN_LOGS = 5
NOISE_UNMEASURED = 0.3
# ... and a climb this many of the smoothed loss's own deviations beyond CLIMB_FACTOR.
CLIMB_NOISE_SIGMAS = 3.0

# --- loss_flat
# The seeds: a loss still near its start after 50+ steps means the lr is too
# low or the labels are masked. A good lr drops ~25 % by step 50 (2.1 -> 1.6);
# a too-low one ~1 % (2.1 -> 2.08). The 50 steps count from the end of
# warmup: while the learning rate still ramps up a slow start is expected.
FLAT_MIN_STEPS = 50
FLAT_MAX_DROP = 0.05
# ...and the smoothed loss never went more than 15 % below its start: a loss
# that fell and came back up is climbing (loss_explosion), not flat.
FLAT_NEVER_BELOW = 0.15
# Start and recent loss are means of this many logs, to average out noise ...
FLAT_WINDOW = 3
# ... and of more where the run's own noise (see NOISE_WINDOW) calls for it: a run that logs every step of a small
# batch swings +-30 % from log to log, and two means of 3 logs differed by 25 % on noise alone, so a healthy run's
# slow drop read as "flat" (5 in 100 such synthetic runs) and a flat run's smoothed loss dipped 15 % below its start
# on noise (4 flat runs in 5 never called flat). Each window takes as many logs as keep the difference of the two
# means within FLAT_NOISE_SE (its standard error, in ln loss), up to FLAT_MAX_WINDOW; the dip must also stand out of
# the smoothed loss's own noise, as loss_explosion's climb does. At +-30 %: 1 healthy run in 100 called flat, 97 flat
# runs in 100 caught (later: ~step 130 of 300, where the means have their logs).
FLAT_NOISE_SE = 0.04
FLAT_MAX_WINDOW = 100

# --- loss_near_zero
# Mean of the last FLAT_WINDOW losses under 0.05 nats: the model reproduces its
# training answers token for token (the seeds call < 0.1 overfit already).
NEAR_ZERO_LOSS = 0.05

# --- grad_norm_spike
# 10x the running median: batch noise and the occasional long example give
# 2-4x; clipping (max_grad_norm) absorbs those, not an order of magnitude.
GRAD_SPIKE_FACTOR = 10.0
GRAD_WINDOW = 20  # logs the median is taken over (recent enough to follow slow drift)
GRAD_MIN_HISTORY = 5  # too few logs make a median that means nothing
# A non-finite grad norm with a finite loss is a step fp16 loss scaling skips;
# the same this many logs in a row is a real overflow.
NONFINITE_GRAD_LOGS = 3

# --- gpu_memory_high
# The seeds' checklist: GPU memory below 90 % of the card; above it one longer
# batch or a fragmentation spike is an out-of-memory.
GPU_MEMORY_HIGH = 0.90

# --- evaluations kept besides the best one: more than any curve check reads (OVERFIT_EVALS_AFTER_BEST,
# GAP_GROWING_EVALS, the last two for the verdict)
EVALS_KEPT = 8

# --- de-duplication
# A finding is raised again while still active only if its magnitude (how far
# past its threshold) has doubled, or its severity went up.
WORSE_FACTOR = 2.0
# It counts as recovered after this many checks in a row without it, so a
# condition flickering on and off around its threshold is reported once.
RECOVERY_CHECKS = 3

NAN_FIX = ("Lower the learning rate 10x (e.g. 2e-4 -> 2e-5), keep max_grad_norm at 0.3, use more warmup "
           "(warmup_ratio 0.05-0.1), and look for bad examples (empty responses, extremely long rows).")


@dataclass
class _Alert:
    finding: Finding
    magnitude: float | None = None  # how far past the threshold, to tell "worse"
    variant: str | None = None  # a different kind of the same code (a new verdict)


class _Deduper:
    """Remembers the last raised alert per code and decides whether a new one is news."""

    def __init__(self) -> None:
        self.raised: dict[str, _Alert] = {}
        self._clear_checks: dict[str, int] = {}

    def active(self, code: str) -> bool:
        return code in self.raised

    def offer(self, code: str, alert: _Alert | None) -> Finding | None:
        if alert is None:
            if code in self.raised:
                self._clear_checks[code] = self._clear_checks.get(code, 0) + 1
                if self._clear_checks[code] >= RECOVERY_CHECKS:
                    del self.raised[code]
            return None
        self._clear_checks[code] = 0
        previous = self.raised.get(code)
        if previous is not None and code not in STATE_CODES and not self._news(alert, previous):
            return None
        self.raised[code] = alert
        return alert.finding

    @staticmethod
    def _news(alert: _Alert, previous: _Alert) -> bool:
        if alert.finding.rank > previous.finding.rank or alert.variant != previous.variant:
            return True
        return (alert.magnitude is not None and previous.magnitude is not None
                and alert.magnitude >= previous.magnitude * WORSE_FACTOR)


class LogNews:
    """What a log reader (train.log) needs of the findings: every record keeps a state (the learning-curve
    verdict) current at each evaluation, but a line that repeats the same verdict is noise; it is said again only
    when it changes."""

    def __init__(self) -> None:
        self._said: dict[str, str] = {}

    def worth_saying(self, finding: Finding) -> bool:
        if finding.code not in STATE_CODES:
            return True
        if self._said.get(finding.code) == finding.message:
            return False
        self._said[finding.code] = finding.message
        return True


class LiveDiagnostics:
    """Incremental evaluator: feed it records as they are logged, get new findings back."""

    def __init__(self, training_responses: list[str] | None = None):
        self._dedup = _Deduper()
        self._copies = CopyDetector(training_responses) if training_responses else None
        self.findings: list[Finding] = []  # every finding raised so far, oldest first
        # training-loss summaries
        self._losses_seen = 0
        self._first_losses: list[float] = []
        self._recent_losses: deque[float] = deque(maxlen=FLAT_MAX_WINDOW)
        self._ema: float | None = None
        self._residuals: deque[float] = deque(maxlen=NOISE_WINDOW)   # ln(loss / smoothed loss before it)
        self._ema_min = math.inf
        self._climb_logs = 0
        self._last_lr: float | None = None
        self._warmup_end = 0  # last step at which the learning rate was still rising
        self._warmup_over = False
        self._grad_norms: deque[float] = deque(maxlen=GRAD_WINDOW)
        self._nonfinite_grad_logs = 0
        self._evals: list[EvalPoint] = []

    def update(self, records: Iterable[dict]) -> list[Finding]:
        """The findings that are new after these records (each record is looked at once)."""
        new: list[Finding] = []
        for record in records:
            kind = record.get("kind")
            if kind == "train":
                alerts = self._on_train(record)
            elif kind == "eval":
                alerts = self._on_eval(record)
            elif kind == "sample":
                alerts = self._on_sample(record)
            else:
                continue
            for code, alert in alerts:
                finding = self._dedup.offer(code, alert)
                if finding is not None:
                    new.append(finding)
        self.findings += new
        return new

    @classmethod
    def from_history(cls, records: Iterable[dict], training_responses: list[str] | None = None) -> "LiveDiagnostics":
        """An evaluator that has already seen these records (a resumed run): what they raised is not raised again,
        and the loss is judged against the run's real start, not the resume point."""
        live = cls(training_responses)
        live.update(records)
        return live

    def active(self) -> list[Finding]:
        """The findings whose condition still holds, as last raised."""
        return [a.finding for a in self._dedup.raised.values()]

    @property
    def best_eval_step(self) -> int | None:
        best = best_eval(self._evals)
        return None if best is None else best.step

    # ------------------------------------------------------------------ train records

    def _on_train(self, rec: dict) -> list[tuple[str, _Alert | None]]:
        step, time = int(rec.get("step") or 0), rec.get("time")
        loss, grad = record_number(rec, "loss"), record_number(rec, "grad_norm")
        self._track_warmup(step, record_number(rec, "learning_rate"))
        alerts = [("nan_loss", self._check_nonfinite(step, time, loss, grad))]
        if loss is not None and math.isfinite(loss):
            before, noise = self._ema, self._noise()   # a spike must not widen the yardstick it is measured with
            ema = self._remember_loss(loss)
            alerts += [("loss_explosion", self._check_explosion(step, time, loss, ema, before, noise)),
                       ("loss_near_zero", self._check_near_zero(step, time))]
            if step - self._warmup_end >= FLAT_MIN_STEPS and self._losses_seen >= 2 * FLAT_WINDOW:
                alerts.append(("loss_flat", self._check_flat(step, time)))
        if grad is not None and math.isfinite(grad):
            alerts.append(("grad_norm_spike", self._check_grad_spike(step, time, grad)))
        memory = self._check_gpu_memory(rec, step, time)
        if memory is not False:
            alerts.append(("gpu_memory_high", memory))
        return alerts

    def _track_warmup(self, step: int, lr: float | None) -> None:
        if lr is None or self._warmup_over:
            return
        if self._last_lr is not None and lr <= self._last_lr:
            self._warmup_over = True
        else:
            self._warmup_end = step
        self._last_lr = lr

    def _remember_loss(self, loss: float) -> float:
        """Takes in a finite training loss; returns the smoothed loss it makes."""
        self._losses_seen += 1
        if len(self._first_losses) < FLAT_MAX_WINDOW:
            self._first_losses.append(loss)
        self._recent_losses.append(loss)
        if self._ema is not None and loss > 0 and self._ema > 0:
            self._residuals.append(math.log(loss / self._ema))
        ema = loss if self._ema is None else EMA_ALPHA * loss + (1 - EMA_ALPHA) * self._ema
        self._ema, self._ema_min = ema, min(self._ema_min, ema)
        return ema

    def _noise(self, floor: float = NOISE_FLOOR) -> float:
        """The log-to-log noise of ln(loss) around the smoothed loss: a robust standard deviation (1.4826 MAD)."""
        if len(self._residuals) < NOISE_MIN_LOGS:
            return max(floor, NOISE_UNMEASURED)
        mid = statistics.median(self._residuals)
        return max(floor, 1.4826 * statistics.median(abs(r - mid) for r in self._residuals))

    def _ema_wobble(self, sigmas: float) -> float:
        """`sigmas` of the smoothed loss's own deviation, in ln loss: the logs' noise through the EMA (sqrt(a / (2 - a))
        of it)."""
        return sigmas * self._noise(floor=0.0) * math.sqrt(EMA_ALPHA / (2 - EMA_ALPHA))

    def _flat_window(self) -> int:
        """Logs in each of loss_flat's means: FLAT_WINDOW, more where the run's noise needs them (FLAT_NOISE_SE)."""
        needed = math.ceil(2 * (self._noise(floor=0.0) / FLAT_NOISE_SE) ** 2)
        return max(FLAT_WINDOW, min(FLAT_MAX_WINDOW, needed))

    def _recent_mean(self, n: int = FLAT_WINDOW) -> float:
        """The mean of the last n training losses (of as many as there are; NaN before the first)."""
        recent = list(self._recent_losses)[-n:]
        return statistics.fmean(recent) if recent else math.nan

    def _check_nonfinite(self, step: int, time: float | None, loss: float | None,
                         grad: float | None) -> _Alert | None:
        if loss is not None and not math.isfinite(loss):
            last = "" if self._ema is None else f" (smoothed loss before it: {self._ema:.3f})"
            return _Alert(Finding("nan_loss", "error", step, "The training loss is NaN or infinite: the run "
                                  "has diverged and will not recover.", f"loss={loss} at step {step}{last}",
                                  NAN_FIX, time))
        if grad is not None and not math.isfinite(grad):
            self._nonfinite_grad_logs += 1
            repeated = self._nonfinite_grad_logs >= NONFINITE_GRAD_LOGS
            message = ("The gradient norm has been NaN or infinite for several logs in a row: the weights "
                       "are being corrupted." if repeated else
                       "The gradient norm is NaN or infinite (fp16 loss scaling skips such a step; "
                       "it is only a problem if it repeats).")
            return _Alert(Finding("nan_loss", "error" if repeated else "warning", step, message,
                                  f"grad_norm={grad} at step {step}, {self._nonfinite_grad_logs} log(s) in a row",
                                  NAN_FIX, time))
        self._nonfinite_grad_logs = 0
        return None

    def _check_explosion(self, step: int, time: float | None, loss: float, ema: float,
                         before: float | None, noise: float) -> _Alert | None:
        start = self._first_losses[0]
        wobble = self._ema_wobble(CLIMB_NOISE_SIGMAS)
        climbing = ema >= CLIMB_FACTOR * math.exp(wobble) * self._ema_min and ema - self._ema_min >= CLIMB_MIN_NATS
        self._climb_logs = self._climb_logs + 1 if climbing else 0
        fix = ("Lower the learning rate 10x, keep gradient clipping on (max_grad_norm 0.3), use more warmup; "
               "resume from the last checkpoint before the climb.")
        stands_out = before is None or before <= 0 or math.log(loss / before) >= SPIKE_NOISE_SIGMAS * noise
        if start > 0 and loss >= SPIKE_FACTOR * start and stands_out:
            return _Alert(Finding("loss_explosion", "error", step,
                                  f"The loss jumped to {loss / start:.1f}x its starting value: training is diverging.",
                                  f"loss {loss:.3f} at step {step}; first logged loss {start:.3f}; "
                                  f"lowest smoothed {self._ema_min:.3f}", fix, time), loss / start)
        if self._climb_logs >= CLIMB_LOGS:
            ratio = ema / self._ema_min
            return _Alert(Finding("loss_explosion", "warning", step,
                                  f"The loss has been climbing for {self._climb_logs} logs, {ratio:.1f}x above its "
                                  "lowest point: training is becoming unstable.",
                                  f"smoothed loss {ema:.3f} at step {step}; lowest {self._ema_min:.3f}",
                                  fix, time), ratio)
        return None

    def _check_flat(self, step: int, time: float | None) -> _Alert | None:
        n = self._flat_window()
        if self._losses_seen < 2 * n:   # the noise, measured since, asks for more logs than the run has
            return None
        start = statistics.fmean(self._first_losses[:n])
        recent = self._recent_mean(n)
        drop = (start - recent) / start if start > 0 else 0.0
        dipped = self._ema_min < start * (1 - FLAT_NEVER_BELOW) * math.exp(-self._ema_wobble(CLIMB_NOISE_SIGMAS))
        if drop >= FLAT_MAX_DROP or dipped:
            return None
        return _Alert(Finding("loss_flat", "warning", step,
                              f"After {step} steps ({step - self._warmup_end} at full learning rate) the loss "
                              "has barely moved from where it started.",
                              f"mean loss {recent:.3f} over the last {n} logs vs {start:.3f} "
                              f"at the start ({drop:+.1%}; a working run drops ~25 % by step 50)",
                              "Raise the learning rate 10x (if the loss starts moving it was too low), and check "
                              "the labels: if every label is -100 there is nothing to learn "
                              "(`lorapilot inspect-data`).", time))

    def _check_near_zero(self, step: int, time: float | None) -> _Alert | None:
        recent = self._recent_mean()
        if len(self._recent_losses) < FLAT_WINDOW or recent >= NEAR_ZERO_LOSS:
            return None
        return _Alert(Finding("loss_near_zero", "warning", step,
                              "The training loss is near 0: the model is memorising its training examples.",
                              f"mean loss {recent:.4f} over the last {FLAT_WINDOW} logs",
                              "Stop at the checkpoint with the lowest eval loss; train fewer epochs, add data, "
                              "raise LoRA dropout or lower r. (Fine only if every answer is fully determined by "
                              "its prompt, e.g. a fixed format.)", time))

    def _check_grad_spike(self, step: int, time: float | None, grad: float) -> _Alert | None:
        alert = None
        if len(self._grad_norms) >= GRAD_MIN_HISTORY:
            median = statistics.median(self._grad_norms)
            if median > 0 and grad >= GRAD_SPIKE_FACTOR * median:
                alert = _Alert(Finding("grad_norm_spike", "warning", step,
                                       f"The gradient norm spiked to {grad / median:.0f}x its recent median.",
                                       f"grad_norm {grad:.3g} at step {step}; median of the last "
                                       f"{len(self._grad_norms)} logs {median:.3g}",
                                       "Keep max_grad_norm at 0.3 so one bad batch cannot wreck the weights; if it "
                                       "repeats, lower the learning rate and look for extreme examples (empty "
                                       "responses, very long rows).", time), grad / median)
        self._grad_norms.append(grad)
        return alert

    def _check_gpu_memory(self, rec: dict, step: int, time: float | None) -> _Alert | None | Literal[False]:
        """False when the record carries no memory figures (nothing checked)."""
        used, total = rec.get("gpu_mem_gib"), rec.get("gpu_mem_total_gib")
        if not isinstance(used, list) or not isinstance(total, list):
            return False
        pairs = zip(map(finite_number, used), map(finite_number, total))
        fractions = [(u / t, i, u, t) for i, (u, t) in enumerate(pairs) if u is not None and t is not None and t > 0]
        if not fractions:
            return False
        fraction, gpu, gib, total_gib = max(fractions)
        if fraction < GPU_MEMORY_HIGH:
            return None
        return _Alert(Finding("gpu_memory_high", "warning", step,
                              f"GPU {gpu} memory is at {fraction:.0%}: one longer batch could run out of memory.",
                              f"GPU {gpu}: {gib:.1f} of {total_gib:.1f} GiB at step {step}",
                              "Lower micro_batch_size (raise gradient_accumulation_steps to keep the effective "
                              "batch), shorten max_seq_length, or keep gradient_checkpointing on.", time), fraction)

    # ------------------------------------------------------------------ eval and sample records

    def _on_eval(self, rec: dict) -> list[tuple[str, _Alert | None]]:
        eval_loss = record_number(rec, "eval_loss")
        if eval_loss is None:
            return []
        step, time = int(rec.get("step") or 0), rec.get("time")
        if not math.isfinite(eval_loss):
            return [("nan_loss", _Alert(Finding("nan_loss", "error", step, "The eval loss is NaN or infinite.",
                                                f"eval_loss={eval_loss} at step {step}", NAN_FIX, time)))]
        train = self._recent_mean() if self._recent_losses else None
        if self._evals and step <= self._evals[-1].step:
            # A resumed run evaluates again the steps after its checkpoint: the new evaluation replaces those (as the
            # monitor's chart does), or one evaluation after the best would count as two.
            self._evals = [e for e in self._evals if e.step < step]
        self._remember_eval(EvalPoint(step, eval_loss, train))
        overfit = check_overfitting(self._evals, time)
        curve = check_learning_curve(self._evals, train_flat=self._dedup.active("loss_flat"), time=time)
        return [("overfitting", _Alert(overfit[0], variant=overfit[1]) if overfit else None),
                ("learning_curve", _Alert(curve[0], variant=curve[1]) if curve else None)]

    def _remember_eval(self, point: EvalPoint) -> None:
        """Keeps the best evaluation and the latest ones: everything the curve checks read (the best, how many
        came after it, the last few gaps), in constant time per record; the whole history made diagnosing a
        million records quadratic."""
        best = best_eval(self._evals)
        self._evals.append(point)
        if best is not None and point.eval_loss >= best.eval_loss:
            point = best  # the first lowest stays the best, as best_eval picks it
        if len(self._evals) > 1 + EVALS_KEPT:
            tail = self._evals[-EVALS_KEPT:]
            self._evals = tail if any(e is point for e in tail) else [point, *tail]

    def _on_sample(self, rec: dict) -> list[tuple[str, _Alert | None]]:
        output = rec.get("output")
        if self._copies is None or not isinstance(output, str) or len(self._evals) < 2:
            return []
        # Copying matters when the model has stopped generalising: only while eval loss is above its best.
        if self._evals[-1].eval_loss <= min(e.eval_loss for e in self._evals):
            return [("copies_training_data", None)]
        evidence = self._copies.check(output)
        if evidence is None:
            return [("copies_training_data", None)]
        step = int(rec.get("step") or 0)
        return [("copies_training_data", _Alert(Finding(
            "copies_training_data", "warning", step,
            "A generated sample repeats a training response nearly word for word while eval loss rises.",
            evidence, f"Keep the checkpoint from step {self.best_eval_step} (lowest eval loss); train fewer "
            "epochs or add more varied data.", rec.get("time"))))]


def diagnose_records(records: Iterable[dict], training_responses: list[str] | None = None) -> list[Finding]:
    """Every finding over a whole history, oldest first: what the trainer raised live."""
    return LiveDiagnostics(training_responses).update(records)
