"""The sweep's plan: the grid, each trial's config, the budget fit and the early-stop rule.

Pure functions (no I/O, no torch), so every rule here is tested directly.

The early-stop rule, in full:
- A trial stops at once on an error finding in STOP_ON (`nan_loss`, `loss_explosion`): the trainer
  itself checkpoints and stops (training.stop_on is set per trial).
- Asynchronous successive halving (ASHA, eta = 2) on eval loss at equal steps: every trial evaluates at
  its rungs, 1/3 and 2/3 of the steps. When a trial reaches a rung, its eval loss there is ranked
  among the eval losses every trial so far had at that same rung (its own included); if it is in the
  worse half (at least half of the others are strictly better), it is stopped. The first trial to reach
  a rung always goes on; a trial that went on is never stopped later by trials that come after. Trials
  run best-guess first (the grid's centre), so the ones that follow are compared with a good one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from engine.config import FIELDS, Config
from engine.errors import UserError
from engine.learning_rate import DEMO_RANGE, DEMO_TYPICAL

DEFAULT_LRS = (1e-4, 2e-4, 5e-4)
# The embedded demo's tiny random model trains in engine.learning_rate.DEMO_RANGE (1e-3 to 5e-3): the pretrained
# models' grid above is all far below it (the loss barely moves), and its winner at the grid's edge. Its grid: the
# range's ends and the demo's own rate between them.
DEMO_LRS = (DEMO_RANGE[0], DEMO_TYPICAL, DEMO_RANGE[1])
DEFAULT_RS = (4, 8, 16)
DEFAULT_STEPS = 100
# Findings that stop a trial at once (on top of whatever the base config stops on).
STOP_ON = ("nan_loss", "loss_explosion")
# Halving compares at these fractions of the steps; the steps are rounded to a multiple of RUNG_DIVISOR
# so that every rung falls on an evaluation.
RUNG_FRACTIONS = (1, 2)
RUNG_DIVISOR = 3
# A budget shortens trials before it drops any, but not below this many steps (or the requested
# steps, if fewer): shorter trials rank settings by noise.
MIN_BUDGET_STEPS = 30
# Loss logged about this many times per trial (the monitor's sparkline, the diagnostics' windows).
LOGS_PER_TRIAL = 20


def lr_text(lr: float) -> str:
    """2e-4, 2.5e-4, 3e-3: the short form used in trial names and tables, with as many digits as the value has
    (1.234e-4 stays 1.234e-4: cut to 1.23e-4, it was shown for a rate it was not, and named the same trial folder
    as 1.2341e-4)."""
    digits = next(d for d in range(17) if float(f"{lr:.{d}e}") == lr) if math.isfinite(lr) else 2
    mantissa, exp = f"{lr:.{digits}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp)}"


@dataclass(frozen=True)
class Trial:
    learning_rate: float
    r: int

    @property
    def alpha(self) -> int:
        return 2 * self.r

    @property
    def id(self) -> str:
        return f"lr{lr_text(self.learning_rate)}_r{self.r}"


def default_lrs(model: str | None) -> tuple[float, ...]:
    """The learning rates swept when none are given: the demo's own range for the demo model."""
    from engine.demo.model import DEMO_MODEL_ID
    return DEMO_LRS if model == DEMO_MODEL_ID else DEFAULT_LRS


def parse_lrs(text: str | None, model: str | None = None) -> list[float]:
    """'1e-4,2e-4' -> [1e-4, 2e-4]; each in training.learning_rate's range; duplicates dropped. None: the default
    grid for `model` (default_lrs)."""
    if text is None:
        return list(default_lrs(model))
    return _parse_list(text, "--lr", float, "a number", "training.learning_rate", "a learning rate",
                       "1e-4,2e-4,5e-4")


def parse_rs(text: str | None) -> list[int]:
    """'4,8,16' -> [4, 8, 16]; each a whole number in lora.r's range; duplicates dropped."""
    if text is None:
        return list(DEFAULT_RS)
    return _parse_list(text, "--r", int, "a whole number", "lora.r", "a LoRA rank", "4,8,16")


def _parse_list(text: str, flag: str, convert, kind: str, key: str, what: str, example: str) -> list:
    spec = FIELDS[key]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError(f"{flag}: the grid is empty", fix=f"give at least one value, e.g. {flag} {example}")
    values: list = []
    for part in parts:
        try:
            value = convert(part)
        except ValueError:
            raise UserError(f"{flag}: {part!r} is not {kind}", fix=f"e.g. {flag} {example}") from None
        lo_ok = value > spec.lo if spec.lo_open else value >= spec.lo
        if not (math.isfinite(value) and lo_ok and value <= spec.hi):
            raise UserError(f"{flag}: {part} is out of range; {what} must be in {spec.range_text()}",
                            fix=f"e.g. {flag} {example}")
        if value not in values:
            values.append(value)
    return values


def grid(lrs: list[float], rs: list[int]) -> list[Trial]:
    """Every combination, in priority order: the grid's centre first, then outwards.

    The centre is the recipe's usual choice, so it is the best first trial to compare the others with,
    and the trials a budget keeps.
    """
    if not lrs or not rs:
        raise UserError("the sweep grid is empty", fix="give at least one --lr and one --r")
    trials = [Trial(lr, r) for lr in lrs for r in rs]
    lr_sorted, r_sorted = sorted(lrs), sorted(rs)
    lr_mid, r_mid = (len(lrs) - 1) / 2, (len(rs) - 1) / 2

    def distance(t: Trial) -> tuple:
        return (abs(lr_sorted.index(t.learning_rate) - lr_mid) + abs(r_sorted.index(t.r) - r_mid),
                lr_sorted.index(t.learning_rate), r_sorted.index(t.r))

    return sorted(trials, key=distance)


def round_steps(steps: int) -> int:
    """Steps rounded to the nearest multiple of 3 (at least 3), so the rungs fall on evaluations."""
    if steps < RUNG_DIVISOR:
        raise UserError(f"--steps: {steps} is too few; a sweep trial needs at least {RUNG_DIVISOR} steps",
                        fix=f"--steps {DEFAULT_STEPS} is the usual trial length")
    return max(RUNG_DIVISOR, round(steps / RUNG_DIVISOR) * RUNG_DIVISOR)


def rungs(steps: int) -> list[int]:
    """The steps at which halving compares trials: 1/3 and 2/3 of the steps."""
    return [steps * k // RUNG_DIVISOR for k in RUNG_FRACTIONS]


def trial_config(base: Config, trial: Trial, steps: int, *, one_gpu: bool = True) -> Config:
    """The base config with the trial's lr and r, alpha = 2r, and the sweep's schedule.

    Evaluations fall on the rungs (eval_steps = steps / 3) and checkpoints with them, so a stopped trial
    resumes from a rung; no samples are generated (they cost time and decide nothing here).
    """
    cfg = copy.deepcopy(base)
    t = cfg.training
    cfg.lora.r, cfg.lora.alpha = trial.r, trial.alpha
    t.learning_rate = trial.learning_rate
    t.max_steps = steps
    t.eval_steps = steps // RUNG_DIVISOR
    t.save_steps = steps // RUNG_DIVISOR
    t.logging_steps = max(1, min(t.logging_steps, steps // LOGS_PER_TRIAL))
    t.stop_on = list(dict.fromkeys([*t.stop_on, *STOP_ON]))
    t.sample_max_new_tokens = 0
    if one_gpu:
        t.num_gpus = 1
        if t.parallelism == "fsdp":   # nothing to shard on one GPU (the config refuses the pair)
            t.parallelism = "auto"
    cfg.run_name = None
    return cfg


def halving_should_stop(loss: float, others: list[float]) -> bool:
    """True when `loss` is in the worse half of all losses at this rung (`others` are the earlier trials').

    Kept when fewer than half of the n losses (its own included) are strictly better; so of two the worse
    stops, of three the worst, of four the two worst. A non-finite loss always stops (if any other exists).
    """
    finite = [x for x in others if math.isfinite(x)]
    if not others:
        return False
    if not math.isfinite(loss):
        return True
    n = len(finite) + 1
    better = sum(1 for x in finite if x < loss)
    return better >= math.ceil(n / 2)


# ---------------------------------------------------------------- time and budget

def time_lanes(lanes: int, devices: list[str]) -> int:
    """How many trials' time runs at once: one per GPU; trials sharing a GPU (or the CPU) share its compute, so
    together they take as long as one after another (each trial's time is timed alone)."""
    return max(1, min(lanes, len(devices)))


def trial_wall_s(trial_s: float, at_once: int, devices: list[str]) -> float:
    """One trial's wall time with `at_once` trials running on `devices`: `trial_s` times a trial alone, and trials
    sharing a GPU (or the CPU) share its compute (time_lanes), so each takes as long as those sharing it together."""
    at_once = max(1, at_once)
    return trial_s * math.ceil(at_once / time_lanes(at_once, devices))


def sweep_seconds(n_trials: int, trial_s: float, lanes: int) -> float:
    """Wall time of n equal trials run `lanes` at once (an upper bound: no trial stopped early)."""
    return math.ceil(n_trials / max(1, lanes)) * trial_s


@dataclass
class BudgetFit:
    n_trials: int
    steps: int
    seconds: float
    changed: str | None  # what the fit changed, in words; None when the plan fitted as asked


def fit_budget(n_trials: int, steps: int, budget_s: float, lanes: int, trial_seconds) -> BudgetFit:
    """The plan that fits the budget, assuming no trial stops early.

    `trial_seconds(steps)` is one trial's time. First the trials get shorter, down to MIN_BUDGET_STEPS;
    if that is not enough, trials are dropped (the grid's edges first: trials are in priority order)
    and the steps raised again as far as the budget allows. A budget too small for one trial is an error.
    """
    if budget_s <= 0:
        raise UserError("--budget-minutes: must be more than 0")

    def total(n: int, s: int) -> float:
        return sweep_seconds(n, trial_seconds(s), lanes)

    if total(n_trials, steps) <= budget_s:
        return BudgetFit(n_trials, steps, total(n_trials, steps), None)
    floor_steps = min(steps, round_steps(MIN_BUDGET_STEPS))
    candidates = range(steps - RUNG_DIVISOR, floor_steps - 1, -RUNG_DIVISOR)
    for s in candidates:
        if total(n_trials, s) <= budget_s:
            return BudgetFit(n_trials, s, total(n_trials, s),
                             f"steps per trial {steps} -> {s} to fit {budget_s / 60:g} min")
    n = n_trials
    while n > 1 and total(n, floor_steps) > budget_s:
        n -= 1
    if total(n, floor_steps) > budget_s:
        from engine.estimate.timing import duration_text

        need = trial_seconds(floor_steps)
        raise UserError(f"--budget-minutes {budget_s / 60:g} is too small for even one trial of {floor_steps} steps "
                        f"({duration_text(need)})", fix=f"give at least --budget-minutes {math.ceil(need / 60)}")
    best = floor_steps
    for s in range(steps, floor_steps, -RUNG_DIVISOR):
        if total(n, s) <= budget_s:
            best = s
            break
    what = f"trials {n_trials} -> {n} (the grid's centre kept)"
    if best != steps:
        what += f", steps per trial {steps} -> {best}"
    return BudgetFit(n, best, total(n, best), what + f" to fit {budget_s / 60:g} min")
