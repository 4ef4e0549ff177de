"""One config in, the whole picture out: memory, fit, steps, time, cost, learning rate."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from engine.config import Config
from engine.estimate.gpus import GpuSpec
from engine.estimate.lr import lr_hint
from engine.estimate.memory import CUDA_CONTEXT_GIB, LEAN_TOKENS_PER_MICROBATCH, Component, TrainingShape, memory
from engine.estimate.model_config import ModelInfo, read_model_config
from engine.estimate.params import lora_params, lora_targets
from engine.estimate.timing import flops_per_token, steps, train_seconds

# The estimate has an error, and a run that touches 100 % dies: "fits" means
# under this fraction of the card, and auto-fit aims below it.
FIT_FRACTION = 0.90


@dataclass
class Estimate:
    components: list[Component]
    peak_allocated_gib: float        # as torch.cuda.max_memory_allocated sees it
    device_total_gib: float          # as nvidia-smi sees it
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

    def to_dict(self) -> dict:
        r3 = lambda x: None if x is None else round(x, 3)  # noqa: E731
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
            "need_gib": r3(self.need_gib),
        }


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


def resolve_precision(precision: str, gpu: GpuSpec | None) -> str:
    """What training.precision 'auto' becomes on this card (bf16 where supported)."""
    if precision != "auto":
        return precision
    return "fp16" if gpu is not None and gpu.bf16 is False else "bf16"


def compute(cfg: Config, info: ModelInfo, gpu: GpuSpec | None, *, n_examples: int | None = None,
            num_gpus: int = 1, tokens_per_microbatch: int | None = None, fused_loss: bool = False,
            price_per_hour: float | None = None, avg_tokens_per_example: int | None = None,
            fraction: float = FIT_FRACTION) -> Estimate:
    """The estimate without suggestions (auto-fit calls this many times).

    training.memory auto is what the trainer does: fast where it fits the GPU, else lean; on several GPUs,
    training.parallelism auto shards the model (fsdp) only where a whole copy per GPU does not fit.
    """
    t, arch = cfg.training, info.arch
    kw = dict(n_examples=n_examples, num_gpus=num_gpus, tokens_per_microbatch=tokens_per_microbatch,
              fused_loss=fused_loss, price_per_hour=price_per_hour,
              avg_tokens_per_example=avg_tokens_per_example, fraction=fraction)
    if num_gpus > 1 and t.parallelism == "auto":  # what the trainer does: shard only where one GPU is not enough
        whole = compute(with_changes(cfg, {"training.parallelism": "ddp"}), info, gpu, **kw)
        if whole.fits is not False:
            return whole
        return compute(with_changes(cfg, {"training.parallelism": "fsdp"}), info, gpu, **kw)
    if t.memory == "auto":
        fast = compute(with_changes(cfg, {"training.memory": "fast"}), info, gpu, **kw)
        if fast.fits is not False:
            return fast
        return compute(with_changes(cfg, {"training.memory": "lean"}), info, gpu, **kw)
    precision = resolve_precision(t.precision, gpu)
    tokens = tokens_per_microbatch or t.micro_batch_size * t.max_seq_length
    lean = t.memory == "lean"
    optimizer = t.optimizer
    if lean:  # what engine/train/speed.py does under lean
        tokens = min(tokens, max(t.max_seq_length, LEAN_TOKENS_PER_MICROBATCH)) if t.packing else tokens
        optimizer = "paged_adamw_8bit" if optimizer == "paged_adamw_32bit" else optimizer
    targets = lora_targets(arch, cfg.lora.target_modules)
    shape = TrainingShape(quantization=cfg.quantization, compute_bytes=4 if precision == "fp32" else 2,
                          targets=tuple(targets), r=cfg.lora.r, dropout=cfg.lora.dropout, optimizer=optimizer,
                          gradient_checkpointing=t.gradient_checkpointing, tokens=tokens, fused_loss=fused_loss,
                          kbit_upcast=precision != "bf16", offload=lean and t.gradient_checkpointing,
                          shards=num_gpus if num_gpus > 1 and t.parallelism == "fsdp" else 1)
    mem = memory(arch, info.params, shape)
    n_lora = lora_params(arch, targets, cfg.lora.r)

    fits = headroom = None
    need = max(mem.device_total_gib, mem.load_peak_gib + CUDA_CONTEXT_GIB)
    if gpu is not None:
        # Loading can peak above training (a whole 4-bit copy per rank before FSDP shards it; fp32 upcasts):
        # a run that cannot load does not fit either.
        headroom = gpu.memory_gib - need
        fits = need <= fraction * gpu.memory_gib

    n_train = n_examples
    if n_train is not None and cfg.dataset.max_examples:
        n_train = min(n_train, cfg.dataset.max_examples)
    per_epoch, total = steps(n_train, t.micro_batch_size, t.gradient_accumulation_steps, num_gpus,
                             t.num_epochs, t.max_steps)
    per_example = min(avg_tokens_per_example or t.max_seq_length, t.max_seq_length)
    tokens_per_step_per_gpu = t.micro_batch_size * t.gradient_accumulation_steps * per_example
    time_s = cost = None
    if total is not None and gpu is not None and gpu.tflops_16bit:
        fpt = flops_per_token(arch, info.params, n_lora, per_example, t.gradient_checkpointing)
        time_s = train_seconds(total, tokens_per_step_per_gpu, fpt, gpu.tflops_16bit, cfg.quantization)
        if price_per_hour is not None:
            cost = time_s / 3600 * price_per_hour

    notes = list(arch.notes)
    if avg_tokens_per_example is None:
        notes.append("time assumes every example fills max_seq_length (an upper bound)")
    if arch.context and t.max_seq_length > arch.context:
        notes.append(f"max_seq_length {t.max_seq_length} exceeds the model's context ({arch.context})")
    if gpu is not None and gpu.bf16 is False and t.precision == "bf16":
        notes.append(f"{gpu.name} has no bf16: set training.precision to auto or fp16")
    if gpu is not None and mem.load_peak_gib + CUDA_CONTEXT_GIB > mem.device_total_gib:
        notes.append(f"loading peaks above training ({mem.load_peak_gib:.1f} GiB): that is what has to fit")
    if gpu is not None and fits is False and headroom >= 0:
        notes.append(f"above {fraction:.0%} of the card: may run, but with no margin for the estimate's error")
    notes.append("attention assumed memory-efficient (SDPA/flash): no sequence-squared term")

    return Estimate(
        components=mem.components, peak_allocated_gib=mem.peak_allocated_gib,
        device_total_gib=mem.device_total_gib, load_peak_gib=mem.load_peak_gib, gpu=gpu, fits=fits,
        headroom_gib=headroom, tokens_per_microbatch=tokens, precision=precision, num_gpus=num_gpus,
        params_total=info.params.total, params_trainable=n_lora, steps_per_epoch=per_epoch, total_steps=total,
        time_s=time_s, cost=cost,
        lr_hint=lr_hint(t.learning_rate, num_gpus * tokens_per_step_per_gpu, info.pretraining),
        approximate=not arch.exact, notes=notes, fit_fraction=fraction, memory_mode="lean" if lean else "fast",
        parallelism="none" if num_gpus <= 1 else t.parallelism, need_gib=need)


def on_detected_gpu(cfg: Config, gpu_memory_gib: float, **kwargs) -> Estimate:
    """compute() for the GPU the trainer runs on, so that it decides auto settings as the wizard does.

    Raises UserError when the model has no config to estimate from.
    """
    gpu = GpuSpec(id="detected", name="this GPU", memory_gib=gpu_memory_gib, bf16=None, tflops_16bit=None,
                  detected=True)
    return compute(cfg, read_model_config(cfg.model), gpu, **kwargs)


def estimate(cfg: Config, model_info: ModelInfo, gpu: GpuSpec | None, *, n_examples: int | None = None,
             num_gpus: int = 1, tokens_per_microbatch: int | None = None, fused_loss: bool = False,
             price_per_hour: float | None = None, avg_tokens_per_example: int | None = None,
             fraction: float = FIT_FRACTION) -> Estimate:
    """The full estimate; when it does not fit, suggestions say what to change and what that gives."""
    kwargs = dict(n_examples=n_examples, num_gpus=num_gpus, fused_loss=fused_loss, price_per_hour=price_per_hour,
                  avg_tokens_per_example=avg_tokens_per_example, fraction=fraction)
    est = compute(cfg, model_info, gpu, tokens_per_microbatch=tokens_per_microbatch, **kwargs)
    if est.fits is False:
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
