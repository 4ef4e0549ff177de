"""Optimizer steps, wall-clock time and cost of a run."""

from __future__ import annotations

import math

from engine.estimate.params import Architecture, ParamCounts

# Fraction of the datasheet dense 16-bit peak a LoRA run sustains (model FLOPs
# utilisation). nf4 is measured: lorapilot's default path on an H100 (989 TFLOP/s
# datasheet) trained Llama-2-7B at 8,260 tok/s with checkpointing, 6N FLOPs a token,
# about 0.34 (benchmarks/results/throughput-h100-2026-11-22-bf16stream.md).
# int8 and none are not measured yet: LLM.int8 pays more per matmul than NF4
# (published QLoRA/LoRA throughput), plain 16-bit LoRA runs closest to peak.
MFU_BY_QUANTIZATION = {"nf4": 0.34, "int8": 0.20, "none": 0.45}


def steps(n_examples: int | None, micro_batch_size: int, grad_accum: int, num_gpus: int,
          num_epochs: float, max_steps: int) -> tuple[int | None, int | None]:
    """(steps per epoch, total optimizer steps); None where the example count is needed and unknown."""
    per_epoch = None
    if n_examples is not None:
        per_epoch = max(1, math.ceil(n_examples / (micro_batch_size * grad_accum * num_gpus)))
    if max_steps and max_steps > 0:
        return per_epoch, max_steps
    if per_epoch is None:
        return None, None
    return per_epoch, max(1, math.ceil(per_epoch * num_epochs))


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


def train_seconds(total_steps: int, tokens_per_step_per_gpu: int, flops_token: float, tflops: float,
                  quantization: str) -> float:
    """Data-parallel GPUs each do their share at once, so time is one GPU's share."""
    return total_steps * tokens_per_step_per_gpu * flops_token / (tflops * 1e12 * MFU_BY_QUANTIZATION[quantization])


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


def run_seconds(arch: Architecture, params: ParamCounts, lora_params: int, plan, machine, gpu, quantization: str,
                gradient_checkpointing: bool) -> float | None:
    """Seconds of training for the plan's micro-batches (engine.plan.RunPlan): the tokens they really hold (not
    max_seq_length per example) at the GPU's measured rate (MFU_BY_QUANTIZATION); on the CPU, this machine's
    cores. None without a rate."""
    if plan.train_tokens is None or plan.max_steps is None:
        return None
    examples = max(1, plan.max_steps * plan.examples_per_step)
    per_example = max(1, plan.train_tokens // examples)
    fpt = flops_per_token(arch, params, lora_params, per_example, gradient_checkpointing)
    per_rank_tokens = plan.train_tokens / max(1, plan.processes)
    if machine.device != "cuda":
        passes = (plan.micro_batches or 0) / max(1, plan.processes)
        return per_rank_tokens * fpt / (cpu_tflops() * 1e12) + passes * CPU_SECONDS_PER_MICROBATCH
    if gpu is None or not gpu.tflops_16bit:
        return None
    return per_rank_tokens * fpt / (gpu.tflops_16bit * 1e12 * MFU_BY_QUANTIZATION[quantization])


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
