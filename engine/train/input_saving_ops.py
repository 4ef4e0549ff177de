"""SwiGLU's silu(gate) * up and Llama's RMSNorm as autograd Functions that save their inputs only, for a layer traced
inside its own activation checkpoint (LEVERS.checkpoint_in_graph; engine.train.layer_checkpoint).

There the one backward graph computes each recomputed value once and keeps it until its last use: silu(gate), made
for the product, stays alive until up's gradient reads it, and each norm's fp32 intermediates until its input's
gradient, where today's backward has the partitioner recompute them from the saved inputs
(benchmarks/backward_peak.py: one MLP-wide and two hidden-wide tensors more at the peak on the demo). Each Function's
backward makes them again where they are read. The arithmetic is autograd's: aten.silu_backward of grad x up for
gate's gradient, grad x silu(gate) for up's; the norm's gradient by its formula, in fp32 as its forward computes.

Installed by swapping the class of each module written as Llama's is (the MLP: down_proj(act_fn(gate_proj(x)) *
up_proj(x)) with SiLU; the norm: weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)): Llama, Mistral, Qwen2/3 and the
families that copy them. Outside the lever's traced region each runs its own forward.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from engine.train import layer_checkpoint

_EAGER = "_lorapilot_eager_module"  # on a swapped module's class: the class it was made from
_classes: dict[type, type] = {}


class SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad * up, gate), grad * torch.nn.functional.silu(gate)


def _normalised(x, eps: float):
    """(x in fp32, x's rsqrt(mean(x^2) + eps)): LlamaRMSNorm's own steps."""
    x32 = x.to(torch.float32)
    return x32, torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps: float):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        x32, r = _normalised(x, eps)
        return weight * (x32 * r).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        x32, r = _normalised(x, ctx.eps)
        g = (grad * weight).to(x.dtype).to(torch.float32)   # the product's gradient, through the cast's
        grad_x = (r * g - x32 * r.pow(3) * (g * x32).mean(-1, keepdim=True)).to(x.dtype)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * (x32 * r).to(x.dtype)).reshape(-1, weight.shape[-1]).sum(0).to(weight.dtype)
        return grad_x, grad_weight, None


def _mlp_forward(self, x):
    if layer_checkpoint.inside():
        return self.down_proj(SiluMul.apply(self.gate_proj(x), self.up_proj(x)))
    return type(self).__dict__[_EAGER].forward(self, x)


def _norm_forward(self, hidden_states):
    if layer_checkpoint.inside():
        return RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)
    return type(self).__dict__[_EAGER].forward(self, hidden_states)


# What a module's forward must say, word for word (whitespace aside), for its Function to compute the same.
_MLP = ("self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))",)
_NORM = ("hidden_states = hidden_states.to(torch.float32)",
         "variance = hidden_states.pow(2).mean(-1, keepdim=True)",
         "hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)",
         "return self.weight * hidden_states.to(input_dtype)")


def _says(cls: type, lines: tuple[str, ...]) -> bool:
    try:
        source = " ".join(inspect.getsource(getattr(cls, "forward")).split())
    except (OSError, TypeError):
        return False
    return all(" ".join(line.split()) in source for line in lines)


def _forward_for(module):
    """The Function-backed forward for this module, or None where its forward is not one of the two."""
    if all(hasattr(module, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")) and \
            type(module.act_fn).__name__ in ("SiLUActivation", "SiLU") and _says(type(module), _MLP):
        return _mlp_forward
    if hasattr(module, "variance_epsilon") and isinstance(getattr(module, "weight", None), torch.Tensor) and \
            _says(type(module), _NORM):
        return _norm_forward
    return None


def install(layers) -> int:
    """Swaps the class of every such MLP and norm inside these layers; returns how many."""
    n = 0
    for layer in layers:
        for module in layer.modules():
            if type(module).__dict__.get(_EAGER) is not None:
                continue
            forward = _forward_for(module)
            if forward is None:
                continue
            eager: Any = type(module)
            if eager not in _classes:
                _classes[eager] = type(eager.__name__, (eager,), {
                    "forward": forward, "__module__": eager.__module__, "__qualname__": eager.__qualname__,
                    _EAGER: eager})
            module.__class__ = _classes[eager]
            n += 1
    return n
