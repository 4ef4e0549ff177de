"""The playground's memory estimate: on the device the playground really loads on (engine.model.load_base_model),
by the training estimate's rules: a CUDA context on a GPU only, the plan's dtype for the key/value cache."""

from __future__ import annotations

import pytest

from engine.config import Config
from engine.estimate import get_gpu, read_model_config
from engine.estimate.chat_memory import CHAT_TOKENS, WEIGHT_COMPONENTS, chat_need_gib
from engine.estimate.estimator import compute
from engine.estimate.memory import CUDA_CONTEXT_GIB, GIB
from engine.gpu import GpuSample
from engine.playground import no_room_to_chat


def _cfg() -> Config:
    cfg = Config()
    cfg.model = "meta-llama/Llama-2-7b-hf"  # a preset: its shapes without the hub
    return cfg


def _weights(cfg, info, gpu) -> float:
    return sum(c.gib for c in compute(cfg, info, gpu).components if c.name in WEIGHT_COMPONENTS)


def test_chatting_on_the_cpu_needs_no_cuda_context_and_a_card_adds_one():
    cfg = _cfg()
    info = read_model_config(cfg.model)
    kv_per_byte = 2 * info.arch.layers * info.arch.kv_dim * CHAT_TOKENS / GIB
    # No GPU: fp32 weights and cache in this machine's RAM, nothing else on top.
    assert chat_need_gib(cfg, info, None) == pytest.approx(_weights(cfg, info, None) + 4 * kv_per_byte)
    # A card: bf16 cache, and the second process's own CUDA context.
    h100 = get_gpu("h100-80")
    assert chat_need_gib(cfg, info, h100) == pytest.approx(_weights(cfg, info, h100) + 2 * kv_per_byte
                                                           + CUDA_CONTEXT_GIB)


def test_a_card_without_a_preset_is_still_a_gpu_to_chat_on():
    # The playground loads on the GPU that is there: a card the presets do not know is planned as a GPU (16-bit,
    # a CUDA context), not as this machine's CPU.
    cfg = _cfg()
    known = no_room_to_chat(cfg, [GpuSample(0, "NVIDIA H100 80GB HBM3", 75.0, 79.6)])
    unknown = no_room_to_chat(cfg, [GpuSample(0, "NVIDIA Mystery Accelerator", 75.0, 79.6)])
    assert known is not None and unknown is not None
    need = chat_need_gib(cfg, read_model_config(cfg.model), get_gpu("h100-80"))
    assert f"about {need:.1f} GiB" in known and f"about {need:.1f} GiB" in unknown
