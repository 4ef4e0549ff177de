"""What lorapilot tells a user whose model transformers refuses to load (engine.model.load_base_model): the change
that would help. A model_type transformers does not know was answered "try quantization: none", which fails the same
way: it needs a newer transformers, or the model's own code (trust_remote_code)."""

from __future__ import annotations

import json

import pytest

from engine.errors import ModelError
from engine.model import _load_fix, load_base_model


def _model_dir(tmp_path, config: dict):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(tmp_path)


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_an_unknown_model_type_asks_for_a_newer_transformers_not_another_quantization(tmp_path, quantization):
    path = _model_dir(tmp_path, {"model_type": "lorapilot_future_arch", "architectures": ["FutureForCausalLM"]})
    with pytest.raises(ModelError) as refused:
        load_base_model(path, quantization, "fp32")
    text = str(refused.value)
    assert "model type `lorapilot_future_arch`" in text and "does not recognize this architecture" in text, text
    assert "quantization: none" not in text, text
    assert "pip install -U transformers" in text and "trust_remote_code: true" in text, text


def test_a_model_with_its_own_code_asks_for_trust_remote_code(tmp_path):
    path = _model_dir(tmp_path, {"model_type": "lorapilot_own", "auto_map": {
        "AutoConfig": "configuration_own.OwnConfig", "AutoModelForCausalLM": "modeling_own.OwnForCausalLM"}})
    with pytest.raises(ModelError) as refused:
        load_base_model(path, "nf4", "fp32")
    text = str(refused.value)
    assert "the model ships its own modelling code: trust_remote_code: true in the config (--trust-remote-code " \
           "for a run directory)" in text, text
    assert "quantization: none" not in text, text


def test_a_model_that_is_no_causal_lm_is_said_to_be_none(tmp_path):
    path = _model_dir(tmp_path, {"model_type": "vit", "architectures": ["ViTModel"], "hidden_size": 8,
                                 "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16})
    with pytest.raises(ModelError) as refused:
        load_base_model(path, "nf4", "fp32")
    text = str(refused.value)
    assert "no causal language model (AutoModelForCausalLM)" in text and "quantization: none" not in text, text


def test_quantization_none_is_advised_only_where_quantization_is_the_trouble():
    already = ("The model is quantized with GPTQConfig but you are passing a BitsAndBytesConfig config. Please make "
               "sure to pass the same quantization config class")
    assert _load_fix(already, None, "nf4").endswith("try quantization: none")
    assert "quantization: none" not in _load_fix(already, None, "none")
    full = "Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM"
    assert _load_fix(full, None, "nf4").startswith("the quantised model does not fit the GPU's memory")
    assert "try quantization: none" not in _load_fix("something else went wrong", None, "nf4")
