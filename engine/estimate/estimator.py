"""One config in, the whole picture out: memory, fit, steps, time, cost, learning rate."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TypedDict

from engine.config import Config
from engine.estimate.gpus import GpuSpec
from engine.estimate.lr import lr_hint
from engine.estimate.memory import (
    FIT_FRACTION,
    Component,
    memory,
    need_gib,
    shape_for_plan,
)
from engine.estimate.model_config import ModelInfo
from engine.estimate.params import lora_params
from engine.estimate.timing import pauses, plan_schedule, run_seconds, startup_seconds
from engine.plan import Machine, RunPlan, plan_run


@dataclass
class Estimate:
    components: list[Component]
    peak_allocated_gib: float        # as torch.cuda.max_memory_allocated sees it (CPU: the tensors' peak in RAM)
    device_total_gib: float          # as nvidia-smi sees it (CPU: the same peak, no context or allocator slack)
    load_peak_gib: float             # allocated while loading and preparing the base
    gpu: GpuSpec | None
    fits: bool | None                # None without a GPU to compare with
    headroom_gib: float | None       # card memory minus device_total (negative: over)
    tokens_per_microbatch: int
    precision: str                   # resolved: bf16 | fp16 | fp32
    num_gpus: int
    params_total: int
    params_trainable: int
    steps_per_epoch: int | None
    total_steps: int | None
    time_s: float | None
    cost: float | None
    lr_hint: dict
    approximate: bool
    notes: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    fit_fraction: float = FIT_FRACTION
    memory_mode: str = "fast"        # resolved training.memory: fast | lean
    parallelism: str = "none"        # resolved training.parallelism: none (one GPU) | ddp | fsdp
    need_gib: float = 0.0            # what must fit the card: training on the device, or loading where higher
    plan: RunPlan | None = None      # the run as planned (engine.plan): what the trainer will do
    time_basis: str = ""             # where time_s's rate comes from: "measured on H200", "not measured on T4: ..."
    time_basis_detail: str = ""      # the path, fraction of the 16-bit peak and measured speeds behind it
    time_caveat: str = ""            # said beside the time wherever it is shown: a CPU time's busy-machine caveat
    train_flops: float | None = None  # the training FLOPs time_s is computed from (engine.estimate.timing)
    compile_s: float = 0.0           # of time_s: compiling the decoder layers before the first step (plan's choice)
    evaluations: int = 0             # the evaluations time_s counts (every eval_steps, and at the end; 0 unpriced)
    saves: int = 0                   # the checkpoint saves it counts, the adapter's included
    pauses_s: float = 0.0            # of time_s: the evaluations (their samples in them), checkpoints and adapter
    startup_s: float = 0.0           # of time_s: launch to the first step, the compile apart (loading, tokenising)
    download_bytes: int = 0          # not in time_s: the base checkpoint to fetch first, 0 when local or cached

    @property
    def includes(self) -> str:
        """What time_s counts besides the steps: "incl. 35 s start-up, 12 evals, 6 saves" (empty without a time)."""
        from engine.estimate.timing import pauses_words

        return pauses_words(self.evaluations, self.saves, self.startup_s) if self.time_s is not None else ""

    @property
    def download(self) -> str:
        """The download before the run, beside its time: "+ download 16.1 GB first (not in the local cache)"."""
        from engine.estimate.timing import download_words

        return download_words(self.download_bytes) if self.download_bytes else ""

    @property
    def on_cpu(self) -> bool:
        """Planned for this machine's CPU (no GPU): the memory is RAM, with no card to fit it under."""
        return self.plan is not None and self.plan.device != "cuda"

    def to_dict(self) -> dict:
        r3 = lambda x: None if x is None else round(x, 3)
        return {
            "peak_allocated_gib": r3(self.peak_allocated_gib), "device_total_gib": r3(self.device_total_gib),
            "load_peak_gib": r3(self.load_peak_gib), "fits": self.fits, "headroom_gib": r3(self.headroom_gib),
            "fit_fraction": self.fit_fraction, "gpu": self.gpu.to_dict() if self.gpu else None,
            "components": [c.to_dict() for c in self.components],
            "tokens_per_microbatch": self.tokens_per_microbatch, "precision": self.precision,
            "num_gpus": self.num_gpus, "params_total": self.params_total,
            "params_trainable": self.params_trainable, "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps, "time_s": r3(self.time_s),
            "cost": None if self.cost is None else round(self.cost, 4),
            "lr_hint": self.lr_hint, "approximate": self.approximate, "notes": list(self.notes),
            "suggestions": list(self.suggestions), "memory_mode": self.memory_mode, "parallelism": self.parallelism,
            "need_gib": r3(self.need_gib), "plan": self.plan.to_dict() if self.plan else None,
            "time_basis": self.time_basis, "time_basis_detail": self.time_basis_detail,
            "time_caveat": self.time_caveat,
            "train_flops": None if self.train_flops is None else float(f"{self.train_flops:.4g}"),
            "evaluations": self.evaluations, "saves": self.saves, "pauses_s": r3(self.pauses_s),
            "startup_s": r3(self.startup_s), "download_bytes": self.download_bytes,
        }


class RunInputs(TypedDict):
    """What, beside the config, the model and the card, an estimate is of (auto-fit passes it on unchanged)."""
    n_examples: int | None
    num_gpus: int
    lengths: list[int] | None
    val_lengths: list[int] | None
    n_val: int | None
    machine: Machine | None
    price_per_hour: float | None
    fraction: float


def with_changes(cfg: Config, changes: dict) -> Config:
    """A copy of cfg with dotted keys set (no validation: callers pass values from the schema's choices)."""
    new = copy.copy(cfg)
    for key, value in changes.items():
        head, _, tail = key.partition(".")
        if tail:
            section = copy.copy(getattr(new, head))
            setattr(section, tail, value)
            setattr(new, head, section)
        else:
            setattr(new, head, value)
    return new


def compute(cfg: Config, info: ModelInfo, gpu: GpuSpec | None, *, n_examples: int | None = None,
            num_gpus: int = 1, lengths: list[int] | None = None, val_lengths: list[int] | None = None,
            n_val: int | None = None, machine: Machine | None = None, plan: RunPlan | None = None,
            tokens_per_microbatch: int | None = None, fused_loss: bool | None = None,
            price_per_hour: float | None = None, fraction: float = FIT_FRACTION) -> Estimate:
    """The estimate without suggestions (auto-fit calls this many times), of the run as engine.plan plans it.

    machine: where it trains (default: `gpu` as the engine would use it, Liger and its attention kernel included;
    no gpu: this machine's CPU). lengths: the training examples' token lengths (default: every example fills
    max_seq_length, said in the notes). n_val: validation examples where val_lengths does not say (the evaluations'
    cost). tokens_per_microbatch / fused_loss override the plan's (auto-fit's
    budget search).
    """
    t, arch = cfg.training, info.arch
    machine = machine or Machine.for_gpu(gpu, num_gpus)
    plan = plan or plan_run(cfg, machine, lengths=lengths, n_examples=n_examples, val_lengths=val_lengths,
                            info=info, fraction=fraction)
    shape = shape_for_plan(cfg, arch, plan, tokens=tokens_per_microbatch, fused_loss=fused_loss)
    mem = memory(arch, info.params, shape)
    n_lora = lora_params(arch, list(shape.targets), cfg.lora.r)

    fits = headroom = None
    need = need_gib(mem)
    if gpu is not None:
        # Loading can peak above training (a whole 4-bit copy per rank before FSDP shards it; fp32 upcasts):
        # a run that cannot load does not fit either.
        headroom = gpu.memory_gib - need
        fits = need <= fraction * gpu.memory_gib

    cost = None
    per_step_tokens = (plan.train_tokens or 0) / max(1, plan.max_steps or 1)
    run_time = run_seconds(arch, info.params, n_lora, plan, machine, gpu, cfg.quantization, t.gradient_checkpointing)
    time_s = run_time.seconds
    # Besides its steps the run evaluates and saves: counted by the rule the monitor's ETA counts by (engine.eta),
    # from the step time less the compile, so the ETA at step 0 is this time less the compile and the start-up.
    sched = plan_schedule(cfg, plan, len(val_lengths) if val_lengths else n_val, info)
    after = pauses(sched, (time_s - run_time.compile_s) / plan.max_steps) if time_s is not None and plan.max_steps \
        else None
    if time_s is not None and after is not None:
        time_s += after.seconds
    # And before its first step it starts: loading the model, tokenising every row (train and validation; unknown
    # lengths at max_seq_length, as the plan counts them).
    startup = 0.0
    if time_s is not None:
        tokens = sum(lengths) if lengths else (n_examples or 0) * t.max_seq_length
        tokens += sum(val_lengths) if val_lengths else (n_val or 0) * t.max_seq_length
        startup = startup_seconds(info.param_count, tokens, plan.device, info.dtype)
        time_s += startup
    if time_s is not None and price_per_hour is not None:
        cost = time_s / 3600 * price_per_hour

    notes = list(arch.notes)
    if plan.lengths_from != "dataset":
        notes.append(f"micro-batches {plan.lengths_from}")
    if arch.context and t.max_seq_length > arch.context:
        notes.append(f"max_seq_length {t.max_seq_length} exceeds the model's context ({arch.context})")
    if gpu is not None and gpu.bf16 is False and t.precision == "bf16":
        notes.append(f"{gpu.name} has no bf16: set training.precision to auto or fp16")
    if gpu is not None and mem.load_peak_gib + mem.context_gib > mem.device_total_gib:
        notes.append(f"loading peaks above training ({mem.load_peak_gib:.1f} GiB): that is what has to fit")
    if gpu is not None and fits is False and headroom is not None and headroom >= 0:
        notes.append(f"above {fraction:.0%} of the card: may run, but with no margin for the estimate's error")
    if gpu is None:
        notes.append(f"no GPU: the run trains on this machine's CPU ({plan.precision}, plain PyTorch kernels)")

    return Estimate(
        components=mem.components, peak_allocated_gib=mem.peak_allocated_gib,
        device_total_gib=mem.device_total_gib, load_peak_gib=mem.load_peak_gib, gpu=gpu, fits=fits,
        headroom_gib=headroom, tokens_per_microbatch=shape.tokens, precision=plan.precision,
        num_gpus=plan.processes, params_total=info.params.total, params_trainable=n_lora,
        steps_per_epoch=plan.steps_per_epoch, total_steps=plan.max_steps, time_s=time_s, cost=cost,
        time_basis=run_time.basis, time_basis_detail=run_time.detail, time_caveat=run_time.caveat,
        train_flops=run_time.flops,
        compile_s=run_time.compile_s, evaluations=after.evals if after and after.evals_s else 0,
        saves=after.saves if after else 0, pauses_s=after.seconds if after else 0.0, startup_s=startup,
        lr_hint=lr_hint(t.learning_rate, cfg.model,
                        round(per_step_tokens) or plan.examples_per_step * t.max_seq_length, info.pretraining),
        approximate=not arch.exact, notes=notes, fit_fraction=fraction, memory_mode=plan.memory,
        parallelism=plan.parallelism, need_gib=need, plan=plan)


def estimate(cfg: Config, model_info: ModelInfo, gpu: GpuSpec | None, *, n_examples: int | None = None,
             num_gpus: int = 1, lengths: list[int] | None = None, val_lengths: list[int] | None = None,
             n_val: int | None = None, machine: Machine | None = None, tokens_per_microbatch: int | None = None,
             fused_loss: bool | None = None, price_per_hour: float | None = None,
             fraction: float = FIT_FRACTION) -> Estimate:
    """The full estimate; when it does not fit, suggestions say what to change and what that gives."""
    kwargs = RunInputs(n_examples=n_examples, num_gpus=num_gpus, lengths=lengths, val_lengths=val_lengths,
                       n_val=n_val, machine=machine, price_per_hour=price_per_hour, fraction=fraction)
    est = compute(cfg, model_info, gpu, tokens_per_microbatch=tokens_per_microbatch, fused_loss=fused_loss,
                  **kwargs)
    if est.fits is False and gpu is not None:   # fits is None without a card
        from engine.estimate.fit import auto_fit

        fit = auto_fit(cfg, model_info, gpu, **kwargs)
        est.suggestions = [change.text() for change in fit.changes]
        if not fit.fits:
            est.suggestions.append(f"even with these changes it needs {fit.estimate.need_gib:.1f} GiB: "
                                   "use a smaller model or a larger GPU")
    return est


def gib_text(est: Estimate) -> str:
    if est.gpu is None:
        return f"{est.need_gib:.1f} GiB"
    return f"{est.need_gib:.1f} / {est.gpu.memory_gib:.1f} GiB"
