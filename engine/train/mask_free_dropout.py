"""LoRA dropout whose mask is regenerated in backward instead of saved (LEVERS.mask_free_dropout).

peft's LoRA forward is `result + lora_B(lora_A(dropout(x))) * scaling`, with one nn.Dropout per projection: each of
a layer's 7 projections saves its own dropped copy of x (and the dropout's bool mask) for lora_A's weight gradient,
where without dropout q/k/v (and gate/up) share the one saved x. ~0.6-0.9 GiB for one layer's recompute of a 7B at
8.8k tokens. torch.compile does not help: inductor's partitioner never recomputes a random op.

Here the dropout of each projection draws only a one-element seed from torch's generator (on the device: no host
sync; torch's activation checkpoint replays the generator for the recompute, so the recompute draws the same seed),
and the keep mask is a pure function of (seed, element index): a counter-based hash of integer pointwise ops, which
the backward computes again. Saved for backward: x (shared with the other projections reading it), lora_A's weight
and the seed. Eagerly an autograd Function (DroppedLoraA) does it; in a compiled graph, where AOTAutograd's
partitioner chooses what is saved, the dropped linear sits in a checkpoint, whose nodes the partitioner recomputes
(in a graph that holds the layer's own checkpoint, LEVERS.checkpoint_in_graph, the Function, whose backward makes the
mask from the seed again where the weight gradient reads it: engine.train.layer_checkpoint says why).

Installed by swapping classes (install): each adapter's nn.Dropout becomes nn.Identity and its lora_A an nn.Linear
subclass that drops its own input. No parameter, buffer or key changes: the saved adapter, merging and export are
those of peft's dropout.

The hash in two forms, the same words and so the same masks: int64 with split multiplies (no product overflows: the
reference, and the one trained with), and (LEVERS.mask_hash32, measured and left off) int32 words with wrapping
multiplies from one flat index: fewer instructions an element in the sm_90 SASS of inductor's kernels
(benchmarks/mask_hash_ops.py), half the bytes of each eager step, yet 3 % slower and 0.3 GiB more on an H100
(benchmarks/results/user_path-s21-h100-2026-12-06.md).
"""

from __future__ import annotations

import contextlib

import torch

from engine.train import layer_checkpoint
from engine.train.speed import MASK_FREE_EAGER_CHUNK_ELEMENTS

_MASK32 = 0xFFFFFFFF
# Chris Wellons' "lowbias32" integer hash (xorshift-multiply, two rounds): every output bit depends on every input
# bit, so neighbouring indices give unrelated words. Both constants as published.
_HASH_MUL = (0x7FEB352D, 0x846CA68B)
_SEED_SALT = 0x9E3779B9   # keeps seed 0's key away from the hash of index 0


def _mul32(a, c: int):
    """(a * c) mod 2**32 for int64 tensors a in [0, 2**32): split so that no product leaves int64 (signed overflow
    would be undefined in the C++ and wrap differently in Triton)."""
    lo = a * (c & 0xFFFF)                          # < 2**48
    hi = ((a * (c >> 16)) & 0xFFFF) << 16          # < 2**32
    return (lo + hi) & _MASK32


def _hash32(h):
    h = h ^ (h >> 16)
    h = _mul32(h, _HASH_MUL[0])
    h = h ^ (h >> 15)
    h = _mul32(h, _HASH_MUL[1])
    return h ^ (h >> 16)


# The same hash in int32 words (the bits of the int64 form's word, read as signed): multiplies wrap mod 2**32, a right
# shift copies the sign bit, so each is masked to the logical shift's bits. A signed multiply that overflows is
# undefined in C++ (inductor's CPU kernels, ATen's eager ones): every compiler in use wraps it (SIMD mullo, imul,
# Triton's LLVM `mul` carries no nsw flag), and tests/test_mask_free_dropout.py pins the words to the int64 form's,
# eagerly and through inductor's generated code; benchmarks/mask_hash_ops.py checks Triton's on a GPU.
def _signed32(word: int) -> int:
    """A word in [0, 2**32) as the int32 of the same bits."""
    word %= 1 << 32
    return word - ((word >> 31) << 32)


_HASH_MUL_I32 = tuple(_signed32(c) for c in _HASH_MUL)
_SEED_SALT_I32 = _signed32(_SEED_SALT)
_SIGN32 = -(1 << 31)


def _lsr32(h, s: int):
    """h >> s as on unsigned 32-bit words, for int32 tensors (whose >> shifts the sign in)."""
    return (h >> s) & ((1 << (32 - s)) - 1)


def _hash32_i32(h):
    """_hash32's word for an int32 tensor of the same bits (wrapping multiplies)."""
    h = h ^ _lsr32(h, 16)
    h = h * _HASH_MUL_I32[0]
    h = h ^ _lsr32(h, 15)
    h = h * _HASH_MUL_I32[1]
    return h ^ _lsr32(h, 16)


def drop_threshold(p: float) -> int:
    """Dropout probability p as the hash words below which an element is dropped (of 2**32)."""
    return round(p * 2 ** 32)


def keep_scale(threshold: int) -> float:
    """1 / the keep probability, from the threshold: the kept values' scale (nn.Dropout's 1 / (1 - p), to ~1e-10).

    Integers only reach a compiled graph: dynamo makes a module's float attribute an input of the graph (a class's
    too), whose arithmetic AOTAutograd then rewrites into tensor ops outside the checkpoint of _forward, and the
    partitioner saves their full-size outputs; an int attribute is a constant."""
    return 2 ** 32 / (2 ** 32 - threshold)


def keep_mask(seed, shape, threshold: int, device, hash32: bool = False):
    """The dropout's keep mask (bool, `shape`): element i kept iff hash(i + key(seed)) >= threshold, so with
    probability 1 - threshold / 2**32. seed: an int64 tensor of one element, on `device`. The same seed gives the
    same mask, with either form of the hash (hash32: in int32 words)."""
    cols = shape[-1]
    rows = 1
    for n in shape[:-1]:
        rows *= n
    if hash32:   # the seed is below 2**31 (_SEED_HIGH): the same word as the int64 form's
        key32 = _hash32_i32(seed.reshape(()).to(torch.int32) ^ _SEED_SALT_I32)

        def rows_of(start, stop):
            return _keep_rows32(key32, start, stop, cols, threshold, device)
    else:
        key = _hash32((seed.reshape(()) ^ _SEED_SALT) & _MASK32)
        col = torch.arange(cols, device=device, dtype=torch.int64)

        def rows_of(start, stop):
            return _keep_rows(key, start, stop, col, threshold)
    if torch.compiler.is_compiling():
        # At once, and without Python arithmetic on the row count: a range() or min() over it makes dynamo guard on
        # its value, and the layer recompiled for every packed length.
        return rows_of(0, rows).reshape(shape)
    step = max(1, EAGER_CHUNK_ELEMENTS // cols)
    parts = [rows_of(start, min(rows, start + step)) for start in range(0, rows, step)]
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(shape)


# Eagerly (tests, a compile fallback) each step of the hash is a tensor of its own, 8 bytes an element in int64 (4 in
# int32): 0.8 GB for a 7B's down_proj input at 8.8k tokens. The mask is made this many elements at a time (128 MB of
# int64); the compiled graph fuses the hash into one kernel and makes it at once. The estimate counts what this
# allocates (engine.estimate.memory.mask_free_dropout_bytes).
EAGER_CHUNK_ELEMENTS = MASK_FREE_EAGER_CHUNK_ELEMENTS


def _keep_rows(key, start: int, stop: int, col, threshold: int):
    """The keep mask of rows start..stop, [stop - start, len(col)]."""
    # Each element's index in x plus the seed's key, from a row and a column vector: a compiled graph recomputes the
    # full-size tensors from these small ones in backward. The key goes into the row vector so that no full-size
    # tensor is shared between projections (a shared one, used on both sides of a matmul, would be saved).
    row = torch.arange(start, stop, device=col.device, dtype=torch.int64)[:, None] * col.numel() + key
    return _hash32((row + col) & _MASK32) >= threshold


def _keep_rows32(key, start: int, stop: int, cols: int, threshold: int, device):
    """_keep_rows in int32 words, the same mask: each element's index (mod 2**32, plus the key) from one flat range,
    which a compiled kernel reads off its own element index (from a row and a column vector it divides its index by
    the row length, and takes the remainder, in every element). The unsigned word's >= as the signed word's."""
    first = key + _signed32(start * cols)   # a one-element tensor: the additions wrap as the words do
    index = torch.arange((stop - start) * cols, device=device, dtype=torch.int32) + first
    return ((_hash32_i32(index) ^ _SIGN32) >= threshold + _SIGN32).reshape(stop - start, cols)


def _dropped(x, seed, threshold: int, hash32: bool = False):
    """x with the seed's mask applied and the kept values scaled by 1 / (1 - p), as nn.Dropout computes it."""
    return x * keep_mask(seed, x.shape, threshold, x.device, hash32) * keep_scale(threshold)


class DroppedLoraA(torch.autograd.Function):
    """F.linear(dropout(x), weight) with the mask regenerated from the seed in backward: saves x, weight, seed."""

    @staticmethod
    def forward(ctx, x, weight, seed, threshold, hash32=False):
        ctx.save_for_backward(x, weight, seed)
        ctx.threshold, ctx.hash32 = threshold, hash32
        return torch.nn.functional.linear(_dropped(x, seed, threshold, hash32), weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight, seed = ctx.saved_tensors
        keep = keep_mask(seed, x.shape, ctx.threshold, x.device, ctx.hash32)
        scale = keep_scale(ctx.threshold)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ weight) * keep * scale
        if ctx.needs_input_grad[1]:
            dropped = x * keep * scale
            grad_weight = grad.reshape(-1, grad.shape[-1]).t() @ dropped.reshape(-1, x.shape[-1])
        return grad_x, grad_weight, None, None, None


def _dropped_linear(x, weight, seed, threshold: int, hash32: bool = False):
    return torch.nn.functional.linear(_dropped(x, seed, threshold, hash32), weight)


# The seed's range: 31 bits, within every integer type a compiled graph's random kernels draw.
_SEED_HIGH = 2 ** 31


def _forward(self, x):
    threshold = self.mask_free_threshold
    if not self.training or threshold == 0:   # evaluation, samples: no dropout, as nn.Dropout in eval mode
        return torch.nn.functional.linear(x, self.weight, self.bias)
    # Drawn from torch's generator on the device (no host sync): the layer's activation checkpoint restores the
    # generator before its recompute, which draws the same seed, so the recompute drops what the forward dropped.
    seed = torch.randint(_SEED_HIGH, (1,), device=x.device)
    weight = self.weight
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    if autocast:  # what autocast would do to F.linear's inputs, done here: the backward runs outside autocast
        dtype = torch.get_autocast_dtype(device)
        x, weight = x.to(dtype), weight.to(dtype)
    with torch.autocast(device, enabled=False) if autocast else contextlib.nullcontext():
        if torch.compiler.is_compiling() and not layer_checkpoint.inside():
            # In a compiled graph the partitioner decides what is saved, and it would save each projection's mask
            # and dropped copy (x is used on both sides of a matmul); nodes inside a checkpoint are recomputed.
            out = torch.utils.checkpoint.checkpoint(_dropped_linear, x, weight, seed, threshold, self.mask_free_hash32,
                                                    use_reentrant=False, preserve_rng_state=False)
        else:
            out = DroppedLoraA.apply(x, weight, seed, threshold, self.mask_free_hash32)
    return out if self.bias is None else out + self.bias


_EAGER = "_lorapilot_dropout_free_linear"  # on a swapped lora_A's class: the class it was made from
_classes: dict[type, type] = {}


def _swap(lora_a, p: float, hash32: bool) -> None:
    eager = type(lora_a)
    if eager not in _classes:
        _classes[eager] = type(eager.__name__, (eager,), {
            "forward": _forward, "__module__": eager.__module__, "__qualname__": eager.__qualname__, _EAGER: eager})
    lora_a.__class__ = _classes[eager]
    lora_a.mask_free_threshold = drop_threshold(p)   # an int: see keep_scale
    lora_a.mask_free_hash32 = hash32


def install(model, hash32: bool = False) -> int:
    """For every plain LoRA adapter with dropout (p > 0) in the model: its nn.Dropout becomes nn.Identity and its
    lora_A drops its own input, mask-free (hash32: its mask hashed in int32 words, the plan's mask_hash32). Returns
    how many adapters. Parameters and state-dict keys unchanged."""
    n = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(dropouts, torch.nn.ModuleDict) or not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        variants = getattr(module, "lora_variant", {}) or {}
        for name, drop in list(dropouts.items()):
            a = lora_a[name] if name in lora_a else None
            if (not isinstance(drop, torch.nn.Dropout) or drop.p <= 0 or name in variants
                    or type(a) is not torch.nn.Linear):   # DoRA and other variants read the dropout themselves
                continue
            dropouts[name] = torch.nn.Identity()
            _swap(a, drop.p, hash32)
            n += 1
    return n


def installed(module) -> bool:
    return type(module).__dict__.get(_EAGER) is not None
