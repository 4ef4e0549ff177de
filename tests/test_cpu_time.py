"""Training time on this machine's CPU (engine.estimate.timing): its shape, never its speed (CI is a loaded 2-core
machine). The constants themselves come from benchmarks/cpu_time.py's measurements, named beside each."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.estimate import estimate, read_model_config
from engine.estimate import timing
from engine.estimate.timing import cpu_seconds

REPO = Path(__file__).resolve().parents[1]
LENGTHS = [120] * 400   # examples of 120 tokens: every micro-batch the same, whatever the batching


def cpu_estimate(model: str = "smollm2-135m", **training):
    """The estimate with its time_s as the training steps' alone: the evaluations and saves it adds (pauses_s, priced
    from the step time: tests/test_estimate_pauses.py) and the start-up (tests/test_startup_time.py) are taken back
    out, so the shape asked here is the steps'."""
    cfg = config_from_dict({"model": model, "dataset": {"path": "x.jsonl"},
                            "training": {"max_seq_length": 128, "max_steps": 20, **training}})
    est = estimate(cfg, read_model_config(model), None, lengths=LENGTHS)
    return replace(est, time_s=est.time_s - est.pauses_s - est.startup_s)


def test_more_micro_batches_for_the_same_examples_take_longer():
    one = cpu_estimate(micro_batch_size=8, gradient_accumulation_steps=1)
    four = cpu_estimate(micro_batch_size=2, gradient_accumulation_steps=4)
    assert one.plan.train_tokens == four.plan.train_tokens and one.train_flops == pytest.approx(four.train_flops)
    assert four.plan.micro_batches > one.plan.micro_batches
    assert four.time_s - one.time_s == pytest.approx(
        (four.plan.micro_batches - one.plan.micro_batches) * timing.CPU_SECONDS_PER_MICROBATCH)


def test_a_larger_model_takes_longer_by_its_flops():
    small, large = cpu_estimate("smollm2-135m"), cpu_estimate("llama-2-7b")
    assert small.plan.micro_batches == large.plan.micro_batches and large.train_flops > 10 * small.train_flops
    assert large.time_s - small.time_s == pytest.approx(
        (large.train_flops - small.train_flops) / (timing.cpu_cores() * timing.CPU_GFLOPS_PER_CORE * 1e9))


def test_the_first_steps_warm_up_is_counted_once_a_run():
    """Twice the steps: twice the steps' time, the warm-up once (not twice, not never)."""
    ten, twenty = cpu_estimate(max_steps=10), cpu_estimate(max_steps=20)
    assert twenty.plan.micro_batches == 2 * ten.plan.micro_batches
    assert timing.CPU_FIRST_STEP_S > 0
    assert twenty.time_s - timing.CPU_FIRST_STEP_S == pytest.approx(2 * (ten.time_s - timing.CPU_FIRST_STEP_S))
    assert cpu_seconds(0, 0.0) == timing.CPU_FIRST_STEP_S


def test_more_cores_shorten_only_the_flops():
    flops = 1e13
    two, four = cpu_seconds(10, flops, cores=2), cpu_seconds(10, flops, cores=4)
    assert two - four == pytest.approx(flops / (4 * timing.CPU_GFLOPS_PER_CORE * 1e9))
    assert cpu_seconds(10, 0.0, cores=2) == cpu_seconds(10, 0.0, cores=4)


def test_the_wording_says_this_cpu_what_it_assumes_and_that_a_busy_machine_is_slower():
    est = cpu_estimate()
    assert est.time_basis == "this machine's CPU"
    for said in (f"{timing.cpu_cores()} cores at", "GFLOP/s each", "s a micro-batch", "warm-up", "quiet",
                 "a busy machine takes several times longer"):
        assert said in est.time_basis_detail


def test_each_constant_names_the_measurement_it_came_from():
    lines = (REPO / "engine" / "estimate" / "timing.py").read_text().splitlines()
    for constant in ("CPU_FIRST_STEP_S", "CPU_SECONDS_PER_MICROBATCH", "CPU_GFLOPS_PER_CORE"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{constant} ="))
        above = at
        while lines[above - 1].startswith("#"):
            above -= 1
        comment = " ".join(lines[above:at])
        named = re.findall(r"benchmarks/results/cpu_time-[\w.-]+\.md", comment)
        assert named and all((REPO / path).is_file() for path in named), (constant, comment)
