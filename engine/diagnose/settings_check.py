"""The seeds' pre-flight checklist items that depend on the settings, not on the data."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from engine.demo.model import DEMO_MODEL_ID
from engine.diagnose.finding import Finding
from engine.plan import steps_per_epoch as epoch_steps
from engine.plan import total_steps

if TYPE_CHECKING:
    from engine.estimate.params import Architecture

# The seeds clip at 0.3; above 1.0 clipping rarely engages and a single bad batch can derail the run.
LOOSE_CLIPPING = 1.0
# Several evaluations per epoch show overfitting while there is still a checkpoint to go back to.
MIN_EVALS_PER_EPOCH = 2
# More kept checkpoints than this mostly fills the pod's disk; 2-3 is the usual choice.
MANY_CHECKPOINTS = 10
# Fewer held-out examples than this give an eval loss that jumps around: overfitting checks cannot trust it.
MIN_VALIDATION_EXAMPLES = 10
MAX_SUGGESTED_SPLIT = 0.2
# More passes than this over a small dataset mostly memorises it; the QLoRA paper and most guides use 1-3.
MANY_EPOCHS = 3
# Fewer training-loss points than this make the monitor's loss chart a few dots (a 54-step run logging every 10
# steps drew 6, beside 14 eval points); the advice aims at about LOSS_POINTS_SUGGESTED, each a log line.
MIN_LOSS_POINTS = 20
LOSS_POINTS_SUGGESTED = 50


# The codes check_settings raises: about the config, not the data (inspect-data shows them only with a config).
SETTINGS_CODES = ("gradient_checkpointing_off", "no_warmup", "no_grad_clipping", "eval_too_rare",
                  "loss_chart_sparse", "no_checkpoint",
                  "no_save_limit", "learning_rate_unusual", "lora_alpha_unusual", "many_epochs", "expert_dropout")


def check_settings(cfg: Any, n_examples: int | None, num_gpus: int = 1,
                   planned_steps: tuple[int | None, int | None] | None = None) -> list[Finding]:
    """`planned_steps`: (steps per epoch, total steps) from the run's plan (engine.plan, via the estimate) when
    known, so these checks count the steps the status line and the trainer count; else counted from n_examples."""
    t = cfg.training
    out = []
    if not t.gradient_checkpointing:
        out.append(Finding(
            "gradient_checkpointing_off", "info", None,
            "Gradient checkpointing is off: activations of every layer stay in memory.",
            "training.gradient_checkpointing: false",
            "Turn it on (training.gradient_checkpointing: true) unless the estimate shows plenty of headroom."))
    if t.warmup_ratio == 0:
        out.append(Finding(
            "no_warmup", "warning", None,
            "No warmup: the first steps use the full learning rate on an untrained adapter, a common cause of "
            "early spikes.", "training.warmup_ratio: 0", "Set training.warmup_ratio to 0.03 (3 % of the steps)."))
    out += _check_learning_rate(cfg)
    out += _check_lora_alpha(cfg)
    if t.max_grad_norm > LOOSE_CLIPPING:
        out.append(Finding(
            "no_grad_clipping", "warning", None,
            f"Gradient clipping at {t.max_grad_norm:g} hardly ever engages: one bad batch can derail the run.",
            f"training.max_grad_norm: {t.max_grad_norm:g}", "Set training.max_grad_norm to 0.3 (the QLoRA paper's value)."))
    planned_per_epoch, planned_total = planned_steps or (None, None)
    if planned_per_epoch and planned_total:
        steps_per_epoch, total = planned_per_epoch, planned_total
    elif n_examples:
        steps_per_epoch = epoch_steps(n_examples, t.micro_batch_size * t.gradient_accumulation_steps * max(1, num_gpus))
        total = total_steps(cfg, steps_per_epoch) or steps_per_epoch  # the trainer's rule; never None here
    if (planned_per_epoch and planned_total) or n_examples:
        # An epoch of one step is measured as often as it can be at eval_steps 1: the advice, applied, clears it.
        suggested = max(1, steps_per_epoch // 4)
        never = t.eval_steps > total
        rare = (total >= steps_per_epoch and steps_per_epoch / t.eval_steps < MIN_EVALS_PER_EPOCH
                and t.eval_steps > suggested)
        if never or rare:
            evals = steps_per_epoch // suggested
            out.append(Finding(
                "eval_too_rare", "warning", None,
                "The eval loss is measured too rarely to catch overfitting in time.",
                f"eval every {t.eval_steps} steps; {_steps(steps_per_epoch)} per epoch, {total} in all",
                f"Set training.eval_steps to {suggested} "
                f"({'once' if evals == 1 else f'about {evals} times'} per epoch)."))
        if t.logging_steps > 1 and total // t.logging_steps < MIN_LOSS_POINTS:
            out.append(Finding(
                "loss_chart_sparse", "info", None,
                f"The training loss is logged only {total // t.logging_steps} times: the monitor's loss chart "
                "will be a few dots, too few to see a trend or a spike.",
                f"log every {t.logging_steps} steps; {total} steps in all",
                f"Set training.logging_steps to {max(1, total // LOSS_POINTS_SUGGESTED)}."))
        epochs = total / steps_per_epoch
        if epochs > MANY_EPOCHS:
            out.append(Finding(
                "many_epochs", "warning", None,
                f"The run passes over the data {epochs:.1f} times: past about {MANY_EPOCHS} the model starts to "
                "memorise the examples instead of learning the task.",
                f"{total} steps, {_steps(steps_per_epoch)} per epoch"
                + (f" (max_steps {t.max_steps})" if t.max_steps > 0 else f" (num_epochs {t.num_epochs:g})"),
                f"Set training.max_steps to {MANY_EPOCHS * steps_per_epoch}" if t.max_steps > 0
                else f"Set training.num_epochs to {MANY_EPOCHS}"))
        if t.save_steps > total:
            out.append(Finding(
                "no_checkpoint", "warning", None,
                "No checkpoint is saved before the end: a crash or a stop loses the whole run.",
                f"save every {t.save_steps} steps; {total} steps in all",
                f"Set training.save_steps to {max(1, total // 4)}."))
    out += _check_validation(cfg, n_examples)
    if t.save_total_limit > MANY_CHECKPOINTS:
        out.append(Finding(
            "no_save_limit", "info", None, f"Up to {t.save_total_limit} checkpoints are kept on disk.",
            f"training.save_total_limit: {t.save_total_limit}", "Keep 2-3 (training.save_total_limit: 3)."))
    return out


def _steps(n: int) -> str:
    return f"{n} step{'' if n == 1 else 's'}"


def _check_learning_rate(cfg: Any) -> list[Finding]:
    """engine.learning_rate's verdict (the one the hyperparameters screen and the estimate show), as a finding."""
    from engine.learning_rate import lr_verdict

    v = lr_verdict(cfg.training.learning_rate, cfg.model)
    if v.level == "ok":
        return []
    on = f" on {DEMO_MODEL_ID}, a tiny random model" if v.demo else ""
    return [Finding("learning_rate_unusual", v.level, None, v.message,
                    f"training.learning_rate: {v.learning_rate:g}{on}", v.fix)]


def _check_lora_alpha(cfg: Any) -> list[Finding]:
    """engine.lora_scale's advice (the one the hyperparameters screen's alpha row shows), as a finding: the command
    line has no row to show it on, and a scale far off trains as a learning rate that far off would."""
    from engine.lora_scale import USUAL_SCALE, alpha_advice, usual_alpha

    lora = cfg.lora
    if not alpha_advice(lora.alpha, lora.r):
        return []
    scale = lora.alpha / lora.r
    return [Finding("lora_alpha_unusual", "warning", None,
                    f"LoRA alpha {lora.alpha:g} scales the adapter's update {scale:g}x (alpha / r), "
                    f"{scale / USUAL_SCALE:g} times the usual {USUAL_SCALE}x: it trains as a learning rate "
                    f"{scale / USUAL_SCALE:g} times the recipe's would.",
                    f"lora.alpha: {lora.alpha:g}, lora.r: {lora.r}", f"Set lora.alpha to {usual_alpha(lora.r)}")]


def _check_validation(cfg: Any, n_examples: int | None) -> list[Finding]:
    """A validation split that holds out only a handful of examples (the trainer's own count of the split)."""
    from engine.estimate import training_examples

    d = cfg.dataset
    if d.validation_path or not d.validation_split or not n_examples:
        return []
    held_out = n_examples - training_examples(n_examples, d.validation_split, False)
    if held_out >= MIN_VALIDATION_EXAMPLES:
        return []
    split = min(MAX_SUGGESTED_SPLIT, math.ceil(MIN_VALIDATION_EXAMPLES / n_examples * 100) / 100)
    return [Finding(
        "validation_too_small", "warning", None,
        f"Only {held_out} example{'s' * (held_out != 1)} held out for validation: the eval loss will jump around, "
        "and the overfitting check cannot trust it.",
        f"dataset.validation_split {d.validation_split:g} of {n_examples} examples = {held_out}",
        f"Set dataset.validation_split to {split:g}" + (" (or add data)" if split >= MAX_SUGGESTED_SPLIT else ""))]


def check_lora_for_model(cfg: Any, arch: Architecture | None) -> list[Finding]:
    """The lora settings against the model (its shapes from config.json; None: not read yet), by the rules `lorapilot
    train` refuses by before loading (and the trainer after): target_modules naming a layer the model lacks or that
    LoRA cannot reach (engine.estimate.params.lora_targets: a mixture's experts where peft maps no name onto them),
    and dropout that LoRA on a mixture's stacked experts refuses (expert_dropout_problem)."""
    from engine.errors import ConfigError
    from engine.estimate.params import expert_dropout_finding_fix, expert_dropout_problem, lora_targets

    if arch is None:
        return []
    findings = []
    try:
        lora_targets(arch, cfg.lora.target_modules)
    except ConfigError as e:
        findings.append(Finding(
            "lora_target_missing", "error", None,
            "LoRA's target modules name a layer this model has not, or its router: the run would stop once the model "
            "has loaded.",
            e.message, e.fix or ""))
    problem = expert_dropout_problem(arch.model_type, cfg.lora)
    if problem is not None:
        findings.append(Finding(
            "expert_dropout", "error", None,
            "LoRA dropout cannot apply to this model's experts: the run would stop once the model has loaded.",
            problem, expert_dropout_finding_fix(arch.attention)))
    return findings
