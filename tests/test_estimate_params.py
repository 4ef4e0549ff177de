"""Parameter counts from config.json against the published totals, and model config sources."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError, ModelError
from engine.estimate import list_model_presets, model_info_from_config, read_model_config
from engine.estimate.params import lora_params, lora_targets

# Exact counts as transformers reports them (sum of numel over parameters).
EXACT = {
    "meta-llama/Llama-2-7b-hf": 6_738_415_616,
    "meta-llama/Meta-Llama-3-8B": 8_030_261_248,
    "Qwen/Qwen2.5-1.5B": 1_543_714_304,
    "mistralai/Mistral-7B-v0.1": 7_241_732_096,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1_100_048_384,
    "HuggingFaceTB/SmolLM2-135M": 134_515_008,
}


@pytest.mark.parametrize("model,count", EXACT.items())
def test_exact_counts(model, count):
    assert read_model_config(model).param_count == count


@pytest.mark.parametrize("preset", list_model_presets(), ids=lambda p: p["id"])
def test_every_preset_matches_its_published_total(preset):
    info = read_model_config(preset["id"])
    assert info.exact and info.source == "preset"
    assert info.param_count == pytest.approx(preset["published_params"], rel=0.006)


def test_tied_embeddings_counted_once():
    qwen = read_model_config("qwen2.5-1.5b")
    assert qwen.arch.tied and qwen.params.lm_head == 0
    llama = read_model_config("llama-2-7b")
    assert llama.params.lm_head == llama.params.embedding == 32000 * 4096


def test_gqa_and_bias_shapes():
    arch = read_model_config("qwen2.5-7b").arch
    assert arch.linear("k_proj").d_out == 4 * 128 and arch.linear("k_proj").bias
    assert not arch.linear("o_proj").bias
    gemma = read_model_config("gemma-2-2b").arch
    assert gemma.q_dim == 8 * 256 != gemma.hidden and gemma.norms_per_layer == 4 and gemma.final_logit_softcap


def test_phi3_fused_layers_have_fewer_adapter_params_than_split_ones():
    phi = read_model_config("phi-3-mini").arch
    assert [lin.name for lin in phi.linears] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    split = model_info_from_config("x", {**read_model_config("phi-3-mini").config, "model_type": "llama"}, "local")
    assert split.param_count == read_model_config("phi-3-mini").param_count
    assert lora_params(phi, lora_targets(phi, "all-linear"), 16) < \
        lora_params(split.arch, lora_targets(split.arch, "all-linear"), 16)


def test_lora_param_count_llama2_7b():
    arch = read_model_config("llama-2-7b").arch
    # q, v at r=8: 32 layers x 2 modules x 8 x (4096 + 4096): the LoRA paper's classic 4.19 M.
    assert lora_params(arch, lora_targets(arch, ["q_proj", "v_proj"]), 8) == 4_194_304


def test_unknown_target_module_names_the_valid_ones():
    arch = read_model_config("llama-2-7b").arch
    with pytest.raises(ConfigError) as e:
        lora_targets(arch, ["q_proj", "qkv"])
    assert "gate_proj" in str(e.value)


def test_local_directory_with_only_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(read_model_config("smollm2-135m").config))
    info = read_model_config(str(tmp_path))
    assert info.source == "local" and info.param_count == EXACT["HuggingFaceTB/SmolLM2-135M"]


def test_unknown_architecture_is_approximate(tmp_path):
    cfg = {"model_type": "gpt_neox", "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8,
           "vocab_size": 1000}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    info = read_model_config(str(tmp_path))
    assert not info.exact and info.param_count > 0 and any("gpt_neox" in n for n in info.arch.notes)


@pytest.mark.parametrize("content,match", [("{not json", "not a readable"), ('{"model_type": "llama"}', "hidden_size")])
def test_bad_config_json(tmp_path, content, match):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ModelError, match=match):
        read_model_config(str(tmp_path))


LLAMA = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
         "num_attention_heads": 32, "vocab_size": 32000}


@pytest.mark.parametrize("key,value,expect", [
    ("hidden_size", "4096", "hidden_size: '4096' is not a whole number; expected 1 to 131,072"),
    ("hidden_size", float("nan"), "hidden_size: nan is not a whole number"),
    ("num_hidden_layers", 10**6, "num_hidden_layers: 1000000 is out of range; expected 1 to 4,096"),
    ("num_hidden_layers", -6, "num_hidden_layers: -6 is out of range"),
    ("vocab_size", True, "vocab_size: True is not a whole number"),
    ("num_attention_heads", 32.5, "num_attention_heads: 32.5 is not a whole number"),
    ("decoder_sparse_step", 0, "decoder_sparse_step: 0 is out of range; expected 1 to 4,096"),
    ("kv_lora_rank", "512", "kv_lora_rank: '512' is not a whole number"),
], ids=["string hidden", "NaN hidden", "10**6 layers", "negative layers", "bool vocab", "fractional heads",
        "sparse step 0", "string latent rank"])
def test_impossible_shapes_name_the_key(tmp_path, key, value, expect):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, key: value}))   # json writes nan as NaN, which Python reads back
    with pytest.raises(ModelError, match=rf"^{path}: 1 bad value") as e:
        read_model_config(str(tmp_path))
    (problem,) = e.value.problems
    assert problem.startswith(expect)


def test_shapes_inside_text_config_are_checked(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": {**LLAMA,
                                                                                             "vocab_size": -1}}))
    with pytest.raises(ModelError) as e:
        read_model_config(str(tmp_path))
    assert e.value.problems[0].startswith("text_config.vocab_size: -1 is out of range")


@pytest.mark.parametrize("content,match", [
    ('{"hidden_size": ' + "9" * 5000 + "}", "not a readable config.json: Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
], ids=["5000-digit number", "nested 100k deep"])
def test_unreadable_config_json(tmp_path, content, match):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ModelError, match=match):
        read_model_config(str(tmp_path))


def test_every_preset_passes_the_shape_check():
    from engine.estimate.model_config import check_shapes
    from engine.estimate.presets import model_presets

    for preset in model_presets().values():
        check_shapes(preset["config"], preset["id"])


def test_directory_without_config_json(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        read_model_config(str(tmp_path))


def test_offline_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="offline|hub"):
        read_model_config("nobody-here/no-such-model-xyz")


def test_not_a_model_name():
    with pytest.raises(ModelError, match="not a directory"):
        read_model_config("definitely not a model")


# Llama 4's and Qwen3.5's config.json as published (the keys their config classes read): a vision tower beside the
# text decoder. Llama 4: its router a linear layer's subclass (bitsandbytes leaves it unquantised), a shared expert in
# every mixture layer, Maverick's every other layer dense (intermediate_size_mlp wide). Qwen3.5: three linear-attention
# layers (a gated delta net) to each full-attention one, whose query projection is twice as wide (an output gate).
LLAMA4_SCOUT = {
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "tie_word_embeddings": False,
    "boi_token_index": 200080, "eoi_token_index": 200081, "image_token_index": 200092,
    "text_config": {
        "model_type": "llama4_text", "attention_bias": False, "attention_chunk_size": 8192, "head_dim": 128,
        "hidden_act": "silu", "hidden_size": 5120, "interleave_moe_layer_step": 1, "intermediate_size": 8192,
        "intermediate_size_mlp": 16384, "max_position_embeddings": 10485760, "num_attention_heads": 40,
        "num_experts_per_tok": 1, "num_hidden_layers": 48, "num_key_value_heads": 8, "num_local_experts": 16,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "use_qk_norm": True, "vocab_size": 202048},
    "vision_config": {
        "model_type": "llama4_vision_model", "hidden_size": 1408, "image_size": 336, "intermediate_size": 5632,
        "num_attention_heads": 16, "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
        "projector_input_dim": 4096, "projector_output_dim": 4096, "vision_output_dim": 4096}}
_QWEN3_5_VISION = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                   "num_position_embeddings": 2304, "patch_size": 16, "spatial_merge_size": 2}
# what the sizes' text_config share: the heads' widths, the linear attention's keys (its value heads differ)
_QWEN3_5_TEXT = {"attention_bias": False, "full_attention_interval": 4, "head_dim": 256, "linear_conv_kernel_dim": 4,
                 "linear_key_head_dim": 128, "linear_num_key_heads": 16, "linear_value_head_dim": 128,
                 "max_position_embeddings": 262144, "mtp_num_hidden_layers": 1, "tie_word_embeddings": False,
                 "vocab_size": 248320}
QWEN3_5_27B = {
    "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5", "tie_word_embeddings": False,
    "text_config": {
        **_QWEN3_5_TEXT, "model_type": "qwen3_5_text", "hidden_size": 5120, "intermediate_size": 17408,
        "linear_num_value_heads": 48, "num_attention_heads": 24, "num_hidden_layers": 64, "num_key_value_heads": 4,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"] * 16},
    "vision_config": {**_QWEN3_5_VISION, "out_hidden_size": 5120}}
QWEN3_5_35B_A3B = {
    "architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe", "tie_word_embeddings": False,
    "text_config": {
        **_QWEN3_5_TEXT, "model_type": "qwen3_5_moe_text", "hidden_size": 2048, "linear_num_value_heads": 32,
        "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "num_experts": 256,
        "num_experts_per_tok": 8, "num_attention_heads": 16, "num_hidden_layers": 40, "num_key_value_heads": 2},
    "vision_config": {**_QWEN3_5_VISION, "out_hidden_size": 2048}}

# config.json of real models as the hub has them (the keys their config classes read; what a checkpoint leaves to
# its class's defaults left out too: Gemma 3's tie_word_embeddings, its class ties the head). The presets are the
# dense families' (Llama 2/3, Qwen2.5, Mistral-7B, Gemma 2, Phi-3, SmolLM2, TinyLlama); these the rest.
FAMILIES = {
    "google/gemma-3-1b-pt": {
        "model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
        "sliding_window": 512, "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
        "max_position_embeddings": 32768, "rope_theta": 1000000, "final_logit_softcapping": None,
        "attn_logit_softcapping": None},
    "google/gemma-7b": {
        "model_type": "gemma", "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "vocab_size": 256000,
        "max_position_embeddings": 8192},
    "Qwen/Qwen3-0.6B": {
        "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 40960, "tie_word_embeddings": True, "attention_bias": False},
    "mistralai/Mistral-Nemo-Base-2407": {
        "model_type": "mistral", "hidden_size": 5120, "intermediate_size": 14336, "num_hidden_layers": 40,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
        "max_position_embeddings": 128000, "sliding_window": None, "tie_word_embeddings": False},
    "mistralai/Mixtral-8x7B-v0.1": {
        "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
        "vocab_size": 32000, "max_position_embeddings": 32768, "tie_word_embeddings": False},
    "Qwen/Qwen1.5-MoE-A2.7B": {
        "model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
        "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936, "max_position_embeddings": 8192,
        "decoder_sparse_step": 1, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
        "num_experts_per_tok": 4, "num_experts": 60, "norm_topk_prob": False, "tie_word_embeddings": False,
        "sliding_window": 32768, "use_sliding_window": False, "max_window_layers": 21},
    "Qwen/Qwen3-30B-A3B": {
        "model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 48,
        "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
        "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1,
        "mlp_only_layers": [], "norm_topk_prob": True, "max_position_embeddings": 40960,
        "tie_word_embeddings": False, "attention_bias": False},
    "deepseek-ai/DeepSeek-V2-Lite": {
        "model_type": "deepseek_v2", "hidden_size": 2048, "intermediate_size": 10944, "kv_lora_rank": 512,
        "first_k_dense_replace": 1, "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1,
        "n_routed_experts": 64, "n_shared_experts": 2, "norm_topk_prob": False, "num_attention_heads": 16,
        "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16, "q_lora_rank": None,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 102400,
        "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy", "max_position_embeddings": 163840,
        "attention_bias": False},
    "deepseek-ai/DeepSeek-V3": {
        "model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432, "kv_lora_rank": 512,
        "first_k_dense_replace": 3, "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8,
        "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 128,
        "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128, "q_lora_rank": 1536,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
        "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc", "max_position_embeddings": 163840,
        "attention_bias": False, "routed_scaling_factor": 2.5},
    "allenai/OLMoE-1B-7B-0924": {
        "model_type": "olmoe", "hidden_size": 2048, "intermediate_size": 1024, "num_hidden_layers": 16,
        "num_attention_heads": 16, "num_key_value_heads": 16, "num_experts": 64, "num_experts_per_tok": 8,
        "vocab_size": 50304, "max_position_embeddings": 4096, "tie_word_embeddings": False, "clip_qkv": None},
    "microsoft/Phi-3.5-MoE-instruct": {
        "model_type": "phimoe", "hidden_size": 4096, "intermediate_size": 6400, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 16, "num_experts_per_tok": 2,
        "vocab_size": 32064, "max_position_embeddings": 131072, "attention_bias": True, "lm_head_bias": True,
        "tie_word_embeddings": False, "sliding_window": 131072},
    "ibm-granite/granite-3.0-1b-a400m-base": {
        "model_type": "granitemoe", "hidden_size": 1024, "intermediate_size": 512, "num_hidden_layers": 24,
        "num_attention_heads": 16, "num_key_value_heads": 8, "num_local_experts": 32, "num_experts_per_tok": 8,
        "vocab_size": 49155, "max_position_embeddings": 4096, "tie_word_embeddings": True},
    # multimodal checkpoints whose text decoder the trainer loads alone (engine.estimate.multimodal.DECODER_ALONE):
    # counted as that decoder, the vision tower left out as the trainer's load leaves it
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": LLAMA4_SCOUT,
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": {
        **LLAMA4_SCOUT, "text_config": {**LLAMA4_SCOUT["text_config"], "interleave_moe_layer_step": 2,
                                        "num_local_experts": 128, "use_qk_norm": False,
                                        "max_position_embeddings": 1048576}},
    "Qwen/Qwen3.5-27B": QWEN3_5_27B,
    "Qwen/Qwen3.5-35B-A3B": QWEN3_5_35B_A3B,
}
# What each is published at, the whole model as transformers builds it (sum of numel over its parameters):
# DeepSeek-V3's checkpoint holds 671,026,419,200, its routers' e_score_correction_bias among them (a buffer here)
PUBLISHED = {"google/gemma-3-1b-pt": 999_885_952, "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
             "Qwen/Qwen1.5-MoE-A2.7B": 14_315_784_192, "Qwen/Qwen3-30B-A3B": 30_532_122_624,
             "deepseek-ai/DeepSeek-V2-Lite": 15_706_484_224, "deepseek-ai/DeepSeek-V3": 671_026_404_352}
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def _shrunk(config: dict) -> dict:
    """Four layers (DeepSeek-V3's first three dense, V2-Lite's first one; Maverick's two dense, Qwen3.5's last one
    full attention) and sixteen experts, every width the real model's: built on the meta device, no memory. A
    multimodal checkpoint's text_config shrunk so."""
    if isinstance(config.get("text_config"), dict):
        return {**config, "text_config": _shrunk(config["text_config"])}
    types = {"layer_types": config["layer_types"][:4]} if isinstance(config.get("layer_types"), list) else {}
    return {**config, "num_hidden_layers": 4, **types, **{k: 16 for k in _EXPERT_KEYS if config.get(k)}}


def _module_tree(model) -> dict[str, int]:
    """The parameters of a built model, split as the estimate splits them: embeddings, an untied head, what
    quantisation converts (bitsandbytes' rule: a module whose type is nn.Linear itself, not a subclass such as
    Llama 4's and PhiMoE's routers, and not the head), a mixture's stacked experts (3-d, no convolution's: Qwen3.5's
    linear attention) and the rest."""
    import torch

    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    lm_head = 0 if head.weight is embedding else head.weight.numel()
    linear = sum(m.weight.numel() for m in model.modules() if type(m) is torch.nn.Linear and m is not head)
    convolutions = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv1d)}
    experts = sum(p.numel() for p in params if p.dim() == 3 and id(p) not in convolutions)
    return {"total": total, "embedding": embedding.numel(), "lm_head": lm_head, "linear": linear,
            "experts": experts, "other": total - embedding.numel() - lm_head - linear - experts}


def _meta_model(config: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))


SEAMS = {**{p["id"]: read_model_config(p["id"]).config for p in list_model_presets()}, **FAMILIES}


@pytest.mark.parametrize("name", SEAMS)
def test_counts_match_the_module_tree_transformers_builds_from_the_same_config_json(name):
    """Every part the memory estimate prices (embeddings, head, quantised linears, stacked experts, the rest),
    against the model transformers builds from the real config.json, shrunk in layers and experts: to the element,
    every one (a multimodal checkpoint's: the text decoder the trainer loads). Gemma 3 was read as a Llama (an untied
    head: Gemma-3-1B at 1.30 B for its 1.00 B); Qwen1.5-MoE's shared expert and every mixture's router were left out
    (13.48 B for its 14.32 B); DeepSeek's latent attention was read as q, k, v and o projections, its dense first
    layers and shared experts as routed experts (V2-Lite's 14.4 B of unquantised experts counted 15.0 B; V3's 55 B of
    quantised linears counted 20 B). Qwen3.5's linear-attention layers were read as softmax attention and its gated
    query as a plain one (Qwen3.5-27B's decoder at 24.35 B for its 26.90 B); PhiMoE's LayerNorms' and head's biases
    were left out; Llama 4's and PhiMoE's routers were counted as quantised (bitsandbytes converts nn.Linear itself,
    not these subclasses of it)."""
    pytest.importorskip("torch")
    config = _shrunk(SEAMS[name])
    model = _meta_model(config)
    info = model_info_from_config(name, config, "local")
    p = info.params
    counted = {"total": p.total, "embedding": p.embedding, "lm_head": p.lm_head, "linear": p.linear,
               "experts": p.experts, "other": p.other}
    built = _module_tree(model)
    assert info.exact
    assert counted == built
    assert info.arch.tied == model.config.tie_word_embeddings
    if name in PUBLISHED:    # the whole model, from the unshrunk config.json
        assert model_info_from_config(name, SEAMS[name], "local").param_count == PUBLISHED[name]


# one of each family for the adapters (the presets repeat Llama's and Qwen2's shapes)
ADAPTED = ["meta-llama/Meta-Llama-3-8B", "Qwen/Qwen2.5-7B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-9b",
           "microsoft/Phi-3-mini-4k-instruct", *FAMILIES]


@pytest.mark.parametrize("name", ADAPTED)
def test_adapters_match_what_peft_builds_on_the_same_module_tree(name):
    """LoRA's adapter tensors for all-linear and for the attention alone, against peft's on the model transformers
    builds (meta device), tensor by tensor: Qwen1.5-MoE's shared expert is linear layers all-linear adapts (they
    were not counted), its shared_expert_gate a gate all-linear leaves frozen as it does the routers; DeepSeek's
    shared expert and dense layers are not adapted (peft takes gate_proj, up_proj and down_proj for the stacks'
    names), and its attention is five latent projections, not q, k, v, o."""
    pytest.importorskip("torch")
    config = _shrunk(SEAMS[name])
    info = model_info_from_config(name, config, "local")
    for targets in ("all-linear", list(info.arch.attention)):
        assert_adapters_are_pefts(info.arch, _meta_model(config), targets)


def assert_adapters_are_pefts(arch, model, targets) -> None:
    """The estimate's adapter tensors (lora_targets, memory._lora_tensors, lora_params) against those peft adds to
    the model with these target_modules as the trainer gives them (all-linear less a mixture's routers), tensor by
    tensor (r 4, no dropout)."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    from engine.estimate.memory import TrainingShape, _lora_tensors
    from engine.model import peft_target_modules

    peft_model = get_peft_model(model, PeftLora(r=4, lora_dropout=0.0,
                                                target_modules=peft_target_modules(model, targets)))
    trainable = sorted(p.numel() for p in peft_model.parameters() if p.requires_grad)
    lora = lora_targets(arch, targets)
    shape = TrainingShape(quantization="none", precision="fp32", targets=tuple(lora), r=4, dropout=0.0,
                          optimizer="adamw_torch", gradient_checkpointing=True, tokens=1, fused_loss=False)
    assert trainable == sorted(_lora_tensors(arch, shape)), targets
    assert sum(trainable) == lora_params(arch, lora, 4), targets
    # the weights under the adapters (Llama 4 Scout's were counted 3.0 B, the attention alone, for 9.1 B)
    adapted = sum(getattr(m.get_base_layer(), m.parameter_name).numel() if hasattr(m, "parameter_name") else
                  m.get_base_layer().weight.numel() for m in peft_model.modules() if hasattr(m, "lora_A"))
    assert adapted == sum(lin.d_in * lin.d_out * arch.instances(lin) for lin in lora), targets


@pytest.mark.parametrize("name", ["Qwen/Qwen1.5-MoE-A2.7B", "deepseek-ai/DeepSeek-V2-Lite", "deepseek-ai/DeepSeek-V3",
                                  "meta-llama/Llama-4-Maverick-17B-128E-Instruct", "Qwen/Qwen3.5-35B-A3B"])
def test_a_config_json_silent_on_a_key_is_counted_with_its_config_classes_default(name):
    """Where config.json leaves out first_k_dense_replace, n_shared_experts, q_lora_rank or the shared expert's
    width, transformers builds the model with its config class's default (DeepSeek-V3's class makes its first three
    layers dense): the count reads the same defaults (params._CLASS_DEFAULTS), checked against the classes too. Llama
    4's dense layers' width, Qwen3.5's head and linear-attention widths, and its layer kinds where config.json names
    neither layer_types nor full_attention_interval (every fourth layer full attention) the same."""
    pytest.importorskip("torch")
    from transformers import AutoConfig

    from engine.estimate.params import _CLASS_DEFAULTS

    for model_type, defaults in _CLASS_DEFAULTS.items():
        built = AutoConfig.for_model(model_type)
        assert {key: getattr(built, key) for key in defaults} == defaults, model_type
    config = _shrunk(SEAMS[name])
    text = config.get("text_config", config)
    quiet = {k: v for k, v in text.items() if k not in (*_CLASS_DEFAULTS[text["model_type"]], "full_attention_interval")}
    silent = {**config, "text_config": quiet} if "text_config" in config else quiet
    assert model_info_from_config(name, silent, "local").param_count == _module_tree(_meta_model(silent))["total"]


def test_bitsandbytes_quantises_what_the_seam_counts_as_linear():
    """The seam's rule for what quantisation converts (_module_tree: a module whose type is nn.Linear itself),
    pinned against transformers' bitsandbytes replacement on the meta device: Llama 4's and PhiMoE's routers
    (subclasses of nn.Linear) stay as they are, in 16-bit, where the estimate counted PhiMoE's as 4-bit."""
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import BitsAndBytesConfig
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    for name in ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "microsoft/Phi-3.5-MoE-instruct"):
        model = _meta_model(_shrunk(SEAMS[name]))
        linear = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"}
        with torch.device("meta"):
            replace_with_bnb_linear(model, modules_to_not_convert=["lm_head"],
                                    quantization_config=BitsAndBytesConfig(load_in_4bit=True))
        converted = {n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit"}
        assert converted == linear and not any(".router" in n for n in converted), name
        info = model_info_from_config(name, _shrunk(SEAMS[name]), "local")
        assert info.params.linear == sum(model.get_submodule(n).weight.numel() for n in converted), name


def test_softmax_attentions_flops_only_in_the_layers_that_have_it():
    """The time estimate's attention term (quadratic in the sequence) counts Qwen3.5's 16 full-attention layers of
    64, not all 64 (its linear-attention layers have none): four times the attention cost it said."""
    from engine.estimate.timing import flops_per_token

    info = model_info_from_config("Qwen/Qwen3.5-27B", QWEN3_5_27B, "local")
    arch = info.arch
    assert (arch.layers, arch.full_attention_layers) == (64, 16)

    def flops(seq: int) -> float:
        return flops_per_token(arch, info.params, 0, seq, gradient_checkpointing=False)

    assert flops(2048) - flops(1024) == (2 + 4) * arch.q_dim * 1024 * 16
