"""LoRA dropout on a mixture of experts, refused before the model loads, by the one rule every face reads.

transformers 5 keeps a mixture's routed experts as stacked 3-d parameters; peft 0.21 adapts them as parameters on
the model types it maps (Mixtral, Qwen3-MoE, OLMoE, DeepSeek-V3, ...), without dropout, and refuses any other
lora_dropout only inside get_peft_model, once the model has loaded (minutes, tens of GB). Qwen2-MoE's own stacks
are no linear layers to it: all-linear adapts its attention and shared expert, with dropout, and leaves the routed
experts frozen. The rule (engine.estimate.params.expert_dropout_problem) needs the model's config.json only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli
from test_bad_input_cli import config, refused

from engine.config import LoraConfig
from engine.estimate.params import NAMED_MIXTURES

# config.json of tiny mixtures, as transformers writes them (only what the estimate reads)
SHAPES = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 16, "vocab_size": 128, "num_experts_per_tok": 2}
MIXTURES = {
    "mixtral": {"intermediate_size": 96, "num_local_experts": 4},
    "qwen2_moe": {"intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 4,
                  "shared_expert_intermediate_size": 48},
    "qwen3_moe": {"intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 4},
    "olmoe": {"intermediate_size": 96, "num_experts": 4},
    "phimoe": {"intermediate_size": 96, "num_local_experts": 4},
    "granitemoe": {"intermediate_size": 96, "num_local_experts": 4},
}
# DeepSeek's multi-head latent attention: no k_proj nor v_proj; queries through q_a_proj and q_b_proj (q_lora_rank)
MLA = {"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4, "kv_lora_rank": 16,
       "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1}
MIXTURES["deepseek_v3"] = {**MLA, "q_lora_rank": 32}
# DeepSeek-V2-Lite's shape: queries through q_proj, a shared expert, its first layer dense
MIXTURES["deepseek_v2"] = {**MLA, "q_lora_rank": None, "n_shared_experts": 1, "first_k_dense_replace": 1,
                           "num_hidden_layers": 2}


def config_json_only(tmp_path: Path, model_type: str) -> Path:
    """A model directory holding config.json and nothing else: whatever tries to load the model fails."""
    d = tmp_path / model_type
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type, **SHAPES, **MIXTURES[model_type]}),
                                   encoding="utf-8")
    return d


@pytest.mark.parametrize(("model_type", "targets", "dropout", "refused"), [
    ("mixtral", "all-linear", 0.05, True),                  # the default lora settings
    ("qwen3_moe", "all-linear", 0.05, True),
    ("olmoe", "all-linear", 0.1, True),
    ("deepseek_v3", ["gate_proj", "up_proj", "down_proj"], 0.05, True),   # its shared expert's names map onto stacks
    ("mixtral", "all-linear", 0.0, False),
    ("mixtral", ["q_proj", "v_proj"], 0.05, False),
    ("qwen2_moe", "all-linear", 0.05, False),               # its stacks stay frozen: dropout on what is adapted
    ("phimoe", "all-linear", 0.05, False),
    ("llama", "all-linear", 0.05, False),
])
def test_the_rule_names_lora_dropout_where_peft_adapts_the_stacks(model_type, targets, dropout, refused):
    from engine.estimate.params import expert_dropout_problem

    problem = expert_dropout_problem(model_type, LoraConfig(dropout=dropout, target_modules=targets))
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith(f"lora.dropout: {dropout:g} cannot apply to this {model_type} model's experts")


def test_the_rules_table_is_pefts():
    """The model types and names are peft's own (a newer peft that maps more mixtures fails here, not in a run)."""
    pytest.importorskip("peft")
    from peft.utils.transformers_weight_conversion import _MODEL_TO_CONVERSION_PATTERN, _MOE_TARGET_MODULE_MAPPING
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    from engine.estimate.params import EXPERT_STACK_NAMES

    # (its table also maps a few class names: no config.json's model_type)
    peft_table = {model_type: tuple(_MOE_TARGET_MODULE_MAPPING[base])
                  for model_type, base in _MODEL_TO_CONVERSION_PATTERN.items()
                  if base in _MOE_TARGET_MODULE_MAPPING and model_type.islower()
                  and get_checkpoint_conversion_mapping(model_type) is not None}
    assert {k: tuple(sorted(v)) for k, v in EXPERT_STACK_NAMES.items()} == \
           {k: tuple(sorted(v)) for k, v in peft_table.items()}


@pytest.fixture(scope="module")
def tiny_mixtures(tmp_path_factory) -> dict[str, Path]:
    """Tiny random mixtures with weights (one layer, four experts, two a token)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    out = {}
    for model_type in ("mixtral", "qwen2_moe", "qwen3_moe"):
        torch.manual_seed(0)
        out[model_type] = tmp_path_factory.mktemp(model_type)
        model_config = AutoConfig.for_model(model_type, **SHAPES, **MIXTURES[model_type])
        AutoModelForCausalLM.from_config(model_config).save_pretrained(out[model_type])
    return out


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_peft_refuses_dropout_exactly_where_the_rule_says_and_adapts_the_stacks_the_estimate_counts(
        tiny_mixtures, model_type):
    """Measured on peft itself (the trainer asks the rule first): get_peft_model with all-linear and dropout 0.05
    refuses where the rule says it will, and with dropout 0 adapts the stacked experts exactly where the estimate's
    lora_targets counts them (it counted Qwen2-MoE's frozen stacks as adapted: their adapters, the router's, the
    merged stacks)."""
    import warnings

    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.estimate import read_model_config
    from engine.estimate.params import expert_dropout_problem, lora_targets

    arch = read_model_config(str(tiny_mixtures[model_type])).arch
    lora = LoraConfig(dropout=0.05, target_modules="all-linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(tiny_mixtures[model_type])
        try:
            get_peft_model(model, PeftLora(r=4, lora_dropout=0.05, target_modules="all-linear"))
            peft_refused = False
        except ValueError as e:
            peft_refused = "lora_dropout" in str(e)
        model = AutoModelForCausalLM.from_pretrained(tiny_mixtures[model_type])
        peft_model = get_peft_model(model, PeftLora(r=4, lora_dropout=0.0, target_modules="all-linear"))
    assert peft_refused == (expert_dropout_problem(arch.model_type, lora) is not None)
    stacks_adapted = any(type(m).__name__ == "ParamWrapper" for m in peft_model.modules())
    assert stacks_adapted == any(arch.stacked(lin) for lin in lora_targets(arch, "all-linear"))
    assert stacks_adapted == (model_type != "qwen2_moe")


ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize(("model_type", "targets"), [
    ("qwen3_moe", ALL_PROJECTIONS),                                  # the usual list: peft maps the MLP names
    ("mixtral", ["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"]),   # peft's names for Mixtral's experts
], ids=["qwen3_moe", "mixtral"])
def test_named_experts_build_where_peft_maps_them_and_the_estimate_counts_them(tiny_mixtures, model_type, targets):
    """The trainer refused these names once the model had loaded ('not in this model': no linear layer has them),
    where peft adapts the stacks by them; the estimate counted no experts for w1-w3 (unknown names, skipped).
    Built by the trainer's build_model (dropout 0), the adapters are the estimate's, tensor by tensor (the optimizer's
    8-bit and paged thresholds go by tensor); the router frozen (tests/test_lora_routers.py)."""
    from tests.test_estimate_saved_tensors import _built, _cfg

    from engine.estimate import read_model_config
    from engine.estimate.memory import _lora_tensors, shape_for_plan
    from engine.estimate.params import lora_params

    arch = read_model_config(str(tiny_mixtures[model_type])).arch
    cfg = _cfg(tiny_mixtures[model_type], "fp32", 0.0, targets, quantization="none")
    model, plan = _built(cfg, False)
    shape = shape_for_plan(cfg, arch, plan)
    trainable = sorted(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(trainable) == lora_params(arch, list(shape.targets), 8)
    assert trainable == sorted(_lora_tensors(arch, shape))
    assert not [n for n, p in model.named_parameters() if p.requires_grad and ".gate." in n]
    assert any(type(m).__name__ == "ParamWrapper" for m in model.modules())


@pytest.mark.parametrize(("model_type", "targets", "expected"), [
    ("mixtral", ALL_PROJECTIONS, "lora.target_modules: 'gate_proj', 'up_proj', 'down_proj' not in a mixtral model"),
    ("qwen3_moe", ["q_proj", "gate_proj"], "lora.target_modules: gate_proj without up_proj"),
    ("mixtral", ["w3", "w2"], "lora.target_modules: w3 without w1"),
    ("qwen3_moe", ALL_PROJECTIONS, "lora.dropout: 0.05 cannot apply to this qwen3_moe model's experts, "
                                   "which lora.target_modules gate_proj, up_proj, down_proj reaches"),
    ("phimoe", ALL_PROJECTIONS, "lora.target_modules: 'gate_proj', 'up_proj', 'down_proj' not in a phimoe model: its "
                                "experts are stacked weights, which LoRA does not adapt on a phimoe model"),
    ("granitemoe", ["q_proj", "v_proj", "down_proj"], "lora.target_modules: 'down_proj' not in a granitemoe model"),
    ("phimoe", ["q_proj", "w1"], "lora.target_modules: 'w1' not in a phimoe model"),
], ids=["mixtral's MLP names", "half a fused pair", "half of Mixtral's pair", "dropout on named experts",
        "phimoe's MLP names", "granitemoe's down_proj", "phimoe's w1"])
def test_train_refuses_names_the_trainer_or_peft_would_refuse_after_loading(tmp_path, model_type, targets, expected):
    """Each was refused only once the model had loaded: by the trainer's own check, by peft's ValueError (a
    traceback: 'Cannot convert PEFT target(s) gate_proj without also targeting up_proj'), or peft's dropout refusal.
    PhiMoE and GraniteMoE: peft maps no name onto their stacked experts, so the MLP's names reach nothing (the
    estimate skipped them, the trainer refused them after loading)."""
    run_dir = tmp_path / "run"
    dropout = 0.05 if expected.startswith("lora.dropout") else 0     # else the names alone are refused
    f = config(tmp_path, f"lora: {{dropout: {dropout}, target_modules: [{', '.join(targets)}]}}\n",
               str(config_json_only(tmp_path, model_type)))
    refused(run_cli("train", str(f), "--detach", "--run-dir", str(run_dir)), str(f), expected)
    assert not run_dir.exists()


@pytest.mark.parametrize("model_type", NAMED_MIXTURES)
def test_the_names_the_rule_takes_are_the_ones_the_trainer_takes(model_type):
    """The rule's names for a mixture (engine.estimate.params.target_names, before loading) against the trainer's
    check once loaded (engine.model.check_target_modules: the model's linear layers and the names peft maps for it),
    on a tiny model of each: a name one takes and the other refuses stops a run after the load, or for nothing."""
    pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.estimate import model_info_from_config
    from engine.estimate.params import EXPERT_STACK_NAMES, ROUTER_NAMES, target_names
    from engine.model import linear_module_names

    config = {"model_type": model_type, **SHAPES, **MIXTURES[model_type]}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    trainers = (set(linear_module_names(model)) | set(EXPERT_STACK_NAMES.get(model_type, ()))) - set(ROUTER_NAMES)
    assert set(target_names(model_info_from_config("tiny", config, "local").arch)) == trainers


@pytest.mark.parametrize("model_type", NAMED_MIXTURES)
def test_all_linear_adapters_are_the_estimates_tensor_by_tensor(model_type):
    """all-linear as the trainer gives it to peft (its routers left out) on a tiny model of each (dropout 0), against
    the estimate's adapter tensors."""
    pytest.importorskip("torch")
    from test_estimate_params import assert_adapters_are_pefts
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.estimate import model_info_from_config

    config = {"model_type": model_type, **SHAPES, **MIXTURES[model_type]}
    arch = model_info_from_config("tiny", config, "local").arch
    assert_adapters_are_pefts(arch, AutoModelForCausalLM.from_config(AutoConfig.for_model(**config)), "all-linear")


@pytest.mark.parametrize(("model_type", "config"), [
    ("deepseek_v3", MIXTURES["deepseek_v3"]),
    ("deepseek_v2", {**MLA, "q_lora_rank": None}),          # DeepSeek-V2-Lite: its queries through q_proj
    ("qwen3_moe", MIXTURES["qwen3_moe"]),
    ("mixtral", MIXTURES["mixtral"]),
])
def test_the_fix_names_the_attention_the_model_has(model_type, config):
    """The way out 'attention only' named q_proj, k_proj, v_proj, o_proj on every mixture: DeepSeek-V3 has no k_proj
    nor v_proj (and no q_proj), so the list it suggested was refused in turn. The names against a tiny model of each."""
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.diagnose.settings_check import check_lora_for_model
    from engine.estimate import model_info_from_config
    from engine.estimate.params import expert_dropout_fix

    config = {"model_type": model_type, **SHAPES, **config}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    attention = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and ".self_attn." in name}
    arch = model_info_from_config("tiny", config, "local").arch
    assert set(arch.attention) == attention
    assert expert_dropout_fix(arch.attention).endswith(f"lora.target_modules: [{', '.join(arch.attention)}] "
                                                       "(attention only)")
    [finding] = check_lora_for_model(SimpleNamespace(lora=LoraConfig()), arch)     # the default lora settings
    assert f"({', '.join(arch.attention)})" in finding.fix


def test_estimate_and_train_refuse_deepseek_naming_its_own_attention(tmp_path):
    """The refusal's fix on DeepSeek-V3 named q_proj, k_proj, v_proj, o_proj: a config that follows it is refused
    again (no such modules). It names DeepSeek's own attention projections."""
    f = config(tmp_path, model=str(config_json_only(tmp_path, "deepseek_v3")))
    suggested = "lora.target_modules: [q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj] (attention only)"
    r = run_cli("estimate", str(f), "--json", "--gpu", "h100-80")
    refused(r, str(f), "lora.dropout: 0.05 cannot apply to this deepseek_v3 model's experts", suggested)
    assert "k_proj" not in r.stderr
    refused(run_cli("train", str(f), "--detach", "--run-dir", str(tmp_path / "run")), suggested)


@pytest.mark.parametrize(("model_type", "targets", "codes"), [
    ("phimoe", ["q_proj", "gate_proj"], ["lora_target_missing"]),
    ("granitemoe", ["router"], ["lora_target_missing"]),
    ("mixtral", ["q_proj", "gate_proj"], ["lora_target_missing"]),
    ("qwen3_moe", ["q_proj", "gate_proj"], ["lora_target_missing", "expert_dropout"]),   # half a pair, dropout
    ("phimoe", ["q_proj", "router"], ["lora_target_missing"]),      # a router: never a LoRA target
])
def test_the_checklist_and_inspect_data_flag_the_names_train_refuses(model_type, targets, codes):
    """The wizard's checklist and `inspect-data --config` ran the dropout rule only: a target list `train` refuses
    from config.json (and the trainer after loading) went unflagged there. The same lora_targets now says it."""
    from engine.config import config_from_dict
    from engine.diagnose.settings_check import check_lora_for_model
    from engine.estimate import model_info_from_config

    arch = model_info_from_config("tiny", {"model_type": model_type, **SHAPES, **MIXTURES[model_type]}, "local").arch
    cfg = config_from_dict({"model": "x", "dataset": {"path": "x.jsonl"},
                            "lora": {"dropout": 0.05, "target_modules": targets}})
    findings = check_lora_for_model(cfg, arch)
    assert [f.code for f in findings] == codes
    assert all(f.severity == "error" and f.evidence.startswith("lora.") for f in findings)


def test_estimate_refuses_it_naming_the_file_the_key_and_the_fix(tmp_path):
    """The default settings on a Mixtral: `estimate` went on to say it fits (exit 0) for a run that stops once the
    model has loaded. Refused like a module the model lacks, from config.json alone (no weights here)."""
    model = config_json_only(tmp_path, "mixtral")
    f = config(tmp_path, model=str(model))
    r = run_cli("estimate", str(f), "--json", "--gpu", "h100-80")
    refused(r, str(f), "lora.dropout: 0.05 cannot apply to this mixtral model's experts", "fix: set lora.dropout: 0")
    assert r.stdout == ""
    r = run_cli("estimate", str(config(tmp_path, "lora: {dropout: 0}\n", str(model))), "--json", "--gpu", "h100-80")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params_trainable"] > 0


def test_train_refuses_it_before_anything_loads_or_is_written(tmp_path):
    """`train` spawned the trainer, which loaded the whole model and only then failed on peft's ValueError. Now the
    launcher refuses it from config.json (here the only file: no weights, no tokenizer to load) before a run
    directory exists."""
    run_dir = tmp_path / "run"
    f = config(tmp_path, model=str(config_json_only(tmp_path, "qwen3_moe")))
    refused(run_cli("train", str(f), "--detach", "--run-dir", str(run_dir)), str(f),
            "lora.dropout: 0.05 cannot apply to this qwen3_moe model's experts", "lora.dropout: 0")
    assert not run_dir.exists()


async def test_the_wizards_checklist_flags_it_and_clears_it_when_dropout_is_0(tmp_path, demo_model_dir):
    """Live: a mixture's config.json with the default dropout is an error on Review's checklist (a launch asks to be
    confirmed); dropout 0 clears it."""
    import shutil

    from tui.app import LorapilotApp
    from wizard_pilot import own_data, own_model_and_data, settle, shown, type_into

    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    demo = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**demo, "model_type": "mixtral", **MIXTURES["mixtral"]}),
                                       encoding="utf-8")
    app = LorapilotApp()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(app, pilot)
        await own_model_and_data(pilot, model, own_data(tmp_path))
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        text = " ".join(shown(app, "#checklist").split())
        assert "LoRA dropout cannot apply to this model's experts" in text, text
        assert "Set lora.dropout to 0" in text, text
        errors = [f for f in app.wizard.findings if f.severity == "error"]
        assert [f.code for f in errors] == ["expert_dropout"]
        assert app.wizard.fixes(errors) == {"lora.dropout": 0}     # what enter on it applies
        await pilot.press("escape")
        await type_into(pilot, "#field-lora-dropout", "0")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert "experts" not in shown(app, "#checklist")
        assert not any(f.code == "expert_dropout" for f in app.wizard.findings)
        app.exit()


def test_inspect_data_with_the_config_flags_it_as_estimate_and_train_refuse_it(tmp_path, demo_model_dir):
    """`inspect-data --config` ran the pre-flight checks without the model's type: the settings' findings showed,
    but not this one, of a config `estimate` and `train` refuse. The demo's weights and tokenizer under a
    mixture's config.json: the data reads, the finding shows, exit 2."""
    import shutil

    from test_bad_input_cli import DEMO_DATA

    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    demo = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**demo, "model_type": "mixtral", **MIXTURES["mixtral"]}),
                                       encoding="utf-8")
    f = config(tmp_path, model=str(model))
    r = run_cli("inspect-data", str(DEMO_DATA), "--config", str(f), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert [x["code"] for x in json.loads(r.stdout)["findings"] if x["severity"] == "error"] == ["expert_dropout"]
    r = run_cli("inspect-data", str(DEMO_DATA), "--config", str(config(tmp_path, "lora: {dropout: 0}\n", str(model))),
                "--json")
    assert "expert_dropout" not in [x["code"] for x in json.loads(r.stdout)["findings"]], r.stdout


def test_the_launcher_reads_the_models_config_json_once(tmp_path, monkeypatch):
    """The launcher's two checks of the model (a multimodal checkpoint, the lora names) each read config.json: a
    hub model's cached file parsed twice. It is read once and passed along."""
    import engine.estimate.model_config as model_config
    from engine.config import load_config
    from engine.train.launch import check_inputs

    f = config(tmp_path, "lora: {dropout: 0, target_modules: [q_proj, v_proj]}\n",
               str(config_json_only(tmp_path, "mixtral")))
    reads, read = [], model_config.read_config_json
    monkeypatch.setattr(model_config, "read_config_json", lambda path: reads.append(path) or read(path))
    check_inputs(load_config(f))
    assert len(reads) == 1
