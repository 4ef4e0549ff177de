"""Data parallel: the launch command, the per-rank plan, and a real 2-process run (gloo on the CPU)."""

from __future__ import annotations

import json

import sys
from functools import partial

import pytest
import yaml
from conftest import DEMO_CONFIG, run_cli, together

from engine.data.packing import plan_steps
from engine.errors import ConfigError
from engine.rundir import read_metrics, read_status
from engine.train.distributed import (
    CPU_DDP_ENV,
    launch_command,
    num_processes,
    planned_processes,
)


def test_launch_command_single_and_multi():
    assert launch_command("/r", 1, False) == [sys.executable, "-u", "-m", "engine.train.run", "/r"]
    cmd = launch_command("/r", 4, True)
    assert cmd[:5] == [sys.executable, "-u", "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in cmd and cmd[-4:] == ["-m", "engine.train.run", "/r", "--resume"]


def test_num_processes_on_a_machine_without_gpus(monkeypatch):
    monkeypatch.delenv(CPU_DDP_ENV, raising=False)
    monkeypatch.setattr("engine.train.distributed.visible_gpus", lambda: 0)
    assert num_processes(None) == 1 and num_processes(1) == 1
    with pytest.raises(ConfigError, match="training.num_gpus: 2 requested but 0 GPU"):
        num_processes(2)
    assert planned_processes(2) == 2  # what the wizard shows: the count as asked, the error comes at launch
    monkeypatch.setattr("engine.train.distributed.visible_gpus", lambda: 8)
    assert num_processes(None) == 8 and num_processes(2) == 2 and planned_processes(None) == 8


@pytest.mark.parametrize("budget", [None, 300])
def test_every_step_splits_evenly_over_the_ranks(budget):
    lengths = [(i * 37) % 250 + 20 for i in range(130)]
    plan = plan_steps(lengths, examples_per_step=12, num_epochs=1, seed=0, token_budget=budget,
                      micro_batch_size=2, multiple_of=4)
    assert plan.micro_batches_per_step % 4 == 0
    for step in plan.epochs[0][:-1]:
        assert len(step) == plan.micro_batches_per_step and sum(map(len, step)) == 12


def _config(tmp_path, name: str, **training) -> str:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["lora"]["dropout"] = 0.0  # dropout masks differ between process layouts; the math must not
    raw["training"].update(dict(max_seq_length=64, max_steps=4, logging_steps=1, eval_steps=100, save_steps=100,
                                micro_batch_size=2), **training)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_effective_batch(tmp_path, demo_model_dir):
    ddp = _config(tmp_path, "ddp", gradient_accumulation_steps=2, num_gpus=2)
    # The reference makes no samples (one process's samples are the demo run's, in test_samples); the 2-process
    # run keeps its own: rank 0 generating while rank 1 waits is this test's to run.
    one = _config(tmp_path, "one", gradient_accumulation_steps=4, num_gpus=1, sample_max_new_tokens=0)
    r, r_one = together(partial(run_cli, "train", ddp, "--run-dir", str(tmp_path / "ddp"), env={CPU_DDP_ENV: "1"}),
                        partial(run_cli, "train", one, "--run-dir", str(tmp_path / "one")))
    assert r.returncode == 0, r.stderr + (tmp_path / "ddp" / "train.log").read_text()[-3000:]
    assert r_one.returncode == 0, r_one.stderr
    status = read_status(tmp_path / "ddp")
    assert status["state"] == "done" and status["world_size"] == 2
    train = {d: [x for x in read_metrics(tmp_path / d) if x["kind"] == "train"] for d in ("ddp", "one")}
    assert [x["step"] for x in train["ddp"]] == [1, 2, 3, 4]  # rank 0 alone writes: one record per step
    for a, b in zip(train["ddp"], train["one"]):
        # 8 examples per optimizer step either way: 2 ranks x 2 x 2, or 1 x 2 x 4.
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=2e-3), (a, b)
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "8 examples per optimizer step" in log and "over 2 processes" in log
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").exists()



def _parallelism(cfg, n_ranks, device, memory_gib, lengths=(2048,) * 64, kernels=True):
    from engine.estimate import read_model_config
    from engine.plan import Machine, plan_run

    machine = Machine(device, "GPU" if device == "cuda" else "cpu", memory_gib, n_ranks, kernels=kernels)
    plan = plan_run(cfg, machine, lengths=list(lengths), info=read_model_config(cfg.model))
    return plan.parallelism, plan.lines


def test_parallelism_is_fsdp_only_where_one_gpu_is_not_enough():
    from engine.config import config_from_dict

    def cfg(model, mode="auto"):
        return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"},
                                 "training": {"max_seq_length": 2048, "parallelism": mode}})

    assert _parallelism(cfg("llama-2-70b"), 1, "cuda", 24)[0] == "none"
    assert _parallelism(cfg("llama-2-7b"), 2, "cuda", 80)[0] == "ddp"
    mode, lines = _parallelism(cfg("llama-2-70b"), 2, "cuda", 24)
    assert mode == "fsdp" and "fsdp over 2 processes (auto: a whole copy per GPU does not fit)" in lines[0]
    assert _parallelism(cfg("llama-2-70b", "ddp"), 2, "cuda", 24)[0] == "ddp"  # as configured
    assert _parallelism(cfg("llama-2-7b", "fsdp"), 2, "cuda", 80)[0] == "fsdp"
    # CPU ranks (the gloo tests): accelerate does not shard them.
    assert _parallelism(cfg("llama-2-7b", "fsdp"), 2, "cpu", None)[0] == "ddp"


def test_parallelism_asks_about_the_run_as_planned(tmp_path):
    # Qwen2.5-14B's numbers, seq 4096, GPUs capped at 20 GiB: lean with Liger's fused loss fits one GPU (it trained
    # at 11.3 GiB on an H200 capped so), so auto keeps a whole copy per GPU; counting the unfused 152k-vocabulary
    # logits instead (a machine without Liger) shards it.
    import json

    from engine.config import config_from_dict

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 5120,
        "intermediate_size": 13824, "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
        "vocab_size": 152064, "max_position_embeddings": 32768, "tie_word_embeddings": False}))
    cfg = config_from_dict({"model": str(tmp_path), "dataset": {"path": "x.jsonl"},
                            "training": {"max_seq_length": 4096, "micro_batch_size": 1, "memory": "lean"}})
    lengths = [4096] * 64
    assert _parallelism(cfg, 2, "cuda", 20, lengths)[0] == "ddp"
    assert _parallelism(cfg, 2, "cuda", 20, lengths, kernels=False)[0] == "fsdp"
    # a GPU too small for a whole copy even lean: sharded
    assert _parallelism(cfg, 2, "cuda", 10, lengths)[0] == "fsdp"


def test_fsdp_arguments_wrap_the_decoder_layers_and_the_weights_load_shardable(demo_model_dir):
    import torch

    from engine.model import load_base_model
    from engine.train.distributed import fsdp_arguments

    model, dtype = load_base_model(str(demo_model_dir), "nf4", "auto", shardable=True)
    args = fsdp_arguments(model)
    assert args["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert args["fsdp_config"]["version"] == 2 and args["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
    from transformers import (
        TrainingArguments,  # the installed Trainer takes them as they are
    )
    assert TrainingArguments(output_dir=str(demo_model_dir / "unused"), use_cpu=True, **args).fsdp is True
    # accelerate's FSDP2 leaves non-floating 4-bit weights whole on every rank: they are stored in the compute dtype.
    packed = [p for p in model.parameters() if type(p).__name__ == "Params4bit"]
    assert packed and all(p.dtype == getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype]) for p in packed)
    plain, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    assert {p.dtype for p in plain.parameters() if type(p).__name__ == "Params4bit"} == {torch.uint8}


def test_a_sharded_run_makes_no_samples_and_its_plan_says_so():
    # parallelism auto choosing fsdp turned the samples off with a train.log line only: the wizard's review and
    # `lorapilot estimate` said nothing, and the config refuses sample_prompts only under an explicit fsdp.
    from engine.config import config_from_dict
    from engine.estimate import read_model_config
    from engine.estimate.command import plan_words
    from engine.plan import Machine, plan_run

    def plan(model, memory_gib, **training):
        cfg = config_from_dict({"model": model, "dataset": {"path": "x.jsonl"},
                                "training": {"max_seq_length": 2048, **training}})
        machine = Machine("cuda", "GPU", memory_gib, 2, kernels=True)
        return plan_run(cfg, machine, lengths=[2048] * 64, info=read_model_config(cfg.model))

    sharded = plan("llama-2-70b", 24)
    assert sharded.parallelism == "fsdp" and sharded.samples_off == "the model is sharded"
    assert any(line.startswith("samples: off while the model is sharded") for line in sharded.lines)
    assert "samples off (the model is sharded)" in plan_words(sharded)
    whole = plan("llama-2-7b", 80)
    assert whole.parallelism == "ddp" and whole.samples_off is None
    assert "samples" not in plan_words(whole) and not any(line.startswith("samples:") for line in whole.lines)
    asked_none = plan("llama-2-70b", 24, sample_max_new_tokens=0)   # nothing to turn off, nothing said
    assert asked_none.samples_off is None and "samples" not in plan_words(asked_none)


def test_sample_prompts_get_one_answer_whichever_way_the_plan_came_to_shard(tmp_path, capsys, monkeypatch):
    """training.sample_prompts beside an explicit parallelism fsdp is refused by the config; beside parallelism auto
    on several GPUs, which shards a model one GPU cannot hold, the plan turned samples off and the user's prompts
    were dropped with a plan line only. One rule now (the plan's samples_off): the same refusal from the config,
    `lorapilot estimate` and the trainer's plan phase (a new run; a resumed one keeps its plan)."""
    from engine.config import config_from_dict
    from engine.estimate import command, read_model_config
    from engine.plan import Machine, plan_run
    from engine.train import run

    monkeypatch.setattr("engine.wrap.WIDTH", 10_000)
    said = "training.sample_prompts: samples are off while the model is sharded"
    raw = {"model": "llama-2-70b", "dataset": {"path": "x.jsonl"},
           "training": {"max_seq_length": 2048, "num_gpus": 2, "sample_prompts": ["Say hi."]}}
    with pytest.raises(ConfigError) as explicit:
        config_from_dict({**raw, "training": {**raw["training"], "parallelism": "fsdp"}})
    assert [p for p in explicit.value.problems if p.startswith(said)], explicit.value.problems

    cfg = config_from_dict(raw)   # auto: whether it shards is the plan's to say
    plan = plan_run(cfg, Machine("cuda", "GPU", 24, 2, kernels=True), lengths=[2048] * 64,
                    info=read_model_config(cfg.model))
    assert plan.parallelism == "fsdp" and plan.samples_off
    with pytest.raises(ConfigError) as trainer:
        run.refuse_what_the_plan_turns_off(cfg, plan, tmp_path / "config.yaml")
    assert [p for p in trainer.value.problems if p.startswith(said)], trainer.value.problems
    run.refuse_what_the_plan_turns_off(config_from_dict({**raw, "training": {**raw["training"], "sample_prompts": []}}),
                                       plan, tmp_path / "config.yaml")   # nothing asked, nothing refused

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw))
    assert command.main([str(path), "--gpu", "rtx4090", "--examples", "64"]) == 2
    assert said in capsys.readouterr().err
    # the wizard's review, planning on that card, blocks the launch with it
    from textual.app import App

    from engine.estimate import get_gpu
    from tui.wizard_state import WizardState

    state = WizardState(App(), cfg)
    state.estimate, _ = command.estimate_for(cfg, read_model_config(cfg.model), get_gpu("rtx4090"), n_examples=64,
                                             n_val=0)
    assert [p for p in state.blockers() if p.startswith(said)], state.blockers()


def test_sharded_runs_reduce_gradients_in_fp32_and_leave_the_loss_uncast():
    # accelerate's own bf16 policy casts the outputs, the loss included, to bf16 (the 2-GPU run logged 11.1875
    # where one GPU logged 11.2086); the CPU shard tests run with this same policy.
    import torch

    from engine.train.distributed import fsdp_mixed_precision

    policy = fsdp_mixed_precision(torch.bfloat16)
    assert (policy.param_dtype, policy.reduce_dtype, policy.output_dtype) == (torch.bfloat16, torch.float32, None)


def test_the_trainers_fsdp_plugin_keeps_that_policy():
    # The Trainer builds accelerate's plugin from TrainingArguments.fsdp_plugin_args; accelerate then applies
    # the run's mixed precision, which must not replace the policy given.
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    from engine.train.distributed import use_fsdp_mixed_precision

    args = TrainingArguments(output_dir="unused", fsdp=True, bf16=True, use_cpu=True, report_to="none",
                             fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]})
    use_fsdp_mixed_precision(args, torch.bfloat16)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    plugin.set_mixed_precision("bf16")  # what accelerate's state does with the plugin
    assert plugin.mixed_precision_policy.output_dtype is None
    assert plugin.mixed_precision_policy.reduce_dtype == torch.float32
