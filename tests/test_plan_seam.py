"""One plan, read by everyone (engine/plan.py): the trainer runs the plan the estimate shows."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from engine.config import config_from_dict
from engine.estimate import estimate, get_gpu, read_model_config
from engine.plan import Machine, plan_run
from tests.conftest import DEMO_CONFIG, run_cli


def cfg_for(model="llama-3-8b", **training):
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"},
                             "training": {"max_seq_length": 2048, **training}})


@pytest.mark.slow
def test_the_plan_the_trainer_ran_is_the_plan_lorapilot_estimate_shows(finished_demo_run):
    """A real demo training writes its plan to status.json; `lorapilot estimate --json` on the run's own config
    (the dataset tokenized the trainer's way, this machine) plans the same, field by field."""
    ran = json.loads((finished_demo_run / "status.json").read_text())["plan"]
    r = run_cli("estimate", str(finished_demo_run / "config.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["plan"] == ran
    assert ran["lengths_from"] == "dataset" and ran["largest_microbatch_tokens"] > 0
    assert shown["total_steps"] == ran["max_steps"] == yaml.safe_load(
        (finished_demo_run / "config.yaml").read_text())["training"]["max_steps"]
    # The estimate's time of that plan, written beside it for the monitor before a step time is measured
    # (engine.eta.starting_eta): the time `lorapilot estimate` shows, its start-up and compile in it.
    from engine.eta import starting_eta

    status = json.loads((finished_demo_run / "status.json").read_text())
    written = status["estimate"]
    assert written["time_s"] == pytest.approx(shown["time_s"], abs=1e-3)
    assert written["startup_s"] == pytest.approx(shown["startup_s"], abs=1e-3) and written["startup_s"] > 0
    assert written["basis"] == shown["time_basis"]
    at_launch = dict(status, state="loading", phase="model")
    assert starting_eta(at_launch).estimate_s == pytest.approx(shown["time_s"], abs=1e-3)


def test_the_wizard_packs_the_same_lengths_as_lorapilot_estimate(demo_model_dir):
    """The wizard's examples (inspect_dataset, every row) split as the trainer splits them give the lengths
    `lorapilot estimate` tokenizes through load_examples: the same plan, the same numbers."""
    from engine.data import inspect_dataset, split_lengths
    from engine.estimate.dataset_size import token_lengths

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    cfg = config_from_dict(raw)
    report, examples = inspect_dataset(cfg.dataset.path, model=cfg.model, max_seq_length=cfg.training.max_seq_length)
    train, val, why = token_lengths(cfg)
    assert why is None and train
    assert split_lengths(cfg, examples, report.n_rows) == (train, val)
    # the wizard's own path: the trainer's preparation of the config, its validation lengths in the report
    from engine.data import inspect_config
    report, examples = inspect_config(cfg)
    assert ([len(e) for e in examples], report.validation_lengths or None) == (train, val)


def test_a_named_gpu_plans_the_engines_path_there_not_this_machines():
    cfg = cfg_for()
    info = read_model_config(cfg.model)
    on_t4 = plan_run(cfg, Machine.for_gpu(get_gpu("t4")), lengths=[400] * 64, info=info)
    assert on_t4.device == "cuda" and on_t4.liger and on_t4.fused_loss
    assert on_t4.attention == "flex_attention" and on_t4.precision == "fp16"
    here = plan_run(cfg, Machine.for_gpu(None), lengths=[400] * 64, info=info)
    assert here.device == "cpu" and not here.liger and here.attention == "sdpa" and here.precision == "fp32"
    # The fused loss is what keeps a 128k-vocabulary model off the lean path on a 24 GB card (issue 22).
    est = estimate(cfg, info, get_gpu("rtx4090"), lengths=[350] * 400)
    assert est.memory_mode == "fast" and est.plan.fused_loss
    assert next(c for c in est.components if c.name == "logits and loss").gib < 2


def test_largest_microbatch_is_the_real_one_and_the_assumption_is_said():
    cfg = cfg_for()
    info = read_model_config(cfg.model)
    lengths = [100 + (i * 37) % 900 for i in range(200)]
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("h100-80")), lengths=lengths, info=info)
    assert plan.lengths_from == "dataset"
    assert plan.largest_microbatch_tokens == max(sum(lengths[i] for i in mb)
                                                 for ep in plan.step_plan.epochs for step in ep for mb in step)
    assumed = estimate(cfg, info, get_gpu("h100-80"), n_examples=200)
    assert assumed.plan.lengths_from.startswith("assumed: every example fills max_seq_length")
    assert any("assumed" in n for n in assumed.notes)
    assert assumed.plan.largest_microbatch_tokens == 16 * 2048 > plan.largest_microbatch_tokens


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("memory,packing", [("fast", True), ("lean", True), ("fast", False)])
def test_evaluation_never_exceeds_the_training_plan(seed, memory, packing):
    rng = random.Random(seed)
    cfg = cfg_for(memory=memory, packing=packing, max_seq_length=rng.choice([512, 2048, 4096]),
                  micro_batch_size=rng.choice([1, 4, 8]))
    lengths = [min(cfg.training.max_seq_length, int(rng.lognormvariate(5.9, 0.8))) + 1 for _ in range(300)]
    val = [min(cfg.training.max_seq_length, int(rng.lognormvariate(5.9, 0.8))) + 1 for _ in range(40)]
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("a100-80")), lengths=lengths, val_lengths=val)
    assert plan.eval_tokens <= max(plan.largest_microbatch_tokens, max(val))


def test_evaluation_is_in_the_peak_where_it_is_larger():
    """Unfused (no Liger), one long validation example (one example is the smallest evaluation batch) can pass the
    training peak of short training rows: the estimate's peak is then evaluation's."""
    cfg = cfg_for("qwen2.5-7b", memory="lean", micro_batch_size=8, max_seq_length=4096)
    info = read_model_config(cfg.model)
    machine = Machine("cuda", "GPU without Liger", 80.0, kernels=False, bf16=True)
    est = estimate(cfg, info, get_gpu("a100-80"), machine=machine, lengths=[50] * 400, val_lengths=[4096] * 20)
    evaluation = next(c for c in est.components if c.name == "evaluation")
    assert est.plan.eval_batch_size == 1 and est.plan.eval_tokens == 4096 > est.plan.largest_microbatch_tokens
    assert "above training" in evaluation.note
    assert est.peak_allocated_gib > sum(c.gib for c in est.components if c.in_peak)


def test_a_small_evaluation_peak_is_said_in_the_units_the_bar_uses(demo_model_dir):
    """The review showed "evaluation 3 MiB ... peaks at 0.01 GiB" for the demo: the bar's figures said MiB below
    0.1 GiB, the engine's note two decimals of GiB. One rule (engine.settings.mem_text) for both."""
    from engine.settings import mem_text

    cfg = config_from_dict({"model": str(demo_model_dir), "dataset": {"path": "x.jsonl"},
                            "training": {"max_seq_length": 128}})
    est = estimate(cfg, read_model_config(cfg.model), None, lengths=[50] * 400, val_lengths=[50] * 20)
    evaluation = next(c for c in est.components if c.name == "evaluation")
    assert evaluation.gib < 0.1 and " MiB, below training" in evaluation.note and " GiB" not in evaluation.note
    assert mem_text(0.0029) == "3 MiB" and mem_text(0.1) == "0.10 GiB" and mem_text(12.345) == "12.35 GiB"


def test_the_cli_and_the_wizard_word_the_time_alike():
    from engine.estimate.command import _duration
    from tui.widgets.estimate_line import fmt_duration

    for s in (0.4, 42, 61, 600, 5400, 40000):
        assert _duration(s) == fmt_duration(s)


def _trainer_arguments(tmp_path, **training):
    """The TrainingArguments the trainer builds (engine.train.run._training_arguments) for a config on this CPU."""
    from types import SimpleNamespace

    from engine.model import Hardware
    from engine.train.run import _training_arguments

    cfg = cfg_for("lorapilot-demo", max_seq_length=64, **training)
    plan = plan_run(cfg, Machine.for_gpu(None), lengths=[40] * 64)
    hw = Hardware(device="cpu", name="cpu", count=0, memory_gib=None, bf16=False, capability=None)
    inputs = SimpleNamespace(hw=hw, n_ranks=1, dtype_name=plan.precision, data=SimpleNamespace(validation=[]))
    return _training_arguments(cfg, tmp_path, inputs, plan, SimpleNamespace(sharding={})), plan


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant", "constant_with_warmup"])
def test_every_schedule_warms_up_as_warmup_ratio_says(tmp_path, scheduler):
    """training.warmup_ratio is "the fraction of steps spent ramping the learning rate up from 0" for every
    lr_scheduler ("how the learning rate decays after warmup"): transformers' `constant` took no warmup at all, and the
    default 0.03 was dropped without a word (the model card still said "warm-up 0.03")."""
    import torch
    from transformers import get_scheduler

    args, plan = _trainer_arguments(tmp_path, lr_scheduler=scheduler, warmup_ratio=0.1, max_steps=100)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    sched = get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=args.get_warmup_steps(plan.max_steps),
                          num_training_steps=plan.max_steps)
    lrs = []
    for _ in range(plan.max_steps):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(args.learning_rate / 2) and lrs[10] == pytest.approx(args.learning_rate)


@pytest.mark.parametrize("memory", ["auto", "fast", "lean"])
@pytest.mark.parametrize("checkpointing", [True, False])
def test_the_estimate_offloads_what_the_trainer_offloads(memory, checkpointing):
    """RunPlan.offload is what the trainer hands TRL (engine.train.speed.activation_offload) and what the estimate's
    activations read. Lean with checkpointing off planned "activations: offloaded" (TRL then offloads every saved
    tensor) while the estimate kept all 40 GiB of them on the card: the plan offloads only checkpointed layer inputs."""
    from engine.estimate.memory import shape_for_plan

    if memory == "lean" and not checkpointing:
        return   # refused by the config (test_config)
    cfg = cfg_for(memory=memory, gradient_checkpointing=checkpointing)
    info = read_model_config(cfg.model)
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("rtx4090")), lengths=[1500] * 64, info=info)
    assert shape_for_plan(cfg, info.arch, plan).offload == plan.offload
    assert plan.offload == (plan.memory == "lean" and checkpointing)
    assert any(line.startswith("activations: offloaded") for line in plan.lines) == plan.offload


def test_an_explicit_parallelism_on_one_process_is_said():
    """training.parallelism fsdp (num_gpus empty: every visible GPU) on a machine of one GPU trains unsharded: the
    plan's lines (train.log) said nothing of it."""
    cfg = cfg_for(parallelism="fsdp")
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("h100-80")), lengths=[400] * 64, info=read_model_config(cfg.model))
    assert plan.parallelism == "none"
    assert "parallelism: training.parallelism fsdp has no effect on one process; the whole model on its GPU" in plan.lines
    assert not any(line.startswith("parallelism:") for line in plan_run(cfg_for(), Machine.for_gpu(get_gpu("h100-80")),
                                                                        lengths=[400] * 64).lines)


# ------------------------------------------------------------------------------------------ every key, its seam
# How each config key reaches the run, so that none is accepted and then dropped. "args": a TrainingArguments
# attribute the trainer builds (engine.train.run._training_arguments), checked below against the config;
# "plan": a field of the one plan (engine.plan.RunPlan), checked below on a GPU plan and the estimate's;
# "lora": peft's LoraConfig (engine.model.add_lora), checked below against the estimate's trainable parameters;
# else the test that follows the key through its reader ("file.py::test").
SEAMS = {
    "model": "test_plan_seam.py::test_the_wizard_packs_the_same_lengths_as_lorapilot_estimate",
    "dataset.path": "test_plan_seam.py::test_the_wizard_packs_the_same_lengths_as_lorapilot_estimate",
    "dataset.format": "test_data_load.py::test_the_preview_shows_what_the_trainer_trains_on",
    "dataset.validation_split": "test_estimate_pauses.py::test_the_eta_at_step_0_is_the_estimates_time_less_the_start_up_and_the_compile",
    "dataset.validation_path": "test_data_load.py::test_validation_path",
    "dataset.train_on": "test_data_load.py::test_the_preview_shows_what_the_trainer_trains_on",
    "dataset.max_examples": "plan",
    "lora.r": "lora", "lora.alpha": "lora", "lora.dropout": "lora", "lora.target_modules": "lora",
    "quantization": "plan",
    "trust_remote_code": "test_run_safety.py::test_run_dir_trust_remote_code_needs_the_flag",
    "run_name": "test_run_safety.py::test_run_name_cannot_escape_the_runs_root",
    "runs_dir": "test_run_safety.py::test_runs_dir_with_a_tilde_is_the_users_home",
    "training.max_seq_length": "plan", "training.micro_batch_size": "plan",
    "training.gradient_accumulation_steps": "plan", "training.num_epochs": "plan", "training.max_steps": "args",
    "training.learning_rate": "args", "training.lr_scheduler": "args", "training.warmup_ratio": "args",
    "training.optimizer": "args", "training.weight_decay": "args", "training.max_grad_norm": "args",
    "training.gradient_checkpointing": "plan", "training.precision": "plan", "training.memory": "plan",
    "training.compile": "plan", "training.packing": "plan", "training.num_gpus": "plan",
    "training.parallelism": "plan", "training.logging_steps": "args", "training.eval_steps": "args",
    "training.save_steps": "args", "training.save_total_limit": "args", "training.seed": "args",
    "training.report_to": "args",
    "training.stop_on": "test_diagnose_induced.py::test_huge_learning_rate_is_caught_live_and_stops_the_run",
    "training.sample_prompts": "test_samples.py::test_samples_at_every_evaluation_and_they_change",
    "training.sample_max_new_tokens": "test_estimate_pauses.py::test_a_short_cpu_run_counts_its_first_batch_of_samples_at_its_decode_cost",
}


def test_int8_weights_are_never_planned_sharded_and_fsdp_with_int8_is_refused():
    """The estimate counted int8 weights split over the GPUs under fsdp, but only nf4's are stored in a dtype FSDP can
    shard (engine.model), and bitsandbytes' int8 layers keep their scales on the weight object FSDP replaces: auto
    chose fsdp for a 70B in int8 on two 40 GB cards, planning 1/2 of the weights per GPU that no run would hold."""
    from engine.errors import ConfigError
    from engine.estimate.memory import shape_for_plan

    info, gpus = read_model_config("llama-2-70b"), Machine.for_gpu(get_gpu("a100-40"), 2)
    nf4 = plan_run(cfg_for("llama-2-70b", num_gpus=2), gpus, lengths=[400] * 64, info=info)
    assert nf4.parallelism == "fsdp"     # a whole 4-bit 70B per 40 GB card does not fit: sharded, as before
    cfg = config_from_dict({"model": "llama-2-70b", "dataset": {"path": "x.jsonl"}, "quantization": "int8",
                            "training": {"max_seq_length": 2048, "num_gpus": 2}})
    plan = plan_run(cfg, gpus, lengths=[400] * 64, info=info)
    assert plan.parallelism == "ddp" and shape_for_plan(cfg, info.arch, plan).shards == 1
    assert "parallelism: ddp over 2 processes (auto: int8 weights are never sharded, a whole copy per GPU)" in plan.lines
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": "llama-2-70b", "dataset": {"path": "x.jsonl"}, "quantization": "int8",
                          "training": {"parallelism": "fsdp"}})
    (problem,) = e.value.problems
    assert problem.startswith("training.parallelism: fsdp cannot shard quantization: int8 weights (bitsandbytes")
    assert "set quantization nf4 (its 4-bit weights are sharded) or none, or parallelism ddp" in problem


def test_every_config_key_has_a_seam_and_its_test_exists():
    from pathlib import Path

    from engine.config import FIELDS

    assert set(SEAMS) == set(FIELDS), "a config key without a seam: say how the trainer reads it, and test it"
    here = Path(__file__).parent
    for key, where in SEAMS.items():
        if "::" in where:
            file, test = where.split("::")
            assert f"def {test}(" in (here / file).read_text(encoding="utf-8"), key


# key -> (a value other than the default, TrainingArguments attribute, what it must hold there; None: the value)
ARGS = {
    "training.learning_rate": (1e-4, "learning_rate", None),
    "training.lr_scheduler": ("linear", "lr_scheduler_type", None),
    "training.warmup_ratio": (0.1, "warmup_steps", None),
    "training.weight_decay": (0.01, "weight_decay", None),
    "training.max_grad_norm": (1.0, "max_grad_norm", None),
    "training.logging_steps": (3, "logging_steps", None),
    "training.eval_steps": (7, "eval_steps", None),
    "training.save_steps": (11, "save_steps", None),
    "training.save_total_limit": (5, "save_total_limit", None),
    "training.seed": (7, "seed", None),
    "training.max_steps": (13, "max_steps", None),
    "training.optimizer": ("adamw_8bit", "optim", "adamw_torch"),            # the plan's rule: 8-bit needs a GPU
    "training.report_to": (["tensorboard"], "report_to", None),
}


@pytest.mark.parametrize("key", [k for k, v in SEAMS.items() if v == "args"])
def test_each_args_key_is_what_the_trainer_hands_transformers(tmp_path, key):
    value, attr, expected = ARGS[key]
    if key == "training.report_to":
        pytest.importorskip("tensorboard")
    args, plan = _trainer_arguments(tmp_path, **{key.split(".")[1]: value})
    got = getattr(args, attr)
    got = [str(x) for x in got] if isinstance(got, list) else getattr(got, "value", got)   # transformers' enums
    assert got == (value if expected is None else expected), key
    if key == "training.optimizer":
        assert got == plan.optimizer


# key -> [(value, what the plan holds for it)], on one H100 with the data's lengths; the default's first
PLANNED = {
    "dataset.max_examples": [(None, lambda p: p.steps_per_epoch == 4), (32, lambda p: p.steps_per_epoch == 2)],
    "quantization": [(q, lambda p, q=q: p.graph_dequant == (q == "nf4")) for q in ("nf4", "int8", "none")],
    "training.max_seq_length": [(2048, lambda p: p.token_budget == 16 * 2048),
                                (1024, lambda p: p.token_budget == 16 * 1024)],
    "training.micro_batch_size": [(4, lambda p: p.examples_per_step == 16), (2, lambda p: p.examples_per_step == 8)],
    "training.gradient_accumulation_steps": [(4, lambda p: p.examples_per_step == 16),
                                             (1, lambda p: p.examples_per_step == 4)],
    "training.num_epochs": [(3, lambda p: p.max_steps == 3 * p.steps_per_epoch),
                            (1, lambda p: p.max_steps == p.steps_per_epoch)],
    "training.gradient_checkpointing": [(True, lambda p: True), (False, lambda p: True)],   # the shape's, below
    "training.precision": [("auto", lambda p: p.precision == "bf16")]
                          + [(x, lambda p, x=x: p.precision == x) for x in ("bf16", "fp16", "fp32")],
    "training.memory": [("auto", lambda p: p.memory == "fast"), ("fast", lambda p: p.memory == "fast"),
                        ("lean", lambda p: p.memory == "lean" and p.offload and p.optimizer == "paged_adamw_8bit")],
    "training.compile": [("auto", lambda p: not p.compile_layers), (True, lambda p: p.compile_layers),
                         (False, lambda p: not p.compile_layers)],
    "training.packing": [(True, lambda p: p.packing and p.token_budget), (False, lambda p: p.token_budget is None)],
    "training.num_gpus": [(None, lambda p: p.processes == 1), (2, lambda p: p.processes == 2),
                          (1, lambda p: p.processes == 1)],
    "training.parallelism": [(x, lambda p, x=x: p.parallelism == {"auto": "ddp"}.get(x, x))
                             for x in ("auto", "ddp", "fsdp")],
}


@pytest.mark.parametrize("key,value,holds", [(k, v, h) for k, cases in PLANNED.items() for v, h in cases],
                         ids=lambda x: x if isinstance(x, str) else repr(x)[:12] if not callable(x) else "")
def test_each_plan_key_is_in_the_plan_and_the_estimate_reads_the_same_plan(key, value, holds):
    """(a) the plan carries the key; (b) the estimate of the same config and data plans the same, and its memory reads
    the plan's fields."""
    from engine.estimate.command import planned_processes
    from engine.estimate.memory import shape_for_plan

    head, _, tail = key.partition(".")
    raw = {"model": "llama-3-8b", "dataset": {"path": "x.jsonl"}, "training": {"max_seq_length": 2048}}
    if head == "dataset":
        raw["dataset"][tail] = value
    elif head == "training":
        raw["training"][tail] = value
    else:
        raw[key] = value
    if key == "training.parallelism":
        raw["training"]["num_gpus"] = 2
    if key == "quantization":   # the NF4 weights dequantised in the compiled layers' graph
        raw["training"]["compile"] = True
    cfg = config_from_dict(raw)
    info, gpu = read_model_config(cfg.model), get_gpu("h100-80")
    n = planned_processes(cfg, gpu)
    lengths = [300 + (i * 37) % 700 for i in range(64)]
    plan = plan_run(cfg, Machine.for_gpu(gpu, n), lengths=lengths[:cfg.dataset.max_examples], info=info)
    assert holds(plan), (key, value, plan.to_dict())
    est = estimate(cfg, info, gpu, lengths=lengths[:cfg.dataset.max_examples], num_gpus=n)
    assert est.plan.to_dict() == plan.to_dict()
    shape = shape_for_plan(cfg, info.arch, plan)
    assert (shape.precision, shape.optimizer, shape.tokens, shape.compile_layers, shape.offload, shape.quantization,
            shape.gradient_checkpointing, shape.packed) == (
        plan.precision, plan.optimizer, plan.largest_microbatch_tokens, plan.compile_layers, plan.offload,
        cfg.quantization, cfg.training.gradient_checkpointing, plan.packing)


@pytest.mark.parametrize("lora", [{}, {"r": 8, "alpha": 16, "dropout": 0.0}, {"target_modules": ["q_proj", "v_proj"]},
                                  {"r": 4, "target_modules": ["o_proj", "down_proj"], "dropout": 0.2}])
def test_the_adapter_the_trainer_builds_is_the_one_the_estimate_counts(demo_model_dir, lora):
    """lora.*: peft's adapter as the trainer builds it (engine.model.add_lora) has the estimate's trainable parameters,
    and its config the config's values."""
    from transformers import AutoModelForCausalLM

    from engine.model import add_lora

    cfg = config_from_dict({"model": str(demo_model_dir), "dataset": {"path": "x.jsonl"}, "quantization": "none",
                            "lora": lora})
    model = add_lora(AutoModelForCausalLM.from_pretrained(str(demo_model_dir)), cfg, gradient_checkpointing=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    est = estimate(cfg, read_model_config(cfg.model), None, lengths=[50] * 8)
    assert est.params_trainable == trainable
    peft = model.peft_config["default"]
    assert (peft.r, peft.lora_alpha, peft.lora_dropout) == (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout)
    from engine.estimate.params import lora_targets

    assert peft.target_modules == {lin.name for lin in lora_targets(read_model_config(cfg.model).arch,
                                                                     cfg.lora.target_modules)}


@pytest.mark.parametrize("training", [
    {"memory": "lean", "compile": True, "num_gpus": 2, "parallelism": "fsdp", "precision": "fp16",
     "optimizer": "adamw_torch", "lr_scheduler": "constant"},
    {"memory": "fast", "packing": False, "gradient_checkpointing": False, "micro_batch_size": 2, "max_steps": 40,
     "optimizer": "paged_adamw_8bit", "num_gpus": 1, "parallelism": "ddp"},
], ids=["lean-fsdp", "fast-padded"])
def test_lorapilot_estimate_prints_the_plan_the_engine_makes(tmp_path, training):
    """(d) `lorapilot estimate --json` and its table show the plan engine.plan makes of the same config, with every
    value the rules changed (lean's 8-bit optimizer, the processes num_gpus starts, the steps)."""
    from engine.estimate.command import planned_processes

    raw = {"model": "llama-3-8b", "dataset": {"path": "x.jsonl"}, "training": training}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg, gpu = config_from_dict(raw), get_gpu("h100-80")
    mine = estimate(cfg, read_model_config(cfg.model), gpu, n_examples=1000, num_gpus=planned_processes(cfg, gpu))
    r = run_cli("estimate", str(tmp_path / "c.yaml"), "--gpu", "h100-80", "--examples", "1000", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["plan"] == mine.plan.to_dict()
    assert (shown["memory_mode"], shown["precision"], shown["parallelism"], shown["num_gpus"], shown["total_steps"]) \
        == (mine.plan.memory, mine.plan.precision, mine.plan.parallelism, mine.plan.processes, mine.plan.max_steps)
    table = run_cli("estimate", str(tmp_path / "c.yaml"), "--gpu", "h100-80", "--examples", "1000").stdout
    assert f", {mine.plan.optimizer}," in " ".join(table.split()) and f"memory {mine.plan.memory}" in table


def test_report_to_reaches_transformers_as_its_integrations_are_named(tmp_path, monkeypatch):
    """training.report_to [all] reached the trainer as "none" ("all is not installed; skipped"): each entry was looked
    up as a Python module, so `all` never matched, nor azure_ml (module azureml) nor flyte (flytekit)."""
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_azureml_available", lambda: True)
    monkeypatch.setattr(integration_utils, "is_mlflow_available", lambda: False)
    monkeypatch.setattr(integration_utils, "is_flytekit_available", lambda: True)
    monkeypatch.setattr(integration_utils, "is_wandb_available", lambda: False)
    for asked, handed in ((["all"], "all"), (["none"], []), (["azure_ml"], ["azure_ml"]), (["flyte"], ["flyte"]),
                          (["wandb"], []), (["azure_ml", "wandb"], ["azure_ml"])):
        args, _ = _trainer_arguments(tmp_path, report_to=asked)
        assert args.report_to == (handed if handed != "all" else args.report_to), asked
        if handed == "all":   # transformers expands it to every integration installed
            assert args.report_to == integration_utils.get_available_reporting_integrations()


def test_report_to_none_beside_a_logger_is_refused():
    from engine.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        cfg_for(report_to=["none", "tensorboard"])
    assert e.value.problems == ["training.report_to: none turns every logger off; write [none] alone, or the loggers "
                                "without it"]


@pytest.mark.parametrize("num_gpus,detected,said", [(None, False, True), (1, False, False), (2, False, False),
                                                    (None, True, False)])
def test_a_plan_for_a_named_card_says_num_gpus_empty_takes_every_gpu_of_the_pod(num_gpus, detected, said):
    """num_gpus empty is every visible GPU: `lorapilot estimate --gpu h100-80` and the wizard planned one card, and
    the same config on a pod of 4 trained 4 times the examples per step in a quarter of the steps, without a word."""
    import dataclasses

    from engine.estimate.command import estimate_for

    cfg = cfg_for(num_gpus=num_gpus)
    gpu = dataclasses.replace(get_gpu("h100-80"), detected=detected)
    est, _ = estimate_for(cfg, read_model_config(cfg.model), gpu, n_examples=1000)
    note = ("training.num_gpus is empty (every visible GPU): planned on one NVIDIA H100 80GB; on a machine with more "
            "the run trains on all of them, more examples per step and fewer steps; set num_gpus to the count it "
            "will have")
    assert (note in est.notes) == said, est.notes


def test_max_examples_caps_the_examples_the_trainer_keeps_for_training():
    """dataset.max_examples counts rows before the validation share is held out (engine.data): `lorapilot estimate
    --examples 1000` of a config with max_examples 200 and validation_split 0.05 planned 200 training examples, where
    the trainer trains on 190 (13 steps an epoch, not 12)."""
    from engine.estimate.dataset_size import training_examples

    cfg = config_from_dict({"model": "llama-3-8b", "dataset": {"path": "x.jsonl", "max_examples": 200}})
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("h100-80")), n_examples=1000)
    assert training_examples(200, 0.05, False) == 190
    assert plan.steps_per_epoch == -(-190 // 16) == 12
    cfg.dataset.validation_path = "val.jsonl"    # no share held out of the training rows
    assert plan_run(cfg, Machine.for_gpu(get_gpu("h100-80")), n_examples=1000).steps_per_epoch == -(-200 // 16)


def test_the_estimate_counts_the_training_examples_the_trainers_split_keeps():
    """The estimate's count (engine.estimate.dataset_size.training_examples) and the trainer's seeded draw
    (engine.data.split_indices) of every small dataset and split: 2 rows at 0.9 counted 0 training examples. Both
    read one rule, engine.data.validation_count (the estimate had its own copy of the draw's count)."""
    from engine.data import split_indices, validation_count
    from engine.estimate.dataset_size import training_examples

    for n in (*range(0, 40), 199, 200, 201, 1000):
        for split in (0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999):
            train, val = split_indices(n, split, 42)
            assert len(val) == validation_count(n, split) == n - training_examples(n, split, False), (n, split)
            assert len(train) == training_examples(n, split, False), (n, split)
            assert training_examples(n, split, True) == n   # a validation file: no share held out


def test_the_trainers_pre_flight_counts_the_steps_its_plan_runs(tmp_path, monkeypatch):
    """The trainer's own pre-flight (its findings in metrics.jsonl) counted the steps of one process: a run of 2
    took 6 steps while its no_checkpoint check counted 12 and said nothing of a save_steps of 8 never reached."""
    from engine.data import PreparedData
    from engine.data.types import TokenizedExample
    from engine.model import Hardware
    from engine.rundir import read_metrics
    from engine.train.run import _preflight

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    train = [TokenizedExample(input_ids=list(range(5, 25 + k % 7)), labels=list(range(5, 25 + k % 7)),
                              source=f"hand:{k}", full_length=20 + k % 7, trained_tokens=19 + k % 7,
                              trained_tokens_full=19 + k % 7) for k in range(64)]
    cfg = config_from_dict({"model": "lorapilot-demo", "dataset": {"path": "x.jsonl"},
                            "training": {"save_steps": 8, "eval_steps": 1, "logging_steps": 1}})
    hw = Hardware(device="cpu", name="cpu", count=0, memory_gib=None, bf16=False, capability=None)
    _preflight(cfg, PreparedData(train=train, validation=[]), hw, tmp_path)
    plan = plan_run(cfg, Machine("cpu", "cpu", processes=2), lengths=[len(e) for e in train])
    assert plan.max_steps == 6
    found = {r["code"]: r for r in read_metrics(tmp_path) if r["kind"] == "finding"}
    assert "no_checkpoint" in found and f"{plan.max_steps} steps in all" in found["no_checkpoint"]["evidence"]
