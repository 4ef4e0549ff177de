"""An adapter trained on a multimodal checkpoint's text decoder, exported for vLLM, adapts the checkpoint it is served
on (engine.export.served_names).

The trainer loads a Qwen3.5 or Llama 4 checkpoint's text decoder alone, whose modules are `model.layers.N...`;
`vllm serve BASE` serves the whole checkpoint, whose modules are `model.language_model.layers.N...` (Qwen3.5) or
`language_model.model.layers.N...` (Llama 4). Exported as trained, the adapter matched none of them: peft loaded it onto
the checkpoint's model with a warning and the logits were the base's to the last bit (vLLM, which matches by name too,
applies nothing without even the warning).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DEMO_CONFIG
from test_multimodal import QWEN3_5, TEXT

from engine.errors import UserError

LLAMA4 = {"model_type": "llama4",
          "text_config": {"model_type": "llama4_text", **TEXT, "intermediate_size_mlp": 128, "num_local_experts": 2,
                          "moe_layers": [1], "interleave_moe_layer_step": 2, "no_rope_layers": [1, 0],
                          "layer_types": ["chunked_attention", "full_attention"], "attention_chunk_size": 8},
          "vision_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                            "intermediate_size": 48, "vision_output_dim": 32, "image_size": 28, "patch_size": 14,
                            "projector_input_dim": 32, "projector_output_dim": 64},
          "image_token_index": 500, "boi_token_index": 501, "eoi_token_index": 502}
# By suffix, as peft saves all-linear for any real-sized model (20 modules or more); the tiny one's would be full
# names. Llama 4's router is left out: peft's LoRA on it breaks the forward (it returns a tuple).
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def multimodal_run(tmp_path: Path, config_json: dict, demo_model_dir: Path) -> tuple[Path, Path]:
    """(run folder with config.yaml and adapter/ only, the tiny multimodal checkpoint it trained on): the adapter
    made as the trainer makes it (engine.model: the decoder alone, add_lora), its B weights moved off zero as
    training moves them."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from engine.config import load_config, save_config
    from engine.model import add_lora, causal_lm, load_tokenizer

    torch.manual_seed(0)
    model_dir = tmp_path / config_json["model_type"]
    AutoModelForImageTextToText.from_config(AutoConfig.for_model(**config_json)).save_pretrained(model_dir)
    rd = tmp_path / "run"
    rd.mkdir()
    cfg = load_config(DEMO_CONFIG)
    cfg.model, cfg.quantization = str(model_dir), "none"
    cfg.lora.target_modules = TARGETS
    save_config(cfg, rd / "config.yaml")
    model = add_lora(causal_lm(str(model_dir)), cfg, gradient_checkpointing=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    model.save_pretrained(str(rd / "adapter"))
    load_tokenizer(str(demo_model_dir)).save_pretrained(str(rd / "adapter"))
    return rd, model_dir


@pytest.mark.parametrize("config_json", [QWEN3_5, LLAMA4], ids=["qwen3_5", "llama4"])
def test_the_vllm_export_adapts_the_checkpoint_it_serves_as_training_adapted_the_decoder(tmp_path, demo_model_dir,
                                                                                       config_json):
    import warnings

    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoConfig

    from engine.export.vllm import export_vllm
    from engine.model import causal_lm

    rd, model_dir = multimodal_run(tmp_path, config_json, demo_model_dir)
    said: list[str] = []
    out = export_vllm(rd, tmp_path / "vllm", log=said.append)
    ids = torch.randint(3, 400, (1, 12), generator=torch.Generator().manual_seed(0))
    arch = AutoConfig.from_pretrained(model_dir).architectures[0]   # what vLLM serves: the whole checkpoint
    served = getattr(transformers, arch).from_pretrained(model_dir)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = served(input_ids=ids).logits
        served = PeftModel.from_pretrained(served, str(out / "adapter"))(input_ids=ids).logits
        trained = PeftModel.from_pretrained(causal_lm(str(model_dir)), str(rd / "adapter"))(input_ids=ids).logits
    assert (served - base).abs().max() > 0.1            # was 0.0: the adapter applied nowhere
    torch.testing.assert_close(served, trained)         # the decoder as trained
    assert not [w for w in caught if "missing adapter keys" in str(w.message)]   # was peft's only word of it
    assert not any("vision" in name for name in served_names_of(out / "adapter"))
    note = next(line for line in said if "renamed" in line)
    assert "model.layers." in note and "language_model" in note
    assert "renamed here as the checkpoint names those modules" in (out / "README.md").read_text()


def served_names_of(adapter: Path) -> list[str]:
    import json

    return json.loads((adapter / "adapter_config.json").read_text())["target_modules"]


def test_a_text_models_adapter_is_exported_as_trained(tmp_path):
    from engine.export.served_names import rename_for_checkpoint

    model = tmp_path / "text"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}')
    assert rename_for_checkpoint(tmp_path / "no-adapter-read", str(model)) is None


def test_every_decoder_alone_type_finds_its_decoder_in_its_checkpoint(tmp_path):
    """Each DECODER_ALONE type's default config, on the meta device: every linear layer of the decoder the trainer
    loads has its counterpart in the checkpoint's architecture, of the same shape. A newer transformers that places
    the decoder otherwise fails here, not in a served model."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    from engine.estimate.multimodal import DECODER_ALONE
    from engine.export.served_names import served_names

    builds = {"qwen4_exp": {"text_config": {"indexer_n_heads": 2, "indexer_kv_heads": 1, "indexer_head_dim": 256,
                                            "indexer_budget": 8, "indexer_compress_ratio": 4}}}  # its default cannot
    for model_type in DECODER_ALONE:
        config = CONFIG_MAPPING[model_type](**builds.get(model_type, {}))
        folder = tmp_path / model_type
        config.save_pretrained(folder)
        with torch.device("meta"):
            text = AutoModelForCausalLM.from_config(config)
        linear = [name for name, m in text.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"]
        renamed = served_names(str(folder), linear)
        assert len(set(renamed.values())) == len(linear), model_type
        assert all(new != old and new.endswith(old.partition(".")[2]) for old, new in renamed.items()), model_type


def test_a_module_the_checkpoint_has_no_counterpart_of_refuses_the_export(tmp_path):
    from transformers import AutoConfig

    from engine.export.served_names import served_names

    AutoConfig.for_model(**QWEN3_5).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="adapts model.layers.7.mlp.up_proj, which Qwen3_5ForConditionalGeneration"):
        served_names(str(tmp_path), ["model.layers.0.mlp.up_proj", "model.layers.7.mlp.up_proj"])


def test_the_renamed_adapter_is_the_trained_one_tensor_for_tensor(tmp_path, demo_model_dir):
    from safetensors.torch import load_file

    from engine.export.served_names import rename_for_checkpoint

    rd, model_dir = multimodal_run(tmp_path, QWEN3_5, demo_model_dir)
    copy = tmp_path / "copy"
    shutil.copytree(rd / "adapter", copy)
    assert rename_for_checkpoint(copy, str(model_dir))
    trained, renamed = load_file(str(rd / "adapter" / "adapter_model.safetensors")), \
        load_file(str(copy / "adapter_model.safetensors"))
    assert len(trained) == len(renamed)
    for key, tensor in trained.items():
        new = key.replace("base_model.model.model.layers.", "base_model.model.model.language_model.layers.")
        assert renamed[new].equal(tensor)


@pytest.mark.parametrize("config_json", [QWEN3_5, LLAMA4], ids=["qwen3_5", "llama4"])
def test_the_merged_export_loads_back_whole_as_the_model_it_says_it_is(tmp_path, demo_model_dir, config_json):
    """The merged export of a decoder trained alone is a text model (config.json: qwen3_5_text, Qwen3_5ForCausalLM;
    Qwen3.5's weights saved under the checkpoint's model.language_model. names, which that class maps back):
    loaded by the class its config.json names, every weight is found and none is left over, and it answers as the
    trained decoder with its adapter."""
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.export.merge import export_merged
    from engine.model import causal_lm

    rd, model_dir = multimodal_run(tmp_path, config_json, demo_model_dir)
    out = export_merged(rd, tmp_path / "merged", card=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == config_json["text_config"]["model_type"]
    merged, loading = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert type(merged).__name__ == saved["architectures"][0]
    assert not any(loading.values()), loading   # missing, unexpected, mismatched keys
    ids = torch.randint(3, 400, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained = PeftModel.from_pretrained(causal_lm(str(model_dir)), str(rd / "adapter"))(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, trained, atol=1e-4, rtol=1e-4)
