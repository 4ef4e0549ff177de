"""Mixtures of experts (Mixtral, Qwen3-MoE) as transformers 5 builds them, against the estimate, on the CPU.

transformers 5 keeps a layer's routed experts as stacked 3-d parameters (gate_up_proj: experts x 2I x H, down_proj:
experts x H x I), not as linear layers: bitsandbytes quantises linear layers only, and peft adapts the stacks as
parameters (target_parameters, which `all-linear` adds on these models), merging each adapter into its stack for the
forward, without dropout. Each token goes to its top-k experts: the experts' matmuls see k x tokens rows in all.
A tiny random Mixtral and Qwen3-MoE, built by the trainer's own build_model (tests/test_estimate_saved_tensors.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from engine.errors import ModelError  # noqa: E402

EXPERTS, TOP_K = 4, 2


@pytest.fixture(scope="module")
def moe_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random Mixtral and Qwen3-MoE model directories (two layers, four experts, two a token)."""
    from transformers import AutoModelForCausalLM, MixtralConfig, Qwen3MoeConfig

    common = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  vocab_size=320, num_experts_per_tok=TOP_K)
    configs = {"mixtral": MixtralConfig(intermediate_size=384, num_local_experts=EXPERTS, **common),
               # intermediate_size is a dense MLP's (none here): the experts are moe_intermediate_size wide
               "qwen3_moe": Qwen3MoeConfig(intermediate_size=512, moe_intermediate_size=96, num_experts=EXPERTS,
                                           **common)}
    out = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        out[name] = tmp_path_factory.mktemp(name)
        AutoModelForCausalLM.from_config(config).save_pretrained(out[name])
    return out


def test_dropout_on_stacked_experts_is_a_clear_error_naming_the_key(moe_dirs):
    """peft refuses LoRA dropout on the stacked experts with a ValueError from deep in get_peft_model, after the
    model has loaded; the default dropout (0.05) with all-linear hit it. The message names the key and the fix."""
    from tests.test_estimate_saved_tensors import ALL, _built, _cfg

    with pytest.raises(ModelError) as e:
        _built(_cfg(moe_dirs["mixtral"], "fp32", 0.05, ALL), False)
    assert "lora.dropout" in str(e.value) and "lora.dropout: 0" in (e.value.fix or "")
    _built(_cfg(moe_dirs["mixtral"], "fp32", 0.0, ALL), False)     # without dropout it builds
