"""The estimate's time counts what the run does besides its steps, by the rule the monitor's ETA counts by.

A run evaluates every eval_steps over its validation examples and once more at max_steps when that is not a
multiple (transformers' DefaultFlowCallback), generates samples at those evaluations (kept under the budget's
share of the run, engine.train.sample_budget), saves a checkpoint every save_steps and at max_steps, then the
adapter. The wizard's and `lorapilot estimate`'s time counted the steps alone: short by all of that, and the
monitor's ETA at step 0 (engine.eta, which counts them) disagreed with it for the same plan. Now the ETA at step
0, at the estimate's step time with nothing measured, is the estimate's time less the layers' compile.
"""

from __future__ import annotations

import re

import pytest
import yaml

from engine.config import config_from_dict
from tests.conftest import DEMO_CONFIG


def demo_raw(**training) -> dict:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"].update(training)
    return raw


def eta_at_step_0(est, cfg, n_val: int | None) -> float:
    """The monitor's ETA just after the first train records, at the estimate's step time, nothing else measured:
    the schedule as the trainer writes it into status.json, read back as the monitor reads it."""
    from engine.estimate import read_model_config
    from engine.estimate.timing import plan_schedule
    from engine.eta import Pace, eta, run_schedule

    assert est.plan is not None and est.total_steps
    step_s = (est.time_s - est.pauses_s - est.compile_s - est.startup_s) / est.total_steps
    sched = plan_schedule(cfg, est.plan, n_val, read_model_config(cfg.model))
    status = {"max_steps": est.total_steps, "plan": est.plan.to_dict(), "schedule": sched.status_fields()}
    pace = Pace()
    for i in range(3):
        pace.add({"kind": "train", "step": i, "time": 1000.0 + i * step_s})
    left = eta(pace, run_schedule("/nonexistent", status), 0)
    assert left is not None
    return left.seconds


@pytest.mark.parametrize("gpu_name,training,validation_split,evals,saves", [
    # 40 steps, evaluations every 10 (4), checkpoints every 20 (2) and the adapter
    (None, {}, 0.05, 4, 3),
    # eval_steps not dividing max_steps: 7, 14, 21, 28 and the final one at 30; saves at 10, 20, 30, the adapter
    ("h200-141", {"max_steps": 30, "eval_steps": 7, "save_steps": 10}, 0.05, 5, 4),
    # the layers compiled: their compile is the estimate's, not the ETA's; saves at 4, 8, ... 28 and 30
    ("h200-141", {"max_steps": 30, "eval_steps": 30, "save_steps": 4, "compile": True}, 0.05, 1, 9),
    # no validation data: no evaluations, the saves only
    ("t4", {"max_steps": 30, "eval_steps": 7, "save_steps": 10}, 0.0, 0, 4),
    # on the CPU, a first batch of samples that outweighs the steps (3 prompts x 128 tokens): priced alike
    (None, {"max_steps": 54, "eval_steps": 50, "sample_max_new_tokens": 128}, 0.05, 2, 4),
    # no samples: the evaluations alone
    ("h200-141", {"max_steps": 25, "eval_steps": 10, "sample_max_new_tokens": 0}, 0.05, 3, 3),
])
def test_the_eta_at_step_0_is_the_estimates_time_less_the_start_up_and_the_compile(gpu_name, training, validation_split, evals,
                                                                   saves, demo_model_dir):
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.command import estimate_for
    from engine.estimate.dataset_size import dataset_sizes

    raw = demo_raw(**training)
    raw["dataset"]["validation_split"] = validation_split
    cfg = config_from_dict(raw)
    info = read_model_config(cfg.model)
    est, _ = estimate_for(cfg, info, get_gpu(gpu_name) if gpu_name else None)
    assert est.time_s is not None
    assert (est.evaluations, est.saves) == (evals, saves)
    assert est.pauses_s > 0 and (est.compile_s > 0) == bool(training.get("compile")) and est.startup_s > 0
    _, n_val = dataset_sizes(cfg)   # what the trainer holds out: its status.json's eval_examples
    assert bool(n_val) == bool(validation_split)
    assert eta_at_step_0(est, cfg, n_val) == pytest.approx(est.time_s - est.compile_s - est.startup_s, rel=1e-9)


def test_the_estimate_counts_each_evaluation_and_save_at_the_eta_rules_cost(demo_model_dir):
    """Each evaluation at eval_seconds, each save at save_seconds, the samples by the budget's rule."""
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.command import estimate_for
    from engine.estimate.dataset_size import dataset_sizes
    from engine.estimate.timing import eval_seconds, plan_schedule, save_seconds
    from engine.train.sample_budget import SAMPLE_FREE_S

    raw = demo_raw(max_steps=30, eval_steps=7, save_steps=10)
    info = read_model_config(config_from_dict(raw).model)
    quiet = raw | {"training": raw["training"] | {"sample_max_new_tokens": 0}}
    est, _ = estimate_for(config_from_dict(quiet), info, get_gpu("h200-141"))
    sampled, _ = estimate_for(config_from_dict(raw), info, get_gpu("h200-141"))
    assert est.time_s is not None and est.plan is not None
    steps_s = est.time_s - est.pauses_s - est.startup_s
    step_s = steps_s / 30
    _, n_val = dataset_sizes(config_from_dict(raw))
    evals_s = 5 * (eval_seconds(n_val, step_s, est.plan.examples_per_step) or 0.0)
    assert evals_s > 0
    assert est.pauses_s == pytest.approx(evals_s + 4 * save_seconds(step_s))
    # samples: the demo's batches are cheap (24 tokens of 4 layers), all 5 within SAMPLE_FREE_S, as the trainer
    # samples them (the start-up is the same either way)
    batch_s = sampled.plan and plan_schedule(config_from_dict(raw), sampled.plan, n_val, info).sample_batch_s
    assert batch_s and 5 * batch_s < SAMPLE_FREE_S
    assert sampled.startup_s == est.startup_s > 0
    assert sampled.time_s - est.time_s == pytest.approx(5 * batch_s)


def test_the_time_says_what_it_includes(demo_model_dir, capsys):
    from engine.estimate import command

    assert command.main([str(DEMO_CONFIG), "--gpu", "h200-141"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"incl\. \d+ s start-up, 4 evals, 3 saves", table)


def test_a_short_cpu_run_counts_its_first_batch_of_samples_at_its_decode_cost(demo_model_dir):
    """A newcomer's 54-step CPU run was estimated ~12 s, samples priced at 5 % of it; its first batch (3 prompts x
    128 new tokens, NF4 on the CPU) took 86 s. The trainer always samples at the first evaluation: the estimate
    counts that batch at its decode cost, and later ones only within the share, as the trainer does."""
    from engine.estimate import read_model_config
    from engine.estimate.command import estimate_for
    from engine.estimate.timing import sample_batch_seconds
    from engine.train.sample_budget import SAMPLE_TIME_SHARE

    raw = demo_raw(max_steps=54, eval_steps=50, sample_max_new_tokens=128)
    info = read_model_config(config_from_dict(raw).model)
    quiet = raw | {"training": raw["training"] | {"sample_max_new_tokens": 0}}
    est, _ = estimate_for(config_from_dict(quiet), info, None)
    sampled, _ = estimate_for(config_from_dict(raw), info, None)
    assert est.time_s is not None and sampled.time_s is not None
    batch_s = sample_batch_seconds(info.arch, info.params, 3, 128, "cpu", "nf4")
    assert batch_s > SAMPLE_TIME_SHARE * sampled.time_s   # the share alone under-counted it
    # two evaluations (50, 54): the first batch, the second within the share or the free 10 s
    assert batch_s <= sampled.time_s - est.time_s <= batch_s + max(SAMPLE_TIME_SHARE * sampled.time_s, 10.0)
