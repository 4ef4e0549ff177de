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


SHORT, LONG = 48, 80
# The estimate counts the router's top-k weights as normalised (Mixtral's; Qwen3-MoE's only with norm_topk_prob):
# 12 bytes a token over on an unnormalised one, within this.
TOLERANCE = 0.005


def _case(moe_dirs, name: str, targets):
    from dataclasses import replace

    from tests.test_estimate_saved_tensors import _built, _cfg

    from engine.estimate import read_model_config
    from engine.estimate.memory import shape_for_plan

    cfg = _cfg(moe_dirs[name], "fp32", 0.0, targets)
    model, plan = _built(cfg, False)
    info = read_model_config(str(moe_dirs[name]))
    return model, info, replace(shape_for_plan(cfg, info.arch, plan), packed=False)   # one example a row


CASES = [(name, targets) for name in ("mixtral", "qwen3_moe") for targets in ("all-linear", ["q_proj", "v_proj"])]
# the experts named without the router (gate): the stacks merged, the router frozen
CASES.append(("qwen3_moe", ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]))


def _case_id(v) -> str:
    return v if isinstance(v, str) else "qv" if len(v) == 2 else "qv+experts"


@pytest.mark.parametrize(("name", "targets"), CASES, ids=_case_id)
def test_a_moe_layer_saves_what_the_estimate_counts(moe_dirs, name, targets):
    """Per token: each token's k experts (not every expert) keep their gate_up product, activation and output, and,
    adapted, their inputs. Per layer whatever the tokens: the stacks with their adapters merged in, when adapted."""
    from tests.test_estimate_saved_tensors import _layer_saved_bytes, _recomputed_bytes

    from engine.estimate.memory import layer_activation_bytes, merged_experts_bytes, recomputed_layer_bytes

    model, info, shape = _case(moe_dirs, name, targets)
    assert info.arch.experts == EXPERTS and info.arch.experts_per_token == TOP_K
    short, long = (_layer_saved_bytes(model, "fp32", n, False) for n in (SHORT, LONG))
    per_token = (long - short) / (LONG - SHORT)
    assert per_token == pytest.approx(layer_activation_bytes(info.arch, shape), rel=TOLERANCE)
    fixed = merged_experts_bytes(info.arch, shape)
    assert (fixed > 0) == (targets != ["q_proj", "v_proj"])
    assert short - per_token * SHORT == pytest.approx(fixed, abs=64)    # (and a few bytes of expert counts)
    recomputed = [(b - a) / (LONG - SHORT) for a, b in zip(*(_recomputed_bytes(model, "fp32", n, False)[0]
                                                             for n in (SHORT, LONG)))]
    assert recomputed == pytest.approx([recomputed_layer_bytes(info.arch, shape)] * 2, rel=TOLERANCE)


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe"])
def test_the_experts_stay_unquantised_and_the_adapters_count_as_peft_makes_them(moe_dirs, name):
    """bitsandbytes quantises linear layers only: the stacked experts keep their dtype (the estimate had them at
    NF4's half a byte: Mixtral-8x7B's 45 B expert weights as 22 GiB where they take 84 GiB in bf16). peft adapts the
    stacks with r per expert (gate_up twice that), the router left frozen."""
    from engine.estimate.memory import _lora_tensors
    from engine.estimate.params import lora_params

    model, info, shape = _case(moe_dirs, name, "all-linear")
    stacked = sum(p.numel() for p in model.parameters() if p.dim() == 3)
    quantised = sum(2 * p.numel() for p in model.parameters() if p.dtype == torch.uint8)  # two 4-bit codes a byte
    assert stacked == info.params.experts > 0
    assert quantised == info.params.linear
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(_lora_tensors(info.arch, shape))
    assert lora_params(info.arch, list(shape.targets), shape.r) == sum(_lora_tensors(info.arch, shape))


@pytest.mark.parametrize(("name", "targets"), CASES, ids=_case_id)
def test_a_moe_training_steps_peak_is_under_the_estimate_and_near_it(moe_dirs, name, targets):
    """A whole step (checkpointing, fp32, 512 tokens): the peak of live tensors above the model's (the adapters'
    gradients included), against the estimate's peak less the weights and optimizer states. The backward's working
    tensors are modelled from a few phases, so not to the byte: measured 0.82-0.96 of the estimate on these models
    (it was 1.2-1.3 without the routed rows' gradients and the stack-sized working tensors)."""
    from dataclasses import replace

    from benchmarks.saved_tensors import live_bytes
    from engine.estimate.memory import GIB, memory

    model, info, shape = _case(moe_dirs, name, targets)
    tokens = 512
    torch.manual_seed(0)
    ids = torch.randint(0, info.arch.vocab, (1, tokens))
    with live_bytes() as live:
        model(input_ids=ids, labels=ids).loss.backward()
    mem = memory(info.arch, info.params, replace(shape, tokens=tokens, eval_tokens=0))
    static = {"base weights", "unquantised weights", "LoRA adapters", "optimizer states"}
    estimated = mem.peak_allocated_gib * GIB - sum(c.gib * GIB for c in mem.components if c.name in static)
    assert 0.8 * estimated <= live.peak <= estimated
