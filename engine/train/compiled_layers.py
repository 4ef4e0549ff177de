"""An experiment for the host-bound 4-bit step: each decoder layer compiled by torch.compile.

A 4-bit step launches thousands of small kernels per micro-batch (dequantise, LoRA's two matmuls, dropout,
scale, add, for each of 7 projections per layer, three times: forward, recompute, backward); on the H100 the
host's cost per launch bounds the step, not the GPU's FLOPs (benchmarks/results/profile-h100-2026-11-23.md).
Compiling a layer fuses the element-wise work and replaces Python dispatch with generated code. A decoder layer
with bitsandbytes 4-bit weights and peft adapters traces into one graph (bitsandbytes registers its ops with
torch.library), so this is worth measuring; it stays off (LEVERS.compile_layers) until benchmarks/levers.py
shows it wins on the GPU.

Dynamic shapes: packed micro-batches change length every step, and a static compile would recompile each time.
The checkpointing wrapper stays outside: the compiled layer runs in forward and again in the recompute.
"""

from __future__ import annotations

import contextlib
from typing import Callable


def decoder_layers(model) -> list:
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_decoder_layers(model, log: Callable[[str], None], *, backend: str = "inductor") -> int:
    """Compiles every decoder layer in place (nn.Module.compile); returns how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend, dynamic=True)
    log(f"kernels: {len(layers)} decoder layers compiled (torch.compile {backend}, dynamic shapes)")
    return len(layers)


@contextlib.contextmanager
def eager_decoding(model):
    """Samples decode token by token with a KV cache: through compiled layers that would compile a new graph
    family for a one-token input and a cache object, for a few hundred calls. Decoding runs them eagerly.

    Only these layers: a global stance (torch.compiler.set_stance) would also turn off the samples' own
    compiled decode step (engine.fast_decode). nn.Module.compile keeps the compiled call in _compiled_call_impl.
    """
    saved = [(m, m._compiled_call_impl) for m in decoder_layers(model)
             if getattr(m, "_compiled_call_impl", None) is not None]
    for layer, _ in saved:
        layer._compiled_call_impl = None
    try:
        yield
    finally:
        for layer, impl in saved:
            layer._compiled_call_impl = impl
