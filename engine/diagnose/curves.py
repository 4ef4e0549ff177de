"""Eval-loss checks: overfitting and the learning-curve verdict.

Pure functions over the eval points seen so far. Eval loss is measured on the
same held-out set each time, so unlike the training loss it is not batch
noise: a few per cent up over two evaluations is a real trend.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.diagnose.finding import Finding

# Eval loss this far above its best (relative) counts as rising. Below that,
# evaluations on a plateau wobble by a per cent or so.
OVERFIT_EVAL_RISE = 0.03
# ...and it must have stayed above the best for this many evaluations, so one
# unlucky evaluation does not call a healthy run overfit.
OVERFIT_EVALS_AFTER_BEST = 2
# The seeds' memorisation signature: training loss under 0.1 while the eval
# loss is over 1.0.
MEMORISED_TRAIN_LOSS = 0.1
MEMORISED_EVAL_LOSS = 1.0
# A healthy eval loss sits 0.1-0.3 above the training loss (seeds); a gap
# beyond 0.5 that keeps widening over the last evaluations is overfitting.
GAP_HEALTHY = (0.1, 0.3)
GAP_WARN = 0.5
GAP_GROWING_EVALS = 3
# Eval loss still falling by more than this (relative, per evaluation): the
# curve has not levelled off, the model can still learn.
STILL_IMPROVING = 0.02

OVERFIT_FIX = ("Keep the checkpoint nearest step {best_step} (lowest eval loss {best:.3f}) and stop, "
               "or retrain with fewer epochs (try 1), more data, more LoRA dropout (0.1-0.2), a lower rank "
               "(r=4-8) or more weight decay (0.01).")


@dataclass(frozen=True)
class EvalPoint:
    step: int
    eval_loss: float
    train_loss: float | None  # mean of the latest training losses when the eval ran

    @property
    def gap(self) -> float | None:
        return None if self.train_loss is None else self.eval_loss - self.train_loss


def gap_words(gap: float, train_loss: float | None = None) -> str:
    """The generalisation gap (eval loss minus training loss) in words a beginner reads without a glossary.

    With `train_loss`, the training loss it was measured against is named: the mean of the latest logged losses,
    not the last one the monitor shows, and the two can sit on opposite sides of the eval loss."""
    against = "the training loss" if train_loss is None else f"the training loss of {train_loss:.3f}"
    notes = ([] if train_loss is None else ["the mean of the latest logged losses"]) + \
        [f"healthy: {GAP_HEALTHY[0]}-{GAP_HEALTHY[1]} above"]
    if gap >= 0:
        return f"eval loss {gap:.2f} above {against} ({'; '.join(notes)})"
    notes.append("below: the eval examples are easier than the training ones, or the training loss still averages "
                 "earlier, higher steps")
    return f"eval loss {-gap:.2f} below {against} ({'; '.join(notes)})"


def best_eval(evals: list[EvalPoint]) -> EvalPoint | None:
    """The evaluation with the lowest eval loss (the first one on a tie): the checkpoint to keep."""
    return _lowest(evals) if evals else None


def _lowest(evals: list[EvalPoint]) -> EvalPoint:
    """best_eval for the checks below, which only run once evaluations exist."""
    return min(evals, key=lambda e: e.eval_loss)


def _eval_rising(evals: list[EvalPoint]) -> bool:
    best, latest = _lowest(evals), evals[-1]
    after_best = len(evals) - 1 - evals.index(best)
    train_fell = best.train_loss is None or latest.train_loss is None or latest.train_loss < best.train_loss
    return (after_best >= OVERFIT_EVALS_AFTER_BEST and latest.eval_loss >= best.eval_loss * (1 + OVERFIT_EVAL_RISE)
            and train_fell)


def _gap_growing(evals: list[EvalPoint]) -> bool:
    gaps = [g for g in (e.gap for e in evals[-GAP_GROWING_EVALS:]) if g is not None]
    if len(gaps) < GAP_GROWING_EVALS:  # too few evaluations yet, or one without a training loss
        return False
    return gaps[-1] >= GAP_WARN and all(a < b for a, b in zip(gaps, gaps[1:]))


def _memorised(latest: EvalPoint) -> bool:
    return (latest.train_loss is not None and latest.train_loss < MEMORISED_TRAIN_LOSS
            and latest.eval_loss > MEMORISED_EVAL_LOSS)


def check_overfitting(evals: list[EvalPoint], time: float | None = None) -> tuple[Finding, str] | None:
    """An overfitting finding and which sign showed it (memorised | rising | gap), or None."""
    if len(evals) < 2:
        return None
    best, latest = _lowest(evals), evals[-1]
    memorised, rising, widening = _memorised(latest), _eval_rising(evals), _gap_growing(evals)
    if not (memorised or rising or widening):
        return None
    train = "n/a" if latest.train_loss is None else f"{latest.train_loss:.3f}"
    evidence = (f"eval loss {latest.eval_loss:.3f} at step {latest.step}, best {best.eval_loss:.3f} at step "
                f"{best.step}; training loss {train}")
    if latest.gap is not None:
        evidence += f"; {gap_words(latest.gap, latest.train_loss)}"
    if memorised:
        sign, message = "memorised", ("The model has memorised the training set: training loss is near 0 while "
                                      "eval loss stays high.")
    elif rising:
        sign, message = "rising", "Eval loss is rising while training loss keeps falling: the model is overfitting."
    else:
        sign, message = "gap", ("The gap between training and eval loss keeps widening: the model is starting "
                                "to overfit.")
    finding = Finding("overfitting", "error" if memorised else "warning", latest.step, message, evidence,
                      OVERFIT_FIX.format(best_step=best.step, best=best.eval_loss), time)
    return finding, sign


def learning_curve_verdict(evals: list[EvalPoint], *, train_flat: bool = False) -> str | None:
    """underfit | overfit | well-fit, once two evaluations exist."""
    if len(evals) < 2:
        return None
    if _memorised(evals[-1]) or _eval_rising(evals) or _gap_growing(evals):
        return "overfit"
    previous, latest = evals[-2], evals[-1]
    if train_flat or (previous.eval_loss - latest.eval_loss) > STILL_IMPROVING * previous.eval_loss:
        return "underfit"
    return "well-fit"


def check_learning_curve(evals: list[EvalPoint], *, train_flat: bool = False,
                         time: float | None = None) -> tuple[Finding, str] | None:
    """The verdict as an info finding, with the verdict to de-duplicate on."""
    verdict = learning_curve_verdict(evals, train_flat=train_flat)
    if verdict is None:
        return None
    latest, best = evals[-1], _lowest(evals)
    gap = "" if latest.gap is None else f"; {gap_words(latest.gap, latest.train_loss)}"
    evidence = f"eval loss {latest.eval_loss:.3f} at step {latest.step} (best {best.eval_loss:.3f}){gap}"
    if verdict == "overfit":
        message = "Learning curve: overfit. Eval loss is pulling away from the training loss."
        fix = OVERFIT_FIX.format(best_step=best.step, best=best.eval_loss)
    elif verdict == "underfit":
        message = ("Learning curve: underfit so far. The training loss is flat." if train_flat else
                   "Learning curve: underfit so far. Eval loss is still falling; the model can learn more.")
        fix = ("If it is still falling at the end, train longer (more epochs or steps); "
               "if the training loss is flat, raise the learning rate.")
    else:
        message = "Learning curve: well-fit. Eval loss has levelled off close to the training loss."
        fix = "Nothing to change; the checkpoint with the lowest eval loss is the one to keep."
    return Finding("learning_curve", "info", latest.step, message, evidence, fix, time), verdict
