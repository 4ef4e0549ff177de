"""A run directory's adapter is loaded (chat, export, a resume's checkpoint) only as the kind lorapilot trains: LoRA on
a causal LM, on its targets. What peft would do with anything else is engine/adapter_config.py's docstring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import unwrapped
from engine.adapter_config import adapter_config_problem
from engine.rundir import adapter_problem, usable_checkpoint


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory, demo_model_dir) -> Path:
    """The adapter a lorapilot trainer saves (add_lora on the demo model, saved by peft), untrained."""
    from engine.config import load_config
    from engine.demo.model import demo_config_path
    from engine.model import add_lora, load_base_model

    cfg = load_config(demo_config_path())
    base, _ = load_base_model(str(demo_model_dir), "none", "auto")
    out = tmp_path_factory.mktemp("saved") / "adapter"
    add_lora(base, cfg, gradient_checkpointing=False).save_pretrained(str(out))
    return out


def _copy(saved: Path, tmp_path: Path, **changes) -> Path:
    ad = tmp_path / "adapter"
    shutil.copytree(saved, ad)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    for key, value in changes.items():
        if value is KeyError:
            del cfg[key]
        else:
            cfg[key] = value(cfg) if callable(value) else value
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    return ad


def _with_tensor(ad: Path, name: str) -> None:
    """adapter_model.safetensors with one more tensor (a float32 zero) of that name, as a file of someone else's."""
    path = ad / "adapter_model.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    header[name] = {"dtype": "F32", "shape": [1], "data_offsets": [len(body), len(body) + 4]}
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + body + bytes(4))


def test_the_adapter_a_trainer_saves_passes_with_keys_a_newer_peft_adds_while_they_are_off(saved_adapter, tmp_path):
    assert adapter_problem(saved_adapter) is None
    # peft drops runtime_config when it loads; a newer peft's key, off, changes nothing
    ad = _copy(saved_adapter, tmp_path, runtime_config={"ephemeral_gpu_offload": False}, some_new_option=None)
    assert adapter_config_problem(ad) is None


@pytest.mark.parametrize("targets", ["all-linear", ["w1", "w2", "w3"]])
def test_a_mixtures_adapter_as_peft_converts_it_passes(tmp_path, targets):
    """peft (transformers 5) moves a mixture's expert targets to target_parameters, with a rank and alpha pattern
    for the fused ones, and may leave target_modules empty: still the adapter lorapilot trained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("mixtral", hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=16, vocab_size=128, intermediate_size=96,
                                  num_local_experts=4, num_experts_per_tok=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets, bias="none",
                                    task_type="CAUSAL_LM")).save_pretrained(str(tmp_path / "adapter"))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["target_parameters"] and saved["alpha_pattern"], saved   # what this test is about
    assert adapter_problem(tmp_path / "adapter") is None


TAMPERED = {
    "another tuner": ("peft_type", "XLORA"),       # X-LoRA loads the adapters its config names, from the hub too
    "another model class": ("task_type", "SEQ_CLS"),
    "no tuner said": ("peft_type", KeyError),
    "a class to import": ("auto_mapping", {"base_model_class": "Evil", "parent_library": "evil"}),
    "a module to import": ("megatron_core", "evil"),
    "base weights rewritten at load": ("init_lora_weights", "pissa"),
    "whole modules replaced": ("modules_to_save", ["lm_head"]),
    "token embeddings replaced": ("trainable_token_indices", [1, 2]),
    "layers copied": ("layer_replication", [[0, 2], [1, 2]]),
    "a module rescaled": ("alpha_pattern", {"q_proj": 320}),
    "all rescaled": ("use_rslora", True),
    "a scale no float holds": ("lora_alpha", 10 ** 400),   # JSON allows it; float() and math.isfinite() raise
    "a rank no float holds": ("r", 10 ** 400),
    "a key lorapilot never sets": ("adapters", {"other": "someone/else"}),
    "a regex of targets": ("target_modules", ".*"),
    "a target left out": ("target_modules", lambda cfg: [t for t in cfg["target_modules"] if t != "q_proj"]),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_an_adapter_config_lorapilot_never_writes_is_refused_naming_the_file_and_key(saved_adapter, tmp_path, case):
    """peft did what the file said: another tuner or model class, code imported, base weights rewritten or
    replaced, the adapter rescaled or partly left out, with no error: a chat or export of something never trained."""
    key, value = TAMPERED[case]
    ad = _copy(saved_adapter, tmp_path, **{key: value})
    problem = adapter_problem(ad)
    assert problem is not None and problem.startswith(str(ad / "adapter_config.json") + ": "), problem
    assert (key if case != "a target left out" else "target_modules") in problem, problem


def test_a_tensor_that_is_no_lora_weight_is_refused_peft_would_load_it_over_the_base(saved_adapter, tmp_path):
    ad = _copy(saved_adapter, tmp_path)
    _with_tensor(ad, "base_model.model.lm_head.weight")
    problem = adapter_problem(ad)
    assert problem == (f"{ad / 'adapter_model.safetensors'}: holds base_model.model.lm_head.weight, which is no LoRA "
                       "weight; peft would load it over the base model's own"), problem


def test_a_resume_skips_a_checkpoint_whose_adapter_would_load_over_the_base(saved_adapter, tmp_path):
    """transformers' resume loads a checkpoint's adapter weights into the model (peft's load_adapter): a tensor in it
    that is no LoRA weight overwrote the base weight of that name, and training went on from there."""
    run = tmp_path / "run"
    for step in (1, 2):
        ckpt = run / "checkpoints" / f"checkpoint-{step}"
        shutil.copytree(saved_adapter, ckpt)
        (ckpt / "trainer_state.json").write_text("{}")
    _with_tensor(run / "checkpoints" / "checkpoint-2", "base_model.model.model.embed_tokens.weight")
    ckpt, skipped = usable_checkpoint(run)
    assert ckpt == str(run / "checkpoints" / "checkpoint-1")
    assert len(skipped) == 1 and "embed_tokens.weight, which is no LoRA weight" in skipped[0], skipped


def test_chat_and_export_of_a_run_whose_adapter_was_tampered_with_exit_2_naming_it(saved_adapter, tmp_path, capsys):
    from engine.cli import main

    run = tmp_path / "run"
    run.mkdir()
    ad = _copy(saved_adapter, run, modules_to_save=["lm_head"])
    base = json.loads((ad / "adapter_config.json").read_text())["base_model_name_or_path"]
    (run / "config.yaml").write_text(f"model: {base}\ndataset: {{path: d.jsonl}}\n")
    (run / "status.json").write_text(json.dumps({"state": "done", "step": 4, "max_steps": 4}))
    for verb in (["export", str(run), "--out", str(tmp_path / "out")], ["chat", str(run), "--prompt", "hi"]):
        assert main(verb) == 2, verb
        err = unwrapped(capsys.readouterr().err)
        assert f"{ad / 'adapter_config.json'}: modules_to_save [\"lm_head\"]" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edited", ["adapter_config.json", "config.yaml", "config.yaml after a checkpoint"])
def test_an_adapter_scaled_unlike_the_run_trained_it_is_refused(saved_adapter, tmp_path, edited):
    """lora_alpha edited in adapter_config.json (or lora.alpha in config.yaml, nothing recorded since): chat and export
    applied the adapter at another strength (alpha / r) than it trained at, without an error. config.yaml edited
    after a checkpoint recorded what the run trained with is no matter: that record is what the run trained with."""
    from engine.config import load_config
    from engine.errors import UserError
    from engine.export.facts import check_trained_adapter
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import run_record

    run = tmp_path / "run"
    run.mkdir()
    ad = _copy(saved_adapter, run, lora_alpha=320 if edited == "adapter_config.json" else 32)
    base = json.loads((ad / "adapter_config.json").read_text())["base_model_name_or_path"]
    (run / "config.yaml").write_text(f"model: {base}\ndataset: {{path: d.jsonl}}\nlora: {{r: 16, alpha: 32}}\n")
    if edited == "config.yaml after a checkpoint":
        ckpt = run / "checkpoints" / "checkpoint-4"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text("{}")
        (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(load_config(run / "config.yaml"), "adamw")))
    if edited != "adapter_config.json":
        (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("alpha: 32", "alpha: 64"))
    cfg = load_config(run / "config.yaml")
    if edited == "config.yaml after a checkpoint":
        check_trained_adapter(run, ad, cfg)
        return
    with pytest.raises(UserError) as e:
        check_trained_adapter(run, ad, cfg)
    mine, trained = (320, 32) if edited == "adapter_config.json" else (32, 64)
    assert str(e.value).startswith(f"{ad / 'adapter_config.json'}: lora_alpha {mine} is not the lora.alpha {trained} "
                                   f"the run trained with ({run / 'config.yaml'}"), str(e.value)
