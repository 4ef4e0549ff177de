"""Multimodal checkpoints: the estimate, the launcher and the trainer's load read one rule (engine.estimate.multimodal).

Before it, a Gemma 3 4B-style checkpoint (Gemma3ForConditionalGeneration: text_config and vision_config) was estimated
as its text decoder alone while the trainer loaded the vision tower with it and LoRA's all-linear adapted the tower's
layers too; Qwen2-VL, Mistral 3 and Llava were estimated as fitting and then failed in the detached trainer with
"try quantization: none"; Llama 3.2 Vision trained its decoder alone, whose merged export transformers cannot load
back. Where transformers' causal-LM class is the text decoder alone and saves as a model it loads back (Qwen3.5,
Llama 4), the tower is left out at load: accepted, and said.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from test_bad_input_cli import config, refused

from engine.errors import ModelError

TEXT = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}
GEMMA3 = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
          "text_config": {"model_type": "gemma3_text", **TEXT, "sliding_window": 8},
          "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 48,
                            "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
          "mm_tokens_per_image": 4, "image_token_index": 511, "boi_token_index": 509, "eoi_token_index": 510}
# google/gemma-3-4b-it's config.json as published: its text_config leaves the heads and the vocabulary to the defaults
GEMMA3_4B = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
             "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                             "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                             "sliding_window": 1024},
             "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                               "model_type": "siglip_vision_model", "num_attention_heads": 16,
                               "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}}
MLLAMA = {"architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama",
          "text_config": {"model_type": "mllama_text_model", **TEXT, "cross_attention_layers": [1]},
          "vision_config": {"hidden_size": 32}}
QWEN3_5 = {"model_type": "qwen3_5",
           "text_config": {"model_type": "qwen3_5_text", **TEXT, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                           "linear_num_key_heads": 2, "linear_num_value_heads": 4,
                           "layer_types": ["linear_attention", "full_attention"]},
           "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 48, "num_heads": 2,
                             "out_hidden_size": 64, "num_position_embeddings": 16}}
INSTEAD = "Gemma 3 1B, the text-only size"


def config_only(tmp_path: Path, config_json: dict, name: str = "mm") -> Path:
    """A model directory holding config.json alone: whatever reads a weight fails on it."""
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config_json), encoding="utf-8")
    return d


def test_the_estimate_and_the_train_verb_refuse_a_gemma3_with_its_vision_tower_alike(tmp_path):
    model = config_only(tmp_path, GEMMA3)
    cfg = config(tmp_path, model=str(model))
    said = ("Gemma3ForConditionalGeneration (gemma3) is a multimodal checkpoint, a vision tower beside its text "
            "decoder (vision_config)")
    refused(run_cli("estimate", str(cfg), "--gpu", "h100-80"), f"{model / 'config.json'}: {said}", INSTEAD)
    run_dir = tmp_path / "run"
    refused(run_cli("train", str(cfg), "--run-dir", str(run_dir)), said, INSTEAD)
    assert not run_dir.exists()   # refused before the detached trainer started


async def test_the_wizard_shows_the_refusal_on_the_model_step_and_will_not_launch(tmp_path):
    from wizard_pilot import paste_into, settle

    from tui.app import LorapilotApp

    model = config_only(tmp_path, GEMMA3)
    app = LorapilotApp()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(app, pilot)
        await paste_into(pilot, "#field-model", str(model))
        await settle(app, pilot)
        s = app.wizard
        assert s.model_info is None and s.estimate is None
        assert "Gemma3ForConditionalGeneration (gemma3) is a multimodal checkpoint" in (s.model_error or "")
        assert INSTEAD in s.model_error
        assert any(b.startswith("model: ") and "multimodal checkpoint" in b for b in s.blockers())
        app.exit()


def test_the_trainer_refuses_it_first_as_a_resume_of_an_older_run_would_reach_it(tmp_path):
    """The trainer process itself (a resume, which the launcher's checks do not run again, reaches it with a run
    started before the rule): refused before the tokenizer or a weight loads (the directory has neither), exit 2, the
    reason in status.json."""
    import subprocess
    import sys

    from engine.config import load_config, save_config

    model = config_only(tmp_path, GEMMA3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(load_config(config(tmp_path, model=str(model))), run_dir / "config.yaml")
    r = subprocess.run([sys.executable, "-m", "engine.train.run", str(run_dir)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "is a multimodal checkpoint" in status["error"], status
    assert INSTEAD in status["hint"]


@pytest.mark.parametrize(("config_json", "arch", "instead"), [
    (GEMMA3_4B, "Gemma3ForConditionalGeneration (gemma3)", INSTEAD),   # was "config.json has no num_attention_heads"
    ({"model_type": "qwen2_vl", **TEXT, "vision_config": {"depth": 1}}, "qwen2_vl", "Qwen/Qwen2.5-7B-Instruct"),
    ({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
      "text_config": {"model_type": "llama", **TEXT}, "vision_config": {"model_type": "clip_vision_model"}},
     "LlavaForConditionalGeneration (llava)", "text_config's model_type: llama"),
    (MLLAMA, "MllamaForConditionalGeneration (mllama)", "meta-llama/Llama-3.1-8B-Instruct"),
])
def test_the_estimate_names_the_architecture_and_what_to_train_instead(tmp_path, config_json, arch, instead):
    from engine.estimate.model_config import read_model_config

    with pytest.raises(ModelError, match="is a multimodal checkpoint") as e:
        read_model_config(str(config_only(tmp_path, config_json)))
    assert arch in e.value.message and instead in (e.value.fix or "")


def test_the_rules_tables_are_transformers():
    """Among the multimodal model types AutoModelForCausalLM loads (the others it refuses itself), DECODER_ALONE is
    every one whose class is configured by the text config alone (so it cannot build the tower); every other one with
    a tower in its default config is refused. A newer transformers that maps another fails here, not in a run."""
    transformers = pytest.importorskip("transformers")
    from transformers import CONFIG_MAPPING
    from transformers.models.auto import modeling_auto

    from engine.estimate.multimodal import DECODER_ALONE, DECODER_NOT_RELOADED, tower_problem, towers

    causal = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    multimodal = {*modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
                  *modeling_auto.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES}
    alone, not_reloaded, refused_types = set(), set(), set()
    for model_type in sorted(multimodal & set(causal)):
        default = CONFIG_MAPPING[model_type]().to_dict()
        if not towers(default):   # Gemma 4's default has no tower: nothing but the decoder to load
            continue
        loads = getattr(transformers, causal[model_type]).config_class.model_type
        if loads != model_type and loads in causal:
            alone.add(model_type)
            continue
        refused_types.add(model_type)
        assert tower_problem(default) is not None, model_type
        if loads != model_type:
            not_reloaded.add(model_type)
    assert alone == set(DECODER_ALONE)
    assert not_reloaded == set(DECODER_NOT_RELOADED)
    assert {"gemma3", "gemma3n", "mllama"} <= refused_types


def test_a_decoder_alone_checkpoint_trains_its_decoder_and_nothing_else(tmp_path):
    """Qwen3.5's causal-LM class is the text decoder: the estimate says the tower is left out, and the trainer loads
    the decoder alone in 4-bit, adapts only its layers and trains them on the CPU; unquantised, the decoder saves as
    a model AutoModelForCausalLM loads back (what a merged export writes)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from engine.estimate.model_config import read_model_config
    from engine.model import add_lora, causal_lm, load_base_model

    torch.manual_seed(0)
    model_dir = tmp_path / "qwen3_5"
    AutoModelForImageTextToText.from_config(AutoConfig.for_model(**QWEN3_5)).save_pretrained(model_dir)
    info = read_model_config(str(model_dir))
    assert ("multimodal checkpoint (qwen3_5): its text decoder alone is loaded and trained; the vision tower is left "
            "out") in info.arch.notes

    from types import SimpleNamespace

    cfg = SimpleNamespace(lora=SimpleNamespace(r=4, alpha=8, dropout=0.0, target_modules="all-linear"),
                          quantization="nf4")
    base, _ = load_base_model(str(model_dir), "nf4", "auto")
    assert not any("visual" in name or "vision" in name for name, _ in base.named_parameters())
    assert any(type(m).__name__ == "Linear4bit" for m in base.modules())
    model = add_lora(base, cfg, gradient_checkpointing=True)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("model.layers." in n and "lora_" in n for n, _ in trainable)
    ids = torch.randint(3, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=1e-2)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and losses[-1] < losses[0]

    causal_lm(str(model_dir)).save_pretrained(tmp_path / "merged")
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "merged")).__name__ == "Qwen3_5ForCausalLM"
