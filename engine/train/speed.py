"""The fast path's parts, applied as the run's plan (engine.plan) chose them.

On CUDA: packed rows (no padding waste) through varlen flash attention on Ampere and newer
(engine.train.varlen_attention: each example's causal triangle from its boundaries), else flex
attention (a block-diagonal mask built from position_ids), and Liger's fused kernels (RMSNorm, RoPE,
SwiGLU, and a linear cross-entropy that never materialises the fp32 logits).
On the CPU or without Triton: SDPA with the same block-diagonal mask, plain
PyTorch kernels. `training.memory: lean` adds activation offloading (the checkpointed
layer inputs wait in pinned host memory, copied on a side stream) and 8-bit optimizer
states, and caps the tokens per micro-batch. The fast compiled path can offload the first
layers' inputs only (LEVERS.offload_layers, PartialOffload), against what compiling adds.

LEVERS holds one switch per speed lever, all on: benchmarks/levers.py turns them off one
at a time to measure what each is worth. Nothing else changes them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Levers:
    flex_attention: bool = True     # packed rows through flex attention (else SDPA with the same mask)
    varlen_attention: bool = True   # packed rows through torch's variable-length flash attention instead of flex
                                    # where it runs (engine.train.varlen_attention, engine.plan.attention_for)
    liger: bool = True              # Liger's fused kernels
    bf16_stream: bool = True        # frozen unquantised weights back to bf16 after kbit preparation
    whole_step: bool = True         # fast: a whole optimizer step per micro-batch (else micro_batch_size x seq)
    offload: bool = True            # lean: checkpointed activations offloaded to host memory
    offload_layers: int = 0         # fast compiled: the first this many decoder layers' checkpointed inputs offloaded
                                    # to pinned host memory (partial_offload; engine.plan.offload_layers_for): ~70 MB a
                                    # layer at 8,786 tokens on a 7B, against the compiled layers' +0.6 GiB. 0 (off)
                                    # until measured on the GPU: the copies must not cost the compiled path its speed
    mask_free_dropout: bool = True  # compiled layers: LoRA dropout whose mask is regenerated in backward from a saved
                                    # seed (engine.train.mask_free_dropout; engine.plan.mask_free_dropout_for): each
                                    # projection saves no dropped copy of its input nor mask. On an H100 beside peft's
                                    # dropout (user_path-s20-h100-2026-12-06.md): 8.48 against 8.93 GiB on Llama-2-7B,
                                    # 10.64 against 11.06 on Llama-3-8B, lean 5.81 against 6.28, as fast or faster
    mask_hash32: bool = False       # the mask-free dropout's hash in int32 words (wrapping multiplies) from one flat
                                    # index, instead of int64 with split multiplies: the same masks, fewer sm_90
                                    # instructions an element (benchmarks/mask_hash_ops.py), yet slower on an H100:
                                    # 10,357 against 10,686 tok/s and 8.8 against 8.5 GiB on Llama-2-7B, side by
                                    # side (user_path-s21-h100-2026-12-06.md). Measured, left off
    lean_stretch: bool = False      # lean: one micro-batch per step when the fullest step is within
                                    # engine.plan.LEAN_STRETCH of the cap; off until measured
    tokens_per_microbatch: int | None = None  # a fixed packing budget instead of the mode's
    own_block_mask: bool = True     # flex: the packed row's block mask built eagerly (engine.train.block_mask)
                                    # instead of transformers' compiled create_block_mask, whose compile
                                    # stalled first steps for minutes at some row lengths
    compile_mode: str = "default"   # torch.compile's mode where the plan compiles the decoder layers (engine.plan
                                    # compile_for): "reduce-overhead" replays the layers as CUDA graphs (cudagraph
                                    # trees), one graph per micro-batch length. On the H200 (2026-12-03) the
                                    # trainer died of a segfault before step 1
    pad_multiple: int = 0           # packed micro-batches padded up to a multiple of this many tokens (a pad
                                    # example no label reads): a few lengths repeat, for CUDA graphs; 0 = none
    trim_guards: bool = True        # compiled layers: dynamo checks only the guards that can change in a run (tensors,
                                    # grad mode and global state, training and adapter flags): each layer call's
                                    # guard check cost ~0.7 ms of host time on the H200, 64 calls a step
                                    # (engine.train.compiled_layers.guards_that_can_change)
    cpp_wrapper: bool = False       # compiled layers: inductor's wrapper in C++ instead of Python (fewer host
                                    # microseconds per kernel launch). Measured once: 1.03x, within the run-to-run
                                    # noise, for ~30 s more compile and a host C++ compiler: off
    graph_dequant: bool = True      # compiled layers: NF4 weights dequantised by torch ops inside the compiled graph (one
                                    # generated kernel each) instead of bitsandbytes' ops, whose Python costs ~130 us
                                    # of host time per call (engine.train.graph_dequant). Measured on the H200:
                                    # 1.04x on Llama-2-7B for +0.30 GiB peak (user_path-s13-h200-2026-12-04)
    checkpoint_in_graph: bool = True   # compiled layers: the activation checkpoint inside the compiled region (torch's
                                    # checkpoint under dynamo) instead of transformers' around it: the backward graph
                                    # recomputes only what it reads, so not down_proj's 4-bit matmul and adapter (~7 %
                                    # of the base matmul work on Llama-2-7B), one graph launch less per layer
                                    # (engine.train.compiled_layers._checkpointed). In every layer, measured on the
                                    # H100: 1.13x on Llama-2-7B but 9.7 GiB against 8.5 (its one backward graph keeps
                                    # more MLP-wide buffers at once), and with smaller micro-batches to fit, slower
                                    # than the default (user_path-s22/s23-h100-2026-12-06). So in the first layers
                                    # only, whose backward runs once the later layers' inputs are freed
                                    # (engine.plan.checkpoint_in_graph_layers_for): 1.08x on Llama-2-7B (11,054
                                    # against 10,261 tok/s), 1.02x on Llama-3-8B, at the same peak to 1 MB
    checkpoint_in_graph_layers: int | None = None  # a fixed count of leading layers instead of the plan's rule
    fused_optimizer: bool = True    # fast: torch's fused AdamW for paged_adamw_32bit (the same AdamW math, one
                                    # kernel, no per-parameter syncs; engine.plan.optimizer_for)


LEVERS = Levers()


VARLEN_TORCH = (2, 9)   # torch.nn.attention.varlen.varlen_attn, torch's public variable-length attention
VARLEN_WINDOW_TORCH = (2, 12)   # its window_size: a sliding window (Mistral v0.1, Phi-3-mini-4k, Gemma-2/3)


@functools.cache   # the installed torch does not change under a process; the estimate asks for every plan
def torch_version() -> tuple[int, int] | None:
    """The installed torch's (major, minor), read from the package's metadata, not by importing torch: the estimate
    plans with it in the app, which does not load torch (engine.plan.Machine)."""
    import importlib.metadata
    import re

    try:
        found = re.match(r"(\d+)\.(\d+)", importlib.metadata.version("torch"))
    except importlib.metadata.PackageNotFoundError:
        return None
    return None if found is None else (int(found[1]), int(found[2]))


def varlen_kernel_available() -> bool:
    """The installed torch has the variable-length attention kernel."""
    version = torch_version()
    return version is not None and version >= VARLEN_TORCH


def varlen_window_available() -> bool:
    """The installed torch's variable-length attention takes a sliding window."""
    version = torch_version()
    return version is not None and version >= VARLEN_WINDOW_TORCH


def liger_available(device: str) -> tuple[bool, str]:
    if device != "cuda":
        return False, "no GPU"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel not installed"
    if importlib.util.find_spec("triton") is None:
        return False, "no Triton"
    return True, ""


def apply_liger(model, use: bool, log: Callable[[str], None], fused_loss: bool = True,
                compiled: bool = False) -> bool:
    """Patches the loaded base model in place with Liger's kernels where the plan (engine.plan) chose them.

    fused_loss False: the plain loss through lm_head's forward (a sharded head whose gathering could not be
    hooked before the loss). compiled: the plan compiles the decoder layers (RunPlan.compile_layers), which then
    keep transformers' own RMSNorm, RoPE and SwiGLU. Returns whether Liger was applied."""
    if not use:
        return False  # the plan's line in train.log says why
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    if compiled and fused_loss:
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


def activation_offload(model, offload: bool, layers: int = 0):
    """A context for each training step: lean offloads the saved activations to pinned host memory; the fast
    compiled plan, where it says so, the first `layers` decoder layers' inputs only (partial_offload). The plan
    decides (RunPlan.offload, RunPlan.offload_layers); its line in train.log says so.

    TRL's OffloadActivations (a saved-tensors hook): with gradient checkpointing (non-reentrant: torch's checkpoint
    saves each layer's positional inputs through the saved-tensors hooks around it, its own hook inside) what
    autograd saves outside the checkpointed layers is each layer's input, so those go to the host during forward,
    on a side stream, and come back when their layer's backward needs them; the lm_head's are kept.
    """
    if offload:
        from trl.models.activation_offloading import get_act_offloading_ctx_manager

        return get_act_offloading_ctx_manager(model, warn_if_no_head=False)
    if layers <= 0:
        return contextlib.nullcontext()
    from trl.models.activation_offloading import OffloadActivations

    from engine.train.compiled_layers import decoder_layers

    manager = OffloadActivations(max_fwd_stash_size=PARTIAL_OFFLOAD_STASH)
    manager.update_model_params(model)
    return PartialOffload(decoder_layers(model)[:layers], manager)


# Partial offload: offloaded layer inputs still on the GPU at once. TRL's forward stash keeps the newest
# max_fwd_stash_size offloaded tensors (5 by default) alive until the backward reaches them: of 8 layers that would
# free 3. One suffices here: each layer input's copy to the host is waited for only when the next layer's input is
# saved, a whole layer's forward later (~70 MB: ~1.5 ms at PCIe 5's ~50 GB/s, against milliseconds of 4-bit layer).
# The estimate keeps this many on the GPU (engine.estimate.memory). The way back is not overlapped: TRL copies each
# input back when its layer's backward first asks, and the compute stream waits for it (~1.5 ms a layer, 8 in a
# ~0.7 s step on a 7B): what the GPU measurement decides (benchmarks/user_path.py's compiledoff side).
PARTIAL_OFFLOAD_STASH = 1

# Eager mask-free LoRA dropout (engine.train.mask_free_dropout) makes each keep mask this many elements at a time: each
# step of its hash is a full-size tensor of its own (128 MB of int64 a step, 64 MB in int32 words). Here, torch-free,
# for the estimate (engine.estimate.memory.mask_free_dropout_bytes).
MASK_FREE_EAGER_CHUNK_ELEMENTS = 1 << 24


class PartialOffload:
    """A step context that offloads only the given decoder layers' saved inputs (the first ones: their backward
    comes last, after the peak of the deep layers' recompute) through `manager`, TRL's OffloadActivations on the
    GPU (any saved-tensors hooks object in tests).

    saved_tensors_hooks form a stack on which the innermost wins (TRL's NoOpManager relies on it): for the step the
    manager is entered (its per-step reset, its streams synchronised at the exit) with a no-op above it, so the
    embeddings, the other layers, the final norm, lm_head and Liger's modules keep theirs; each chosen layer's call
    pushes the manager's own pack and unpack above the no-op. Inside the layer torch's checkpoint pushes its hook
    above that, so only the checkpoint's saved inputs reach the manager. The module hooks sit outside the
    checkpoint (transformers checkpoints forward, not __call__) and outside the compiled forward
    (engine.train.compiled_layers): the recompute in backward runs neither.
    """

    def __init__(self, layers: list, manager) -> None:
        from torch.autograd.graph import saved_tensors_hooks
        from trl.models.activation_offloading import NoOpManager

        self.layers = list(layers)
        self.manager = manager
        self.noop = NoOpManager()
        self.into_manager = saved_tensors_hooks(manager.pack_hook, manager.unpack_hook)
        self.active = False
        self.pushed: list[bool] = []   # per layer call in flight: whether its pre-hook pushed the manager's hooks
        self.stack: contextlib.ExitStack | None = None
        for layer in self.layers:
            layer.register_forward_pre_hook(self._enter_layer)
            layer.register_forward_hook(self._leave_layer, always_call=True)

    def _enter_layer(self, module, args) -> None:
        import torch

        push = self.active and torch.is_grad_enabled()   # evaluation and samples: nothing is saved, nothing moves
        if push:
            self.into_manager.__enter__()
        self.pushed.append(push)

    def _leave_layer(self, module, args, output) -> None:
        if self.pushed.pop():
            self.into_manager.__exit__()

    def __enter__(self):
        stack = contextlib.ExitStack()
        stack.enter_context(self.manager)
        stack.enter_context(self.noop)
        self.stack = stack
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.__exit__(*exc)
