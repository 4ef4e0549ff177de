"""Qwen3.5's two kinds of decoder layer against what autograd saves, on the CPU.

Qwen3.5 (dense and MoE) puts linear-attention layers (a gated delta net) between its full-attention ones; the estimate
counted every layer as a softmax one. Here a tiny random-weight Qwen3.5 text decoder, one layer of each kind, is built
by the trainer's own build_model from a CPU run's plan (NF4, LoRA on all-linear: in_proj_qkv, in_proj_z, in_proj_b,
in_proj_a and out_proj in the linear layer, the gated q_proj, k_proj, v_proj, o_proj in the full one, the MLP in both)
and measured as tests/test_estimate_saved_tensors.py measures Llama: every storage autograd saves in one layer's
forward, once, per token from the difference of two lengths; and what its recomputation saves under checkpointing.

What runs here is transformers' PyTorch path of the linear attention (torch_chunk_gated_delta_rule and the conv1d
fallback), which is what trains where flash-linear-attention and causal-conv1d are not installed. Their fused
kernels save other tensors: not measured. The lengths are whole chunks of the recurrence (64 tokens), and a shorter
row checks the padding to the next chunk.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import saved_storages  # noqa: E402
from tests.test_estimate_saved_tensors import (  # noqa: E402
    ALL,
    TOLERANCE,
    _autocast,
    _built,
    _cfg,
    _decoder,
    _gpu_view,
    _recomputed_bytes,
)

from engine.estimate.memory import (  # noqa: E402
    FULL_ATTENTION,
    GATED_DELTA_CHUNK_TOKENS,
    LINEAR_ATTENTION,
    layer_activation_bytes,
    layer_kinds,
    linear_attention_padding_bytes,
    recomputed_layer_bytes,
    shape_for_plan,
)
from engine.train.varlen_attention import ATTENTION  # noqa: E402

SHORT, LONG = 2 * GATED_DELTA_CHUNK_TOKENS, 3 * GATED_DELTA_CHUNK_TOKENS
PART = 100     # tokens of a row that is not whole chunks: padded to LONG - 64 = 128
# a linear attention whose widths differ (keys and values, their heads: two value heads to a key head), so that a
# term counted at the wrong width shows; one linear-attention layer, then one full-attention layer
TINY = {"hidden_size": 64, "intermediate_size": 112, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "linear_num_key_heads": 2,
        "linear_key_head_dim": 8, "linear_num_value_heads": 4, "linear_value_head_dim": 24,
        "linear_conv_kernel_dim": 4, "layer_types": ["linear_attention", "full_attention"]}
KIND_OF_LAYER = [LINEAR_ATTENTION, FULL_ATTENTION]


class Case(NamedTuple):
    precision: str
    dropout: float
    gpu_view: bool                  # peft sees the autocast, as on a GPU
    recompute: bool = False

    def __str__(self) -> str:
        return f"{self.precision}-dropout{self.dropout}{'-gpu_view' if self.gpu_view else ''}"


CASES = [
    Case("fp32", 0.05, False, recompute=True),     # the CPU's own run
    Case("fp32", 0.0, False),
    Case("bf16", 0.0, True, recompute=True),       # the GPU's bf16 path without the fused kernels: autocast casts
    Case("bf16", 0.05, False),                     # bf16 on the CPU: peft copies each adapter's input in fp32
]


@pytest.fixture(scope="module")
def qwen3_5_dir(tmp_path_factory):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("qwen3_5")
    Qwen3_5ForCausalLM(Qwen3_5TextConfig(**TINY)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def qwen3_5_moe_dir(tmp_path_factory):
    """The same layers with Qwen3.5-MoE's mixture: four experts, two a token, a gated shared expert."""
    from transformers import Qwen3_5MoeForCausalLM, Qwen3_5MoeTextConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("qwen3_5_moe")
    sizes = {k: v for k, v in TINY.items() if k != "intermediate_size"}
    Qwen3_5MoeForCausalLM(Qwen3_5MoeTextConfig(**sizes, moe_intermediate_size=48, shared_expert_intermediate_size=40,
                                               num_experts=4, num_experts_per_tok=2)).save_pretrained(out)
    return out


def _builder(model_dir):
    models: dict = {}

    def get(case: Case):
        key = (case.precision, case.dropout)
        if key not in models:
            torch.manual_seed(0)
            cfg = _cfg(model_dir, case.precision, case.dropout, ALL)
            models[key] = (*_built(cfg, False), cfg)
        return models[key]
    return get


@pytest.fixture(scope="module")
def built(qwen3_5_dir):
    return _builder(qwen3_5_dir)


@pytest.fixture(scope="module")
def built_moe(qwen3_5_moe_dir):
    return _builder(qwen3_5_moe_dir)


def _estimated(cfg, plan, case: Case):
    from engine.estimate import read_model_config

    arch = read_model_config(cfg.model).arch
    shape = replace(shape_for_plan(cfg, arch, plan), packed=False, row_tokens=0)   # one row, one example
    if case.gpu_view:
        shape = replace(shape, device="cuda", attention=ATTENTION)
    return arch, shape


def _layer_saved_bytes(model, case: Case, index: int, tokens: int) -> int:
    """Bytes of the distinct storages decoder layer `index` saves in one forward (no checkpointing), its parameters
    and the rotary tables it is handed left out."""
    decoder = _decoder(model)
    layer = decoder.layers[index]
    x = torch.randn(1, tokens, decoder.config.hidden_size, dtype=decoder.embed_tokens.weight.dtype,
                    requires_grad=True)
    positions = torch.arange(tokens)[None]
    cos, sin = decoder.rotary_emb(x, positions[None].expand(3, 1, -1))    # Qwen3.5's rotary: three position rows
    apart = {t.untyped_storage().data_ptr() for t in (cos, sin, *model.parameters())}
    checkpointing, layer.gradient_checkpointing = layer.gradient_checkpointing, False
    try:
        with _gpu_view(case.gpu_view), _autocast(case.precision), saved_storages(apart) as storages:
            layer(x, attention_mask=None, position_ids=positions, position_embeddings=(cos, sin))
    finally:
        layer.gradient_checkpointing = checkpointing
    return sum(storages.values())


def test_the_tiny_decoder_has_one_layer_of_each_kind(qwen3_5_dir):
    from engine.estimate import read_model_config

    arch = read_model_config(str(qwen3_5_dir)).arch
    assert layer_kinds(arch) == {FULL_ATTENTION: 1, LINEAR_ATTENTION: 1}
    assert arch.linear_attention is not None and arch.linear_attention.conv_dim == 2 * 16 + 96


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_kind_of_layer_saves_what_the_estimate_counts(built, case):
    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    for index, kind in enumerate(KIND_OF_LAYER):
        measured = (_layer_saved_bytes(model, case, index, LONG) - _layer_saved_bytes(model, case, index, SHORT))
        assert measured / (LONG - SHORT) == pytest.approx(layer_activation_bytes(arch, shape, kind), rel=TOLERANCE), \
            kind


@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=str)
def test_each_kind_of_qwen3_5_moe_layer_saves_what_the_estimate_counts(built_moe, case):
    """The mixture's terms (tests/test_estimate_moe.py) beside each kind of attention; its gated shared expert keeps
    the gate's sigmoid and the expert's output. On the bf16 path the estimate is 4 B/token high (the routed rows'
    weights are counted in fp32)."""
    model, plan, cfg = built_moe(case)
    arch, shape = _estimated(cfg, plan, case)
    assert arch.experts == 4 and layer_kinds(arch) == {FULL_ATTENTION: 1, LINEAR_ATTENTION: 1}
    for index, kind in enumerate(KIND_OF_LAYER):
        measured = (_layer_saved_bytes(model, case, index, LONG) - _layer_saved_bytes(model, case, index, SHORT))
        assert measured / (LONG - SHORT) == pytest.approx(layer_activation_bytes(arch, shape, kind), rel=TOLERANCE), \
            kind


@pytest.mark.parametrize("case", [c for c in CASES if c.recompute], ids=str)
def test_each_kind_of_layer_recomputes_what_the_estimate_counts(built, case):
    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    short, _ = _recomputed_bytes(model, case.precision, SHORT, case.gpu_view)
    long, _ = _recomputed_bytes(model, case.precision, LONG, case.gpu_view)
    for kind, a, b in zip(KIND_OF_LAYER, short[::-1], long[::-1]):     # recorded in backward's order: the last first
        assert (b - a) / (LONG - SHORT) == pytest.approx(recomputed_layer_bytes(arch, shape, kind), rel=TOLERANCE), \
            kind


def test_a_row_of_part_of_a_chunk_keeps_the_padded_chunk(built):
    """A row of PART tokens keeps its chunked tensors at the next whole chunk's length: the estimate's bytes per token
    at PART tokens plus its padding term, against the measured bytes of a SHORT-token row (the same chunks). On the
    GPU's bf16 path (emulated). The CPU's fp32 path keeps less than counted in a padded row (512 B a padded token
    on this model: some padded tensor shares another's storage there, not traced): the estimate is high by that."""
    case = CASES[2]
    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    measured = _layer_saved_bytes(model, case, 0, SHORT) - _layer_saved_bytes(model, case, 0, PART)
    per_token = layer_activation_bytes(arch, shape, LINEAR_ATTENTION)

    def estimated(tokens: int) -> float:
        return per_token * tokens + linear_attention_padding_bytes(arch, replace(shape, tokens=tokens))
    assert linear_attention_padding_bytes(arch, replace(shape, tokens=SHORT)) > 0     # the convolution's K - 1
    assert measured == pytest.approx(estimated(SHORT) - estimated(PART), rel=TOLERANCE)


@pytest.mark.parametrize("case", [c for c in CASES if c.recompute], ids=str)
def test_a_training_steps_peak_is_near_the_estimate(built, case):
    """A whole step (checkpointing, 512 tokens): the peak of live tensors above the model's (the adapters' gradients
    included), against the estimate's peak less the weights and optimizer states. The peak is the linear-attention
    layer's backward: its recomputation (counted to the byte above) and its gradients, which the estimate still
    models as a softmax layer's (the MLP's and the residual stream's). Measured 0.958 of the estimate in fp32, 1.016
    on the emulated GPU bf16 path (1.023 at 1,024 tokens); before the layer kinds 1.50 and 1.74."""
    from benchmarks.saved_tensors import live_bytes
    from engine.estimate import read_model_config
    from engine.estimate.memory import GIB, memory

    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    tokens = 512
    torch.manual_seed(0)
    ids = torch.randint(0, arch.vocab, (1, tokens))
    with _gpu_view(case.gpu_view), live_bytes() as live:
        with _autocast(case.precision):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    mem = memory(arch, read_model_config(cfg.model).params, replace(shape, tokens=tokens, eval_tokens=0))
    static = {"base weights", "unquantised weights", "LoRA adapters", "optimizer states"}
    estimated = mem.peak_allocated_gib * GIB - sum(c.gib * GIB for c in mem.components if c.name in static)
    assert 0.93 * estimated <= live.peak <= 1.03 * estimated


def _shape(info, checkpointing: bool, tokens: int = 4096):
    from engine.estimate.memory import TrainingShape
    from engine.estimate.params import lora_targets

    return TrainingShape(quantization="nf4", precision="bf16", targets=tuple(lora_targets(info.arch, ALL)), r=16,
                         dropout=0.05, optimizer="paged_adamw_8bit", gradient_checkpointing=checkpointing,
                         tokens=tokens, fused_loss=False, kbit_upcast=False)


# Pinned before the layer kinds existed (the estimate of the commit before them): decoders of softmax layers alone
# are estimated as they were. (model, checkpointing): bytes per token per layer, peak allocated GiB, device GiB
SOFTMAX_ONLY = {
    ("llama-2-7b", True): (238696, 6.468963623046875, 7.647846221923828),
    ("llama-2-7b", False): (238696, 34.606658935546875, 38.59931106567383),
    ("qwen2.5-7b", True): (292696, 13.276159048080444, 15.151940274238587),
    ("qwen2.5-7b", False): (292696, 43.773839712142944, 48.699389004707335),
    ("mistral-7b", True): (256360, 6.732566833496094, 7.947480010986328),
    ("mistral-7b", False): (256360, 37.01342010498047, 41.25641860961914),
}


@pytest.mark.parametrize("key", SOFTMAX_ONLY, ids=lambda k: f"{k[0]}-{'checkpointing' if k[1] else 'kept'}")
def test_decoders_of_softmax_layers_alone_are_estimated_as_before(key):
    from engine.estimate import read_model_config
    from engine.estimate.memory import memory

    info = read_model_config(key[0])
    shape = _shape(info, key[1])
    mem = memory(info.arch, info.params, shape)
    assert layer_kinds(info.arch) == {FULL_ATTENTION: info.arch.layers}
    assert (layer_activation_bytes(info.arch, shape), mem.peak_allocated_gib, mem.device_total_gib) == \
        pytest.approx(SOFTMAX_ONLY[key], rel=1e-12)


def test_qwen3_5_27b_counts_its_48_linear_and_16_full_attention_layers_each_by_its_own_rule(tmp_path):
    """Without checkpointing every layer's tensors are kept, each kind's; with it, the larger kind's recomputation
    (the linear attention's: its chunk matrices and per-chunk states) is the one layer rebuilt at a time."""
    import json

    from engine.estimate import read_model_config
    from engine.estimate.memory import GIB, memory
    from tests.test_estimate_params import QWEN3_5_27B

    (tmp_path / "config.json").write_text(json.dumps(QWEN3_5_27B))
    info = read_model_config(str(tmp_path))
    arch, t = info.arch, 4096
    assert layer_kinds(arch) == {LINEAR_ATTENTION: 48, FULL_ATTENTION: 16}
    kept = _shape(info, False, t)
    full, linear = (layer_activation_bytes(arch, kept, kind) for kind in (FULL_ATTENTION, LINEAR_ATTENTION))
    assert linear > 2 * full
    parts = {c.name: c.gib * GIB for c in memory(arch, info.params, kept).components}
    final_norm = (4 * arch.hidden + 4) * t
    assert parts["activations"] == pytest.approx(16 * full * t + 48 * (linear * t + linear_attention_padding_bytes(
        arch, kept)) + final_norm)
    checkpointed = _shape(info, True, t)
    parts = {c.name: c.gib * GIB for c in memory(arch, info.params, checkpointed).components}
    working = (3 * 2 * arch.intermediate + 2 * 2 * arch.hidden) * t
    assert parts["backward working memory"] == pytest.approx(
        recomputed_layer_bytes(arch, checkpointed, LINEAR_ATTENTION) * t
        + linear_attention_padding_bytes(arch, checkpointed) + working)


def test_qwen3_5_27b_packed_on_the_cpu_counts_the_square_mask_in_its_full_attention_layers_only(tmp_path):
    """A packed row on the CPU: each softmax layer's SDPA keeps its own copy of the t x t mask; the gated delta net
    takes the 2-D mask alone and runs no SDPA. The 48 linear layers were each counted a t x t copy too."""
    import json

    from engine.estimate import read_model_config
    from engine.estimate.memory import GIB, attention_mask_bytes, memory
    from tests.test_estimate_params import QWEN3_5_27B

    (tmp_path / "config.json").write_text(json.dumps(QWEN3_5_27B))
    info = read_model_config(str(tmp_path))
    arch, t = info.arch, 4096
    kept = replace(_shape(info, False, t), device="cpu", packed=True, row_tokens=t)
    mask, shared = attention_mask_bytes(kept)
    assert mask > 0 and shared > 0
    full, linear = (layer_activation_bytes(arch, kept, kind) for kind in (FULL_ATTENTION, LINEAR_ATTENTION))
    parts = {c.name: c.gib * GIB for c in memory(arch, info.params, kept).components}
    assert parts["activations"] == pytest.approx(16 * (full * t + mask) + 48 * (
        linear * t + linear_attention_padding_bytes(arch, kept)) + (4 * arch.hidden + 4) * t + shared)
    checkpointed = replace(kept, gradient_checkpointing=True)
    parts = {c.name: c.gib * GIB for c in memory(arch, info.params, checkpointed).components}
    working = (3 * 2 * arch.intermediate + 2 * 2 * arch.hidden) * t
    assert parts["backward working memory"] == pytest.approx(working + max(
        recomputed_layer_bytes(arch, checkpointed, LINEAR_ATTENTION) * t
        + linear_attention_padding_bytes(arch, checkpointed),
        recomputed_layer_bytes(arch, checkpointed, FULL_ATTENTION) * t + mask))
