"""Optimizer steps, wall-clock time and cost of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.estimate.params import Architecture, ParamCounts
from engine.estimate.speed_table import path_of, speed_basis

if TYPE_CHECKING:
    from engine.estimate.gpus import GpuSpec
    from engine.plan import Machine, RunPlan

def flops_per_token(arch: Architecture, params: ParamCounts, lora_params: int, tokens_per_example: int,
                    gradient_checkpointing: bool) -> float:
    """Training FLOPs per token.

    Forward is 2 FLOPs per matmul weight. Backward of a frozen base needs only
    the input gradients (another 2N, not the 4N of full fine-tuning, because no
    weight gradients are formed); checkpointing repeats the forward. Causal
    attention adds 2 x q_dim x sequence per layer forward, twice that backward.
    Adapters cost 6 FLOPs per parameter like any trained weight.
    """
    matmul = params.linear + arch.vocab * arch.hidden      # lm_head multiplies even when tied
    attention = 2 * arch.q_dim * tokens_per_example * arch.layers
    forward = 2 * matmul + attention
    backward = 2 * matmul + 2 * attention
    recompute = forward if gradient_checkpointing else 0.0
    return forward + backward + recompute + 6 * lora_params


# This machine's CPU when there is no GPU: fp32 matmuls through PyTorch's CPU kernels, per core. A conservative
# figure for a recent x86 core with AVX2/AVX-512 FMA under PyTorch's oneDNN/MKL (a small model's matmuls are
# far from peak); the run trains in fp32 with plain PyTorch kernels.
CPU_GFLOPS_PER_CORE = 20.0
# On the CPU a micro-batch costs far more than its FLOPs: the Trainer's step, bitsandbytes' 4-bit layers on the CPU,
# the callbacks. Measured with the demo (4 layers, ~250 tokens a micro-batch): 5.97 s a step on a 2-core machine
# shared with other test runs (2026-12-03), so an upper bound for a quiet machine.
CPU_SECONDS_PER_MICROBATCH = 6.0


def cpu_tflops() -> float:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores * CPU_GFLOPS_PER_CORE / 1000


@dataclass(frozen=True)
class RunTime:
    seconds: float | None
    basis: str               # where the rate comes from, in the user's words ("measured on H200", ...)
    detail: str = ""         # the path, the fraction of the peak and the measured speeds behind it


def run_seconds(arch: Architecture, params: ParamCounts, lora_params: int, plan: RunPlan, machine: Machine,
                gpu: GpuSpec | None, quantization: str, gradient_checkpointing: bool) -> RunTime:
    """Training time for the plan's micro-batches (engine.plan.RunPlan): the tokens they really hold (not
    max_seq_length per example) at the rate the speed table measured for this card and path
    (engine.estimate.speed_table); on the CPU, this machine's cores. seconds None without a rate."""
    if plan.train_tokens is None or plan.max_steps is None:
        return RunTime(None, "steps unknown")
    examples = max(1, plan.max_steps * plan.examples_per_step)
    per_example = max(1, plan.train_tokens // examples)
    fpt = flops_per_token(arch, params, lora_params, per_example, gradient_checkpointing)
    per_rank_tokens = plan.train_tokens / max(1, plan.processes)
    if machine.device != "cuda":
        passes = (plan.micro_batches or 0) / max(1, plan.processes)
        return RunTime(per_rank_tokens * fpt / (cpu_tflops() * 1e12) + passes * CPU_SECONDS_PER_MICROBATCH,
                       "this machine's CPU", f"{CPU_GFLOPS_PER_CORE:g} GFLOP/s a core and "
                       f"{CPU_SECONDS_PER_MICROBATCH:g} s a micro-batch (measured with the demo)")
    basis = speed_basis(gpu, path_of(plan.memory, plan.packing), quantization) if gpu is not None else None
    if basis is None or gpu is None or not gpu.tflops_16bit:
        return RunTime(None, f"no speed figure for {gpu.name if gpu else 'this GPU'}")
    return RunTime(per_rank_tokens * fpt / (gpu.tflops_16bit * 1e12 * basis.fraction), basis.text, basis.detail)


def duration_text(seconds: float | None) -> str:
    """An estimated duration, one wording everywhere (the wizard, `lorapilot estimate`, the sweep)."""
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
