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
], ids=["string hidden", "NaN hidden", "10**6 layers", "negative layers", "bool vocab", "fractional heads"])
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


# Tiny config.json files as the hub has them: only what the checkpoint sets, the rest left to the config class's
# defaults (Gemma 3's leave tie_word_embeddings out: its class ties the head; Mistral's head_dim apart from hidden /
# heads, as Mistral-Nemo's; Qwen2's q, k, v biases, which no key announces).
_TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 96, "vocab_size": 128, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
DENSE = {
    "llama": {},
    "mistral": {"head_dim": 32, "sliding_window": 8},
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"head_dim": 32},
    "gemma": {"head_dim": 32},
    "gemma2": {"head_dim": 32, "sliding_window": 8, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0},
    "gemma3_text": {"head_dim": 32, "sliding_window": 8, "query_pre_attn_scalar": 32},
    "phi3": {},
}


@pytest.mark.parametrize("model_type", DENSE)
def test_counts_match_a_model_built_from_the_same_config_json(model_type):
    """Parameters, and LoRA's adapter tensors for all-linear and for the attention alone, against the model
    transformers builds from the same config.json, to the element. Gemma 3 was read as a Llama (two norms a layer,
    no query/key norms, an untied head: Gemma-3-1B's 262,144 x 1,152 head counted twice, 1.30 B for its 1.00 B)."""
    pytest.importorskip("torch")
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.estimate.memory import TrainingShape, _lora_tensors

    config = {"model_type": model_type, **_TINY, **DENSE[model_type]}
    built = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(built)
    info = model_info_from_config("tiny", config, "local")
    assert info.exact
    assert info.param_count == sum(p.numel() for p in model.parameters())
    assert info.arch.tied == built.tie_word_embeddings
    for targets in ("all-linear", list(info.arch.attention)):
        peft_model = get_peft_model(AutoModelForCausalLM.from_config(built),
                                    PeftLora(r=4, lora_dropout=0.0, target_modules=targets))
        trainable = sorted(p.numel() for p in peft_model.parameters() if p.requires_grad)
        lora = lora_targets(info.arch, targets)
        shape = TrainingShape(quantization="none", precision="fp32", targets=tuple(lora), r=4, dropout=0.0,
                              optimizer="adamw_torch", gradient_checkpointing=True, tokens=1, fused_loss=False)
        assert trainable == sorted(_lora_tensors(info.arch, shape)), targets
        assert sum(trainable) == lora_params(info.arch, lora, 4), targets


def test_deepseeks_routed_experts_are_counted_as_stacks():
    """DeepSeek-V2/V3 (and GLM-4-MoE-Lite) count their routed experts as n_routed_experts: the estimate read no
    mixture there and counted a dense MLP, DeepSeek-V2-Lite at 2.69 B parameters for its 15.7 B, its 14.4 B of
    unquantised stacked experts (29 GB in bf16) left out of the memory estimate. Against a tiny model's stacks."""
    pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    config = {"model_type": "deepseek_v3", **_TINY, "moe_intermediate_size": 32, "n_routed_experts": 4,
              "num_experts_per_tok": 2, "kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8,
              "qk_nope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 0}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    info = model_info_from_config("tiny", config, "local")
    assert (info.arch.experts, info.arch.experts_per_token) == (4, 2)
    assert info.params.experts == sum(p.numel() for p in model.parameters() if p.dim() == 3)
