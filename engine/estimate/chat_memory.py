"""GPU memory a second copy of a run's model takes to chat with it (the playground beside a training run).

A rough upper bound, not a plan: the base weights as the run loads them (the estimate's own components, so the
bytes per parameter have one home), the adapter, one dequantisation buffer, a key/value cache for a long prompt
and answer, and a CUDA context of its own. No activations, gradients or optimizer states: nothing is trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.estimate.memory import CUDA_CONTEXT_GIB, GIB

if TYPE_CHECKING:
    from engine.config import Config
    from engine.estimate.gpus import GpuSpec
    from engine.estimate.model_config import ModelInfo

# The estimate's components that a model loaded for chatting holds too.
WEIGHT_COMPONENTS = ("base weights", "unquantised weights", "LoRA adapters", "dequantisation buffer")
# Prompt and answer tokens the key/value cache is sized for: the playground's cap on new tokens
# (engine.playground.MAX_NEW_TOKENS), a bound on what one chat holds.
CHAT_TOKENS = 4096
KV_BYTES = 2  # keys and values in 16-bit


def chat_need_gib(cfg: Config, info: ModelInfo, gpu: GpuSpec | None) -> float:
    """GiB on the card to chat with this config's model (info: engine.estimate.ModelInfo; gpu: its GpuSpec)."""
    from engine.estimate.estimator import compute

    est = compute(cfg, info, gpu)
    weights = sum(c.gib for c in est.components if c.name in WEIGHT_COMPONENTS)
    arch = info.arch
    kv_cache = 2 * arch.layers * arch.kv_dim * CHAT_TOKENS * KV_BYTES / GIB
    return weights + kv_cache + CUDA_CONTEXT_GIB
