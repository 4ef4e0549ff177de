"""Auto-fit: the largest micro-batch that fits, and what to change when nothing does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.config import Config
from engine.estimate.estimator import (
    FIT_FRACTION,
    Estimate,
    RunInputs,
    compute,
    gib_text,
    with_changes,
)
from engine.estimate.gpus import GpuSpec
from engine.estimate.model_config import ModelInfo
from engine.plan import LEAN_TOKENS_PER_MICROBATCH, Machine

_EIGHT_BIT = {"paged_adamw_32bit": "paged_adamw_8bit", "adamw_torch": "adamw_8bit"}
MAX_TOKEN_BUDGET = 1 << 22


@dataclass
class Change:
    description: str
    settings: dict          # dotted config keys -> new values
    estimate: Estimate      # after this change and the ones before it

    def text(self) -> str:
        verdict = "fits" if self.estimate.fits else "still too large"
        return f"{self.description}: {gib_text(self.estimate)} ({verdict})"


@dataclass
class FitResult:
    micro_batch_size: int
    gradient_accumulation_steps: int
    fits: bool
    estimate: Estimate                                   # of the config with every change applied
    changes: list[Change] = field(default_factory=list)  # in order, each estimate cumulative
    settings: dict = field(default_factory=dict)          # all changes as dotted keys


def _micro_batch_options(effective: int) -> list[int]:
    """Micro-batch sizes that keep micro x accumulation equal to the effective batch, largest first."""
    return [m for m in range(effective, 0, -1) if effective % m == 0]


_EVAL_FIELDS = ("eval_batch_size", "eval_tokens")


def _same_plan(a: Estimate, b: Estimate, *, training_only: bool = False) -> bool:
    """Two estimates of one run plan (engine.plan): a change between them changes nothing the trainer does.
    training_only: the evaluation batch (which follows micro_batch_size) left out of the comparison."""
    if a.plan is None or b.plan is None:
        return False
    pa, pb = a.plan.to_dict(), b.plan.to_dict()
    if training_only:
        for key in _EVAL_FIELDS:
            pa.pop(key), pb.pop(key)
    return pa == pb


def largest_micro_batch(cfg: Config, info: ModelInfo, gpu: GpuSpec, kw: RunInputs) -> tuple[int, Estimate] | None:
    """The largest micro-batch (same effective batch) that fits, with its estimate; None if even 1 does not.
    Where the plan packs by a token budget (a whole step on the GPU's fast path, lean's cap) micro_batch_size
    trains nothing differently (only the evaluation batch follows it): the current size is kept, so no pointless
    change is offered."""
    t = cfg.training
    options = _micro_batch_options(t.micro_batch_size * t.gradient_accumulation_steps)
    # Memory grows with the micro-batch, so bisect over the options (largest first).
    lo, hi, best = 0, len(options) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        est = _at_micro(cfg, info, gpu, options[mid], kw)
        if est.fits:
            best, hi = (options[mid], est), mid - 1
        else:
            lo = mid + 1
    if best is not None:
        # The current size, where it plans the same run as the size found: no change to propose.
        current = _at_micro(cfg, info, gpu, t.micro_batch_size, kw)
        if current.fits and _same_plan(current, best[1], training_only=True):
            return t.micro_batch_size, current
    return best


def _at_micro(cfg: Config, info: ModelInfo, gpu: GpuSpec, micro: int, kw: RunInputs) -> Estimate:
    t = cfg.training
    effective = t.micro_batch_size * t.gradient_accumulation_steps
    return compute(_micro_changed(cfg, micro, effective), info, gpu, **kw)


def _micro_settings(micro: int, effective: int) -> dict:
    return {"training.micro_batch_size": micro, "training.gradient_accumulation_steps": effective // micro}


def _micro_changed(cfg: Config, micro: int, effective: int) -> Config:
    return with_changes(cfg, _micro_settings(micro, effective))


def _micro_change(cfg: Config, micro: int, est: Estimate) -> Change:
    t = cfg.training
    effective = t.micro_batch_size * t.gradient_accumulation_steps
    return Change(f"micro_batch_size {t.micro_batch_size} -> {micro}, gradient_accumulation_steps "
                  f"{t.gradient_accumulation_steps} -> {effective // micro}", _micro_settings(micro, effective), est)


def _candidates(cfg: Config, info: ModelInfo, packed: bool | None = None) -> list[tuple[str, dict[str, Any]]]:
    """packed: whether the plan packs (None: the config's training.packing; a model whose layers carry state across
    a packed row keeps its rows padded whatever the config says, engine.plan.packing_for)."""
    t, lora = cfg.training, cfg.lora
    packed = t.packing if packed is None else packed
    out: list[tuple[str, dict[str, Any]]] = []
    if t.memory == "fast" and packed:
        # The fast path packs a whole optimizer step per micro-batch: micro_batch_size does not change its size.
        # Lean offloads the checkpointed layer inputs: with checkpointing on (the config refuses lean without it)
        out.append((f"training.memory lean (at most {LEAN_TOKENS_PER_MICROBATCH:,} tokens per micro-batch, "
                    "activations in host memory" + ("" if t.gradient_checkpointing else ", gradient checkpointing on")
                    + ")", {"training.memory": "lean", "training.gradient_checkpointing": True}))
    if not t.gradient_checkpointing:
        out.append(("turn on gradient checkpointing", {"training.gradient_checkpointing": True}))
    if cfg.quantization != "nf4":
        out.append((f"quantize the base to nf4 (was {cfg.quantization})", {"quantization": "nf4"}))
    if t.max_seq_length > 256:
        shorter = t.max_seq_length // 2
        out.append((f"max_seq_length {t.max_seq_length} -> {shorter} (longer examples are cut)",
                    {"training.max_seq_length": shorter}))
    if lora.r > 4:
        out.append((f"LoRA r {lora.r} -> {lora.r // 2}", {"lora.r": lora.r // 2, "lora.alpha": lora.alpha / 2}))
    if t.optimizer in _EIGHT_BIT:
        out.append((f"8-bit optimizer ({_EIGHT_BIT[t.optimizer]})", {"training.optimizer": _EIGHT_BIT[t.optimizer]}))
    names = list(dict.fromkeys(lin.name for lin in info.arch.linears))
    current = names if lora.target_modules == "all-linear" else list(lora.target_modules)
    attention = [n for n in current if n in info.arch.attention]
    if attention and len(attention) < len(current):
        out.append((f"LoRA on attention layers only ({', '.join(attention)})", {"lora.target_modules": attention}))
    return out


def auto_fit(cfg: Config, model_info: ModelInfo, gpu: GpuSpec, *, n_examples: int | None = None,
             num_gpus: int = 1, lengths: list[int] | None = None, val_lengths: list[int] | None = None,
             n_val: int | None = None, machine: Machine | None = None, price_per_hour: float | None = None,
             fraction: float = FIT_FRACTION) -> FitResult:
    """The largest micro-batch under `fraction` of the GPU at the same effective batch; when even 1 does
    not fit, the changes that help most, applied one after another (greedy) until it fits."""
    kw = RunInputs(n_examples=n_examples, num_gpus=num_gpus, lengths=lengths, val_lengths=val_lengths, n_val=n_val,
              machine=machine, price_per_hour=price_per_hour, fraction=fraction)
    t = cfg.training
    effective = t.micro_batch_size * t.gradient_accumulation_steps
    found = largest_micro_batch(cfg, model_info, gpu, kw)
    if found is not None:
        micro, est = found
        changes = [_micro_change(cfg, micro, est)] if micro != t.micro_batch_size else []
        return FitResult(micro, effective // micro, True, est, changes, _micro_settings(micro, effective))

    est = compute(cfg, model_info, gpu, **kw)
    at_one = compute(_micro_changed(cfg, 1, effective), model_info, gpu, **kw)
    if t.micro_batch_size != 1 and (not _same_plan(est, at_one, training_only=True)
                                    or at_one.need_gib < est.need_gib - 0.01):
        # A micro-batch of 1 only where it changes the training plan (not where a token budget packs the step),
        # or where its smaller evaluation batch lowers the peak.
        current, settings, est = _micro_changed(cfg, 1, effective), _micro_settings(1, effective), at_one
        changes = [_micro_change(cfg, 1, est)]
    else:
        current, settings, changes = cfg, _micro_settings(t.micro_batch_size, effective), []
    while not est.fits:
        tried = [(desc, ch, compute(with_changes(current, ch), model_info, gpu, **kw))
                 for desc, ch in _candidates(current, model_info, est.plan.packing if est.plan else
                                             current.training.packing)]
        # A change whose plan and memory equal today's changes nothing: never offered.
        tried = [x for x in tried if not (_same_plan(x[2], est) and abs(x[2].need_gib - est.need_gib) < 0.01)]
        if not tried:
            break
        desc, ch, best = min(tried, key=lambda x: x[2].need_gib)
        if best.need_gib >= est.need_gib - 0.01:
            break      # nothing left that helps
        current, est = with_changes(current, ch), best
        settings.update(ch)
        changes.append(Change(desc, ch, best))
    if est.fits:
        # With the savings in place a larger micro-batch may fit again.
        found = largest_micro_batch(current, model_info, gpu, kw)
        if found is not None and found[0] > current.training.micro_batch_size:
            micro, est = found
            more = _micro_settings(micro, effective)
            settings.update(more)
            changes.append(Change(f"micro_batch_size back up to {micro}", more, est))
    return FitResult(settings["training.micro_batch_size"], settings["training.gradient_accumulation_steps"],
                     bool(est.fits), est, changes, settings)


def max_tokens_per_microbatch(cfg: Config, model_info: ModelInfo, gpu: GpuSpec, *, fused_loss: bool | None = None,
                              fraction: float = FIT_FRACTION) -> int:
    """The largest token budget per micro-batch whose estimate stays under `fraction` of the GPU
    (what the packing engine asks); 0 when even the weights and optimizer do not fit."""
    limit = fraction * gpu.memory_gib
    if cfg.training.memory == "auto":  # a budget for the fast path: auto would switch to lean, which caps it
        cfg = with_changes(cfg, {"training.memory": "fast"})

    def fits(tokens: int) -> bool:
        return compute(cfg, model_info, gpu, tokens_per_microbatch=tokens, fused_loss=fused_loss,
                       fraction=fraction).device_total_gib <= limit

    if not fits(1):
        return 0
    lo, hi = 1, MAX_TOKEN_BUDGET
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo

