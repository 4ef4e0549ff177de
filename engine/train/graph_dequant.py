"""For the compiled layers: each NF4 projection's weight dequantised by plain torch ops inside the compiled graph.

bitsandbytes' 4-bit matmul reaches a compiled layer as its torch.library ops (gemm_4bit in the forward and the
recompute, dequantize_blockwise + dequantize_4bit in the backward), whose CUDA implementations are Python: ~130 us
of host time per gemm_4bit call, 448 calls a step on Llama-2-7B, while the GPU waits on the host a third of the
step (benchmarks/results/user_path-s12-h200-2026-12-03/call1/profile-compiled.md). Written as torch ops, the same
arithmetic is one inductor-generated kernel per projection that the compiled wrapper launches, then the matmul.

Same numbers as bitsandbytes: the nested absmax decoded (its 8-bit code x the block's scale, + offset), then each
weight's NF4 value from the quant state's code table x its block's absmax, in fp32, rounded once to the compute
dtype, as bitsandbytes' kernels compute it (tests/test_graph_dequant.py checks it bit for bit).

The dequantised weight is recomputed for the backward, never saved: it sits in an activation checkpoint, which the
compiler's partitioner must recompute. Saving it would hold a layer's 16-bit weights (0.4 GiB on a 7B) through
its backward, where the eager path keeps only the packed 4-bit weight. Inside a layer's own checkpoint
(LEVERS.checkpoint_in_graph) that checkpoint recomputes it, and a nested one would get it saved
(engine.train.layer_checkpoint).

Only inside a compiled frame: called eagerly (evaluation, decoding, after a compile fallback) the projection runs
bitsandbytes' own path, which is the faster one there.
"""

from __future__ import annotations

from typing import Any

# The dequantised weight recomputed in the backward rather than saved (the checkpoint below). A switch only so that a
# test can show what the partitioner saves without it.
RECOMPUTE_WEIGHT = True
_EAGER = "_lorapilot_eager_linear4bit"  # on a swapped projection's class: the bitsandbytes class it was made from
_classes: dict[type, type] = {}


def dequantize_nf4(packed, quant_state, dtype):
    """The [out, in] weight of an NF4 quant state, in dtype, from torch ops only."""
    inner = quant_state.state2 if quant_state.nested else None
    return _dequantize(packed, quant_state.absmax, quant_state.code, inner and inner.absmax, inner and inner.code,
                       quant_state.offset if inner is not None else None, tuple(quant_state.shape),
                       quant_state.blocksize, inner.blocksize if inner is not None else 0, dtype)


def _dequantize(packed, absmax, code, inner_absmax, inner_code, offset, shape: tuple[int, int], blocksize: int,
                inner_blocksize: int, dtype):
    """dequantize_nf4 over the quant state's parts (tensors and numbers: what dynamo traces into a checkpoint)."""
    import torch

    rows, cols = shape
    n = rows * cols
    if inner_absmax is not None:  # nested: the blocks' absmax themselves 8-bit, in blocks of inner_blocksize
        blocks = torch.arange(absmax.numel(), device=absmax.device) // inner_blocksize
        absmax = inner_code[absmax.long()] * inner_absmax[blocks] + offset
    codes = packed.reshape(-1)
    nibbles = torch.stack((codes >> 4, codes & 15), dim=-1).reshape(-1)[:n]  # the high nibble is the first weight
    values = code[nibbles.long()] * absmax.float()[torch.arange(n, device=codes.device) // blocksize]
    return values.to(dtype).reshape(rows, cols)


def _forward(self, x):
    import torch

    if not torch.compiler.is_compiling():
        return type(self).__dict__[_EAGER].forward(self, x)
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    from engine.train import layer_checkpoint

    fix_4bit_weight_quant_state_from_module(self)
    state = self.weight.quant_state
    inp_dtype = x.dtype
    dtype = self.compute_dtype or x.dtype
    x = x.to(dtype)
    inner = state.state2 if state.nested else None
    parts = (self.weight, state.absmax, state.code, inner and inner.absmax, inner and inner.code,
             state.offset if inner is not None else None, tuple(state.shape), state.blocksize,
             inner.blocksize if inner is not None else 0, dtype)
    if RECOMPUTE_WEIGHT and not layer_checkpoint.inside():
        weight = torch.utils.checkpoint.checkpoint(_dequantize, *parts, use_reentrant=False)
    else:
        weight = _dequantize(*parts)
    bias = None if self.bias is None else self.bias.to(dtype)
    return torch.nn.functional.linear(x, weight, bias).to(inp_dtype)


def swappable(module) -> bool:
    """A bitsandbytes 4-bit projection whose weight this module can dequantise: NF4, a whole number of blocks."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return False
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    if not isinstance(module, Linear4bit) or state is None or state.quant_type != "nf4":
        return False
    rows, cols = state.shape
    return (rows * cols) % state.blocksize == 0 and (not state.nested or state.state2.code.numel() == 256)


def dequantise_in_graph(layers) -> int:
    """Swaps the class of every swappable 4-bit projection inside these layers; returns how many."""
    n = 0
    for layer in layers:
        for module in layer.modules():
            if type(module).__dict__.get(_EAGER) is not None or not swappable(module):
                continue
            eager: Any = type(module)
            if eager not in _classes:
                _classes[eager] = type(eager.__name__, (eager,), {
                    "forward": _forward, "__module__": eager.__module__, "__qualname__": eager.__qualname__,
                    _EAGER: eager})
            module.__class__ = _classes[eager]
            n += 1
    return n


def swapped(module) -> bool:
    return type(module).__dict__.get(_EAGER) is not None
