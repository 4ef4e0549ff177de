"""The fast path's choices, each with a line in train.log saying what was chosen and why.

On CUDA: packed rows with flex attention (a block-diagonal mask built from
position_ids, no padding waste) and Liger's fused kernels (RMSNorm, RoPE,
SwiGLU, and a linear cross-entropy that never materialises the fp32 logits).
On the CPU or without Triton: SDPA with the same block-diagonal mask, plain
PyTorch kernels.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

LEAN_TOKENS_PER_MICROBATCH = 4096

# Model types Liger patches (liger_kernel.transformers.monkey_patch); others train without it.
LIGER_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
                     "granite", "olmo2")


def attention_for(device: str, packing: bool, log: Callable[[str], None]) -> str:
    if device == "cuda" and packing:
        log("attention: flex_attention (packed rows, block-diagonal mask from position_ids)")
        return "flex_attention"
    log("attention: sdpa" + (" (packed rows, block-diagonal mask from position_ids)" if packing else ""))
    return "sdpa"


def liger_available(device: str) -> tuple[bool, str]:
    if device != "cuda":
        return False, "no GPU"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel not installed"
    if importlib.util.find_spec("triton") is None:
        return False, "no Triton"
    return True, ""


def apply_liger(model, device: str, log: Callable[[str], None]) -> bool:
    """Patches the loaded base model in place with Liger's kernels where supported."""
    ok, why = liger_available(device)
    model_type = getattr(model.config, "model_type", "?")
    if ok and model_type not in LIGER_MODEL_TYPES:
        ok, why = False, f"architecture {model_type} not covered"
    if not ok:
        log(f"kernels: plain PyTorch ({why})")
        return False
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model)
    log("kernels: Liger (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU)")
    return True


def token_budget(cfg, device: str, log: Callable[[str], None]) -> int | None:
    """Tokens per micro-batch when packing; None for classic padded micro-batches."""
    t = cfg.training
    if not t.packing:
        log(f"batching: padded micro-batches of {t.micro_batch_size} examples")
        return None
    per_step = t.micro_batch_size * t.gradient_accumulation_steps
    if device == "cuda" and t.memory == "fast":
        # The 4-bit path has a large fixed cost per forward pass: the fewer, fuller micro-batches the better.
        budget = per_step * t.max_seq_length
        log(f"batching: packed, up to {budget} tokens per micro-batch (a whole optimizer step when it fits)")
        return budget
    if device == "cuda":  # lean
        # Activations scale with tokens per micro-batch; a few thousand keeps the fixed cost per
        # forward pass of the 4-bit path from dominating while the peak stays small.
        budget = max(t.max_seq_length, LEAN_TOKENS_PER_MICROBATCH)
        log(f"batching: lean, packed up to {budget} tokens per micro-batch")
        return budget
    budget = t.micro_batch_size * t.max_seq_length
    log(f"batching: packed, up to {budget} tokens per micro-batch (micro_batch_size x max_seq_length)")
    return budget


def optimizer_for(cfg, device: str, log: Callable[[str], None]) -> str:
    """bitsandbytes' paged and 8-bit optimizers are CUDA features; lean keeps the states in 8 bits."""
    name = cfg.training.optimizer
    if device == "cpu" and name != "adamw_torch":
        log(f"optimizer: {name} needs a GPU; using adamw_torch on the CPU")
        return "adamw_torch"
    if device == "cuda" and cfg.training.memory == "lean" and name == "paged_adamw_32bit":
        log("optimizer: paged_adamw_8bit (lean: optimizer states in 8 bits)")
        return "paged_adamw_8bit"
    return name


def keep_unquantised_16bit(model, log: Callable[[str], None]) -> int:
    """Casts the frozen fp32 parameters back to bf16: their dtype as loaded, so nothing is rounded.

    peft's prepare_model_for_kbit_training upcasts every unquantised weight (norms, embeddings, lm_head)
    to fp32, which makes the whole residual stream fp32: each 4-bit layer's output is cast back to fp32,
    RoPE and flex attention run on fp32 q/k/v, and the lm_head matmul is fp32. On the H100 undoing it
    trains 1.36-1.40x faster with 30-35 % less memory (benchmarks/results/throughput-h100-*.md). bf16
    only: its range needs no fp32 norms, fp16's does. Called after the adapters exist: trainable
    parameters (the adapters, fp32) are left alone. Returns the parameters cast.
    """
    import torch

    n = 0
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32 and p.__class__.__name__ != "Params4bit":
            p.data = p.data.to(torch.bfloat16)
            n += p.numel()
    log(f"precision: {n:,} frozen unquantised parameters kept in bf16 (residual stream bf16)")
    return n
