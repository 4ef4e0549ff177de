"""A mixture's router is never a LoRA target: all-linear adapts every linear layer but the output head and the routers.

peft's own all-linear adapts them (a linear router as any linear layer, the gate it maps with the stacked experts):
adapting one changes which experts each token goes to, and Llama 4's router (an nn.Linear returning a tuple) broke
the first forward ('tuple' object has no attribute 'dtype') of a run the estimate had accepted. The trainer gives
peft all-linear's names less the routers (engine.model.peft_target_modules); the estimate counts the same adapters.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from test_expert_dropout import MIXTURES, SHAPES

from engine.config import LoraConfig
from engine.estimate.params import NAMED_MIXTURES

# Llama 4's text decoder (what the trainer loads of a llama4 checkpoint): layer 0 dense, layer 1 a mixture with a
# shared expert and a linear router
LLAMA4_TEXT = {"model_type": "llama4_text", **SHAPES, "num_hidden_layers": 2, "intermediate_size": 32,
               "intermediate_size_mlp": 96, "num_local_experts": 4, "num_experts_per_tok": 1,
               "interleave_moe_layer_step": 2}
# a router, or a module inside one (GraniteMoE's router.layer), by its name in the module tree; Qwen2-MoE's
# shared_expert_gate (a Linear(hidden, 1) weighing the shared expert for each token) is a gate of the same kind
ROUTER = re.compile(r"\.(router|gate|shared_expert_gate)\.")


def _tiny(config: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))


def _trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_llama4_trains_with_the_default_targets_its_router_frozen_and_counted_as_peft_builds_it():
    """The default lora settings on Llama 4's text decoder: add_lora builds, a forward and backward run on the CPU
    (peft's all-linear wrapped the router: the forward died), no router is adapted, and the estimate's LoRA
    parameters are the adapters built (it counted the attention alone: no dense layer, no shared expert), its
    parameters the module tree's."""
    torch = pytest.importorskip("torch")
    from engine.estimate import model_info_from_config
    from engine.estimate.params import lora_params, lora_targets
    from engine.model import add_lora

    torch.manual_seed(0)
    lora = LoraConfig()
    assert lora.target_modules == "all-linear"
    model = add_lora(_tiny(LLAMA4_TEXT), SimpleNamespace(lora=lora, quantization="none"), gradient_checkpointing=False)
    trainable = _trainable(model)
    assert trainable and not [n for n in trainable if ROUTER.search(n)]
    assert any(".shared_expert." in n for n in trainable) and any(".layers.0.feed_forward." in n for n in trainable)
    ids = torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    info = model_info_from_config("tiny", LLAMA4_TEXT, "local")
    assert sum(trainable.values()) == lora_params(info.arch, lora_targets(info.arch, "all-linear"), lora.r)
    assert info.param_count == sum(p.numel() for p in model.base_model.model.parameters()) - sum(trainable.values())


@pytest.mark.parametrize("model_type", NAMED_MIXTURES)
def test_all_linear_adapts_no_router_of_any_mixture(model_type):
    """Each mixture the estimate names (Mixtral's gate, PhiMoE's router, GraniteMoE's router.layer, DeepSeek's
    gate, Qwen2-MoE's shared_expert_gate: all-linear adapted it, ...), built by the trainer's add_lora with
    all-linear: no router adapted, and the attention is; the estimate counts the adapters built."""
    pytest.importorskip("torch")
    from engine.estimate import model_info_from_config
    from engine.estimate.params import lora_params, lora_targets
    from engine.model import add_lora

    lora = LoraConfig(dropout=0.0)
    config = {"model_type": model_type, **SHAPES, **MIXTURES[model_type]}
    model = add_lora(_tiny(config), SimpleNamespace(lora=lora, quantization="none"), gradient_checkpointing=False)
    trainable = _trainable(model)
    assert any(".o_proj." in n for n in trainable)
    assert not [n for n in trainable if ROUTER.search(n)]
    arch = model_info_from_config("tiny", config, "local").arch
    assert sum(trainable.values()) == lora_params(arch, lora_targets(arch, "all-linear"), lora.r)


def test_a_dense_model_named_gate_is_no_mixture():
    """The routers are a mixture's: a dense model keeps all-linear as it is (peft resolves it)."""
    pytest.importorskip("torch")
    from engine.model import peft_target_modules, router_modules

    model = _tiny({"model_type": "llama", **SHAPES, "intermediate_size": 96})
    assert router_modules(model) == set()
    assert peft_target_modules(model, "all-linear") == "all-linear"


def test_a_router_named_is_refused_by_the_estimate_and_by_the_trainer():
    """Named, Llama 4's router stopped the first forward as all-linear did (the estimate skipped the name: Llama 4 is
    not counted exactly), and a Mixtral's gate was adapted: refused before the model loads and once it has. Qwen2-MoE's
    shared_expert_gate the same (it was adapted, named or by all-linear)."""
    pytest.importorskip("torch")
    from engine.errors import ConfigError, ModelError
    from engine.estimate import model_info_from_config
    from engine.estimate.params import lora_targets
    from engine.model import check_target_modules

    for config, name, what in ((LLAMA4_TEXT, "router", "router"),
                               ({"model_type": "mixtral", **SHAPES, **MIXTURES["mixtral"]}, "gate", "router"),
                               ({"model_type": "qwen2_moe", **SHAPES, **MIXTURES["qwen2_moe"]}, "shared_expert_gate",
                                "shared expert's gate")):
        expected = f"lora.target_modules: '{name}' is this {config['model_type']} model's {what}, which LoRA leaves"
        with pytest.raises(ConfigError, match=expected):
            lora_targets(model_info_from_config("tiny", config, "local").arch, ["q_proj", name])
        with pytest.raises(ModelError, match=expected):
            check_target_modules(_tiny(config), ["q_proj", name])


def test_train_refuses_llama4s_router_named_from_config_json_alone(tmp_path):
    """`lorapilot train` stops on it before anything loads (exit 2, the key, the way out), as it does a name the model
    lacks."""
    import json

    from conftest import run_cli
    from test_bad_input_cli import config, refused

    model = tmp_path / "llama4"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA4_TEXT), encoding="utf-8")
    f = config(tmp_path, "lora: {target_modules: [q_proj, v_proj, router]}\n", str(model))
    refused(run_cli("train", str(f), "--detach", "--run-dir", str(tmp_path / "run")), str(f),
            "lora.target_modules: 'router' is this llama4_text model's router", "leave 'router' out of")
    assert not (tmp_path / "run").exists()
