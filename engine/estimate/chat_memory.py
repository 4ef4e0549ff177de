"""Memory a second copy of a run's model takes to chat with it (the playground beside a training run).

A rough upper bound, not a plan: the base weights as the run loads them (the estimate's own components, so the
bytes per parameter have one home), the adapter, one dequantisation buffer, a key/value cache for a long prompt
and answer, and, on a GPU, a CUDA context of its own. No activations, gradients or optimizer states: nothing is
trained. Without a GPU the playground loads on this machine's CPU (engine.model.load_base_model), in the
precision the plan picks there (fp32 by default), in RAM, with no CUDA context: the estimate says the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.estimate.memory import GIB, context_gib, dtype_bytes

if TYPE_CHECKING:
    from engine.config import Config
    from engine.estimate.gpus import GpuSpec
    from engine.estimate.model_config import ModelInfo

# The estimate's components that a model loaded for chatting holds too.
WEIGHT_COMPONENTS = ("base weights", "unquantised weights", "LoRA adapters", "dequantisation buffer")
# Prompt and answer tokens the key/value cache is sized for: the playground's cap on new tokens
# (engine.playground.MAX_NEW_TOKENS), a bound on what one chat holds.
CHAT_TOKENS = 4096


def chat_need_gib(cfg: Config, info: ModelInfo, gpu: GpuSpec | None) -> float:
    """GiB to chat with this config's model (info: engine.estimate.ModelInfo): on the card `gpu`, or, gpu None,
    in this machine's RAM (the CPU: no CUDA context)."""
    from engine.estimate.estimator import compute

    est = compute(cfg, info, gpu)
    assert est.plan is not None   # compute always plans
    weights = sum(c.gib for c in est.components if c.name in WEIGHT_COMPONENTS)
    arch = info.arch
    # Keys and values in the dtype the model runs in (the plan's precision).
    kv_cache = 2 * arch.layers * arch.kv_dim * CHAT_TOKENS * dtype_bytes(est.precision) / GIB
    return weights + kv_cache + context_gib(est.plan.device)
