"""The fast path's choices, each with a line in train.log saying what was chosen and why.

On CUDA: packed rows with flex attention (a block-diagonal mask built from
position_ids, no padding waste) and Liger's fused kernels (RMSNorm, RoPE,
SwiGLU, and a linear cross-entropy that never materialises the fp32 logits).
On the CPU or without Triton: SDPA with the same block-diagonal mask, plain
PyTorch kernels. `training.memory: lean` adds activation offloading (the checkpointed
layer inputs wait in pinned host memory, copied on a side stream) and 8-bit optimizer
states, and caps the tokens per micro-batch.

LEVERS holds one switch per speed lever, all on: benchmarks/levers.py turns them off one
at a time to measure what each is worth. Nothing else changes them.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import Callable

from engine.estimate.memory import LEAN_TOKENS_PER_MICROBATCH


@dataclass
class Levers:
    flex_attention: bool = True     # packed rows through flex attention (else SDPA with the same mask)
    liger: bool = True              # Liger's fused kernels
    bf16_stream: bool = True        # frozen unquantised weights back to bf16 after kbit preparation
    whole_step: bool = True         # fast: a whole optimizer step per micro-batch (else micro_batch_size x seq)
    offload: bool = True            # lean: checkpointed activations offloaded to host memory
    tokens_per_microbatch: int | None = None  # a fixed packing budget instead of the mode's
    own_block_mask: bool = True     # flex: the packed row's block mask built eagerly (engine.train.block_mask)
                                    # instead of transformers' compiled create_block_mask, whose compile
                                    # stalled first steps for minutes at some row lengths
    compile_layers: bool = False    # each decoder layer through torch.compile (engine.train.compiled_layers);
                                    # off until measured
    fused_optimizer: bool = False   # fast: torch's fused AdamW for paged_adamw_32bit (the same AdamW math,
                                    # one kernel, no per-parameter syncs); off until measured


LEVERS = Levers()

# Model types Liger patches (liger_kernel.transformers.monkey_patch); others train without it.
LIGER_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
                     "granite", "olmo2")


def attention_for(device: str, packing: bool, log: Callable[[str], None]) -> str:
    if device == "cuda" and packing and LEVERS.flex_attention:
        log("attention: flex_attention (packed rows, block-diagonal mask from position_ids); the first steps "
            "compile its kernels, 1-3 minutes on a fresh machine")
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


def apply_liger(model, device: str, log: Callable[[str], None], fused_loss: bool = True) -> bool:
    """Patches the loaded base model in place with Liger's kernels where supported.

    fused_loss False: the plain loss through lm_head's forward (a sharded head whose gathering could not be
    hooked before the loss)."""
    ok, why = liger_available(device)
    if ok and not LEVERS.liger:
        ok, why = False, "switched off (benchmark lever)"
    model_type = getattr(model.config, "model_type", "?")
    if ok and model_type not in LIGER_MODEL_TYPES:
        ok, why = False, f"architecture {model_type} not covered"
    if not ok:
        log(f"kernels: plain PyTorch ({why})")
        return False
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    if LEVERS.compile_layers and fused_loss:
        # dynamo cannot trace Liger's in-layer autograd Functions (an AssertionError in its RMSNorm on the
        # H200, 2026-12-02); inductor fuses those element-wise parts itself, so only the loss stays Liger's.
        _apply_liger_kernel_to_instance(model=model, rope=False, rms_norm=False, swiglu=False)
        log("kernels: Liger (fused linear cross-entropy); RMSNorm, RoPE and SwiGLU left to the compiled layers")
    elif fused_loss:
        _apply_liger_kernel_to_instance(model=model)
        log("kernels: Liger (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU)")
    else:
        _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)
        log("kernels: Liger (RMSNorm, RoPE, SwiGLU); the plain loss: the sharded output head cannot be gathered "
            "ahead of the fused one")
    return True


def token_budget(cfg, device: str, log: Callable[[str], None], memory: str = "fast") -> int | None:
    """Tokens per micro-batch when packing; None for classic padded micro-batches.

    `memory` is the resolved mode (fast or lean; see resolve_memory).
    """
    t = cfg.training
    if not t.packing:
        log(f"batching: padded micro-batches of {t.micro_batch_size} examples")
        return None
    per_step = t.micro_batch_size * t.gradient_accumulation_steps
    if LEVERS.tokens_per_microbatch:
        log(f"batching: packed, up to {LEVERS.tokens_per_microbatch} tokens per micro-batch (benchmark lever)")
        return LEVERS.tokens_per_microbatch
    if device == "cuda" and memory == "fast" and LEVERS.whole_step:
        # The 4-bit path has a large fixed cost per forward pass: the fewer, fuller micro-batches the better.
        budget = per_step * t.max_seq_length
        log(f"batching: packed, up to {budget} tokens per micro-batch (a whole optimizer step when it fits)")
        return budget
    if device == "cuda" and memory == "lean":
        # Tokens per micro-batch decide the working memory; one micro-batch per step where the cap allows,
        # since each forward pass of the 4-bit path has a large fixed cost.
        budget = min(per_step * t.max_seq_length, max(t.max_seq_length, LEAN_TOKENS_PER_MICROBATCH))
        log(f"batching: lean, packed up to {budget} tokens per micro-batch")
        return budget
    budget = t.micro_batch_size * t.max_seq_length
    log(f"batching: packed, up to {budget} tokens per micro-batch (micro_batch_size x max_seq_length)")
    return budget


def optimizer_for(cfg, device: str, log: Callable[[str], None], memory: str = "fast", sharded: bool = False) -> str:
    """bitsandbytes' paged and 8-bit optimizers are CUDA features; lean keeps the states in 8 bits."""
    name = cfg.training.optimizer
    if sharded and name != "adamw_torch":
        # bitsandbytes' update kernels have no DTensor rule (NotImplementedError on H200 x2); torch's AdamW updates
        # each rank's shard of the adapters.
        log(f"optimizer: adamw_torch ({name} cannot update sharded parameters)")
        return "adamw_torch"
    if device == "cpu" and name != "adamw_torch":
        log(f"optimizer: {name} needs a GPU; using adamw_torch on the CPU")
        return "adamw_torch"
    if device == "cuda" and memory == "lean" and name == "paged_adamw_32bit":
        log("optimizer: paged_adamw_8bit (lean: optimizer states in 8 bits)")
        return "paged_adamw_8bit"
    if device == "cuda" and name == "paged_adamw_32bit" and LEVERS.fused_optimizer:
        # bitsandbytes' optimizers synchronise the device after every parameter (448 times a step on a 7B with
        # all-linear LoRA), which stalls a host-bound step; paging buys nothing for adapters' few-MB states.
        log("optimizer: adamw_torch_fused (the same AdamW in 32 bits: one fused kernel, no per-parameter syncs)")
        return "adamw_torch_fused"
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

    if not LEVERS.bf16_stream:
        log("precision: unquantised weights left in fp32 (benchmark lever)")
        return 0
    n = 0
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32 and p.__class__.__name__ != "Params4bit":
            p.data = p.data.to(torch.bfloat16)
            n += p.numel()
    log(f"precision: {n:,} frozen unquantised parameters kept in bf16 (residual stream bf16)")
    return n


def activation_offload(model, device: str, memory: str, log: Callable[[str], None]):
    """A context for each training step: lean offloads the saved activations to pinned host memory.

    TRL's OffloadActivations (a saved-tensors hook): with gradient checkpointing what autograd saves outside
    the checkpointed layers is each layer's input, so those go to the host during forward, on a side stream,
    and come back ahead of their layer in backward; the lm_head's are kept.
    """
    if memory != "lean" or not LEVERS.offload:
        return contextlib.nullcontext()
    if device != "cuda":
        log("activations: kept on the device (offloading needs a GPU)")
        return contextlib.nullcontext()
    from trl.models.activation_offloading import get_act_offloading_ctx_manager

    log("activations: offloaded to pinned host memory during forward, fetched back ahead of backward (TRL)")
    return get_act_offloading_ctx_manager(model, warn_if_no_head=False)


def resolve_memory(cfg, device: str, gpu_memory_gib: float | None, tokens_fast: int | None,
                   log: Callable[[str], None], n_ranks: int = 1) -> str:
    """training.memory auto -> fast when the estimate says the fast path fits this GPU, else lean.

    With several ranks the estimate also settles parallelism auto first (a sharded model leaves more room).
    """
    mode = cfg.training.memory
    if mode != "auto":
        return mode
    if device != "cuda" or not gpu_memory_gib:
        return "fast"
    from engine.errors import UserError
    from engine.estimate import FIT_FRACTION
    from engine.estimate.estimator import on_detected_gpu

    try:
        est = on_detected_gpu(cfg, gpu_memory_gib, num_gpus=n_ranks, tokens_per_microbatch=tokens_fast,
                              fused_loss=liger_available(device)[0])
    except UserError as e:  # no config to estimate from: the fast path, and the OOM hint if it does not fit
        log(f"memory: fast (no estimate: {e})")
        return "fast"
    if est.memory_mode == "fast":
        log(f"memory: fast (estimate {est.device_total_gib:.1f} GiB of {gpu_memory_gib:.0f})")
    else:
        log(f"memory: lean (the fast path would need over {FIT_FRACTION:.0%} of {gpu_memory_gib:.0f} GiB; "
            f"lean ~{est.device_total_gib:.1f} GiB)")
    return est.memory_mode
