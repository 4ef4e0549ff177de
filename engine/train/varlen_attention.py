"""Packed rows through PyTorch's variable-length flash attention (torch.nn.attention.varlen), a speed lever.

A packed micro-batch is one row of many examples; attention must stay inside each example. flex attention (the
default) does it with a block mask over 128-token blocks: with examples of a few hundred tokens many blocks straddle
two examples and are computed in part, and in the H200 profiles flex's kernels took ~12-16 % of a compiled step
(benchmarks/results/user_path-s12-h200-2026-12-03). Flash attention's variable-length kernels take the examples'
boundaries instead (cumulative offsets, `cu_seq_lens`) and compute each example's causal triangle only.

The default for packed rows on Ampere and newer GPUs (engine.plan.attention_for). On the H200, Llama-2-7B, the
user's path (benchmarks/results/user_path-s15-h200-2026-12-04.md): 1.21x flex's tokens/s on eager layers, 1.02x
on compiled ones, the same peak memory, and the adapter after 30 steps within bf16 noise of flex's.

How it is wired (LEVERS.varlen_attention):
- the model loads with attn_implementation ATTENTION, registered here with transformers' AttentionInterface;
- the trainer adds the boundaries of each packed micro-batch to the model's inputs (`varlen_inputs`): transformers
  passes them through every decoder layer to the attention function, which reads them;
- anything else (generation for samples, a row without boundaries) goes through SDPA with the mask transformers
  builds for it (ATTENTION is registered with SDPA's mask function), so nothing silently attends across examples
  or padding.
"""

from __future__ import annotations

import inspect
from typing import Any

# Not "flash" in the name: transformers takes any such name for a flash-attention kernel to fetch from the hub and
# fails to load the model (seen on the H200 in session 15).
ATTENTION = "lorapilot_varlen"
# transformers' names for a packed row's boundaries (FlashAttentionKwargs): they travel through the decoder layers.
BOUNDARY_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def register() -> str:
    """Registers ATTENTION (the attention function and, for rows without boundaries, SDPA's mask); returns it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    _KERNEL_KEYWORDS.clear()   # read again: a test may have put a reference kernel in torch's place
    _kernel_keywords()
    AttentionInterface.register(ATTENTION, varlen_attention_forward)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION


def boundaries(position_ids) -> tuple[Any, int]:
    """(cumulative example offsets as int32, the longest example) of a (1, L) packed row, whose positions restart
    at 0 with each example. One host sync for the longest length, once per micro-batch."""
    import torch

    assert position_ids.shape[0] == 1, "packed rows come one per micro-batch"
    pos = position_ids[0]
    starts = torch.nonzero(pos == 0).flatten()
    if starts.numel() == 0:
        raise ValueError("a packed row must start with an example (position 0)")
    ends = torch.cat([starts[1:], starts.new_tensor([pos.shape[0]])])
    first, longest = torch.stack([starts[0], (ends - starts).max()]).tolist()   # the one host sync
    if first != 0:
        raise ValueError("a packed row must start with an example (position 0)")
    return torch.cat([starts.new_zeros(1), ends]).to(torch.int32), int(longest)


def varlen_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The micro-batch's model inputs with its examples' boundaries, and a 4-D placeholder mask: transformers
    returns a 4-D mask as it is, so it builds no (L x L) mask that the varlen kernel would not read."""
    import torch

    cu, longest = boundaries(inputs["position_ids"])
    placeholder = torch.zeros((1, 1, 0, 0), dtype=torch.bool, device=cu.device)
    return dict(inputs, attention_mask=placeholder, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest,
                max_length_k=longest)


# Which of varlen_attn's keywords this torch has, read once at registration: per call it would cost eager layers
# host time 32 layers x 3 passes a step.
_KERNEL_KEYWORDS: set[str] = set()


def _kernel_keywords() -> set[str]:
    from torch.nn.attention.varlen import varlen_attn

    if not _KERNEL_KEYWORDS:
        _KERNEL_KEYWORDS.update(inspect.signature(varlen_attn).parameters)
    return _KERNEL_KEYWORDS


# The kernel: torch's public varlen_attn. Tests on the CPU (it is CUDA-only) put a reference in its place.
def _torch_varlen(query, key, value, cu, longest: int, scale: float | None, window: int | None = None):
    """window: the layer's sliding window (transformers' sliding_window: a token attends to itself and the
    window - 1 before it), None for full causal attention."""
    from torch.nn.attention.varlen import varlen_attn

    params = _KERNEL_KEYWORDS
    kwargs: dict[str, Any] = {"scale": scale} if "scale" in params else {}
    if "window_size" in params:            # torch >= 2.12: causal is a window of (-1, 0), a sliding one (W - 1, 0)
        kwargs["window_size"] = (window - 1 if window is not None and window < longest else -1, 0)
    elif window is not None and window < longest:
        raise ValueError(f"this torch's varlen attention has no sliding window (the model's: {window} tokens)")
    else:                                  # torch 2.9-2.11
        kwargs["is_causal"] = True
    if key.shape[1] != query.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            groups = query.shape[1] // key.shape[1]
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    if "scale" not in params and scale is not None and abs(scale - query.shape[-1] ** -0.5) > 1e-12:
        query = query * (scale * query.shape[-1] ** 0.5)   # older kernels take the default 1/sqrt(d) only
    return varlen_attn(query, key, value, cu, cu, longest, longest, **kwargs)


KERNEL = _torch_varlen


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs):
    """transformers' attention-function contract: query (B, H, L, D), key and value (B, H_kv, L, D); returns
    (output (B, L, H, D), None). With a packed row's boundaries: the varlen kernel; otherwise SDPA."""
    if kwargs.get("cu_seq_lens_q") is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1:
        raise ValueError("varlen attention takes one packed row per micro-batch")
    if dropout:
        raise ValueError("varlen attention has no attention dropout")
    if kwargs.get("softcap") is not None:   # the plan keeps soft-capping models (Gemma-2) off it: engine.plan
        raise ValueError("varlen attention has no logit soft-capping")
    # (1, H, L, D) -> (L, H, D): the kernel's token-major layout
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    out = KERNEL(q, k, v, kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"]), scaling, kwargs.get("sliding_window"))
    return out.unsqueeze(0), None
