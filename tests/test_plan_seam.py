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
    # The estimate's time of that plan, written beside it for the monitor's ETA before the first step
    # (engine.eta.starting_eta): at launch, the time `lorapilot estimate` shows, its start-up and compile in it.
    from engine.eta import starting_eta

    status = json.loads((finished_demo_run / "status.json").read_text())
    written = status["estimate"]
    assert written["time_s"] == pytest.approx(shown["time_s"], abs=1e-3)
    assert written["startup_s"] == pytest.approx(shown["startup_s"], abs=1e-3) and written["startup_s"] > 0
    assert written["basis"] == shown["time_basis"]
    at_launch = dict(status, state="loading", phase="model")
    assert starting_eta(at_launch, status["launched"]).seconds == pytest.approx(shown["time_s"], abs=1e-3)


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
