"""The monitor's ETA counts the evaluations and saves still to come (engine.eta), on recorded runs with chosen times.

Each run below is written as the trainer writes it (transformers' order at a step: the train record, then the
evaluation and its samples, then the checkpoint; the adapter after the last step), so the real time left at any
record is known exactly: no test depends on how fast this machine is.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.eta import Pace, Schedule, eta, run_schedule
from engine.estimate.timing import EVAL_COST_PER_EXAMPLE, SAVE_COST_STEPS
from tui.models.run_feed import RunFeed
from tui.models.run_history import RunHistory


def recorded_run(max_steps: int, *, step_s: float, eval_every: int | None, eval_s: float, save_every: int,
                 save_s: float, logging: int = 10, samples: int = 0, sample_s: float = 0.0, adapter_s: float = 1.0,
                 first: int = 1, t0: float = 1_800_000_000.0, seed: int = 0, began: bool = True) -> list[dict]:
    """The records of a run from `first` to its end; step times vary +-10 % around step_s.
    began: evaluations and checkpoints say when their pause began, as the trainer writes them since 2026-12-05."""
    rng = random.Random(seed)
    t, out = t0, []
    for step in range(first, max_steps + 1):
        t += step_s * rng.uniform(0.9, 1.1)
        if step == 1 or step % logging == 0:
            out.append({"kind": "train", "step": step, "time": t, "loss": 1.0})
        if eval_every and (step % eval_every == 0 or step == max_steps):
            start, t = t, t + eval_s
            out.append({"kind": "eval", "step": step, "time": t, "eval_loss": 1.0, **({"began": start} if began else {})})
            if samples:
                t += sample_s
                out += [{"kind": "sample", "step": step, "time": t, "prompt": "p", "output": "o"}] * samples
        if step % save_every == 0 or step == max_steps:
            start, t = t, t + save_s
            out.append({"kind": "event", "step": step, "time": t, "code": "checkpoint_saved",
                        "message": "checkpoint saved", "path": f"checkpoints/checkpoint-{step}",
                        **({"began": start} if began else {})})
    t += adapter_s
    out.append({"kind": "event", "step": max_steps, "time": t, "code": "adapter_saved", "message": "adapter saved"})
    return out


def status_for(max_steps: int, schedule: dict | None, *, per_step: int = 16) -> dict:
    st = {"state": "training", "max_steps": max_steps, "plan": {"max_steps": max_steps, "examples_per_step": per_step}}
    if schedule is not None:
        st["schedule"] = schedule
    return st


def history_at(records: list[dict], step: int, status: dict, run_dir: Path) -> tuple[RunHistory, float]:
    """The monitor's history just after the train record at `step`, and the real seconds the run had left then."""
    cut = next(i for i, r in enumerate(records) if r["kind"] == "train" and r["step"] == step)
    h = RunHistory(str(run_dir))
    h.apply_records(records[:cut + 1])
    h.status, h.state = status, "training"
    h.schedule = run_schedule(run_dir, status)
    return h, records[-1]["time"] - records[cut]["time"]


def steps_only(records: list[dict], step: int, max_steps: int) -> float:
    """What the ETA was before engine.eta: steps left over the rate of the last 40 train records."""
    trains = [r for r in records if r["kind"] == "train" and r["step"] <= step][-40:]
    rate = (trains[-1]["step"] - trains[0]["step"]) / (trains[-1]["time"] - trains[0]["time"])
    return (max_steps - step) / rate


# A 7B run on one GPU: 0.8 s a step, an evaluation over a 5 % split every 500 steps (2 minutes), a checkpoint every 200.
GPU_RUN = dict(step_s=0.8, eval_every=500, eval_s=120.0, save_every=200, save_s=3.0)


def test_evaluations_to_come_are_counted(tmp_path):
    recs = recorded_run(2000, **GPU_RUN)
    status = status_for(2000, {"eval_steps": 500, "save_steps": 200, "eval_examples": 1000})
    for step in (950, 1450, 1950):   # after the first evaluation: measured
        h, real = history_at(recs, step, status, tmp_path)
        assert h.eta_s() == pytest.approx(real, rel=0.03), step
        # The scenario is one the step rate alone gets wrong: its window (400 steps) holds no evaluation.
        assert abs(steps_only(recs, step, 2000) - real) > 0.15 * real
        left = h.eta()
        assert left is not None and not left.estimated and left.evals_s == pytest.approx(120.0 * (4 - step // 500))


def test_the_pauses_in_the_step_rate_are_not_counted_twice(tmp_path):
    """logging_steps 1, an evaluation every 100 steps: the last 40 train records hold one evaluation (3x the step
    rate's time) or none, and the steps-only ETA swung between the two; the final evaluation and save were missing."""
    recs = recorded_run(1000, step_s=0.8, eval_every=100, eval_s=60.0, save_every=100, save_s=3.0, logging=1,
                        samples=3, sample_s=8.0)
    status = status_for(1000, {"eval_steps": 100, "save_steps": 100, "eval_examples": 2000})
    for step in (520, 590, 990):
        h, real = history_at(recs, step, status, tmp_path)
        assert h.eta_s() == pytest.approx(real, rel=0.03), step
        assert abs(steps_only(recs, step, 1000) - real) > 0.1 * real, step
    assert h.pace.eval_s() == pytest.approx(68.0)        # samples at an evaluation count as part of it
    assert h.pace.save_s() == pytest.approx(3.0)


def test_before_the_first_evaluation_its_cost_is_the_estimates_rule(tmp_path):
    per_step, n_val = 16, 1000
    rule = n_val / per_step * 0.8 * EVAL_COST_PER_EXAMPLE     # what the sweep's time plan counts an evaluation at
    recs = recorded_run(2000, step_s=0.8, eval_every=500, eval_s=rule, save_every=200, save_s=0.8 * SAVE_COST_STEPS)
    status = status_for(2000, {"eval_steps": 500, "save_steps": 200, "eval_examples": n_val}, per_step=per_step)
    h, real = history_at(recs, 150, status, tmp_path)       # no evaluation and no save yet
    left = h.eta()
    assert left is not None and left.estimated
    assert left.evals_s == pytest.approx(4 * rule, rel=0.03)
    assert left.seconds == pytest.approx(real, rel=0.03)
    assert abs(steps_only(recs, 150, 2000) - real) > 0.03 * real
    # Once one is measured, the measurement replaces the estimate.
    h, _ = history_at(recs, 510, status, tmp_path)
    assert h.eta() is not None and h.eta().evals_s == pytest.approx(3 * rule, rel=1e-6)


def test_a_run_without_evaluation_counts_only_its_saves(tmp_path):
    recs = recorded_run(2000, step_s=0.8, eval_every=None, eval_s=0.0, save_every=200, save_s=3.0)
    status = status_for(2000, {"eval_steps": None, "save_steps": 200, "eval_examples": 0})
    h, real = history_at(recs, 1200, status, tmp_path)
    left = h.eta()
    assert left is not None and left.evals_s == 0 and not left.estimated
    assert left.seconds == pytest.approx(real, rel=0.01)
    # Saves of a few seconds leave the figure where the step rate alone put it.
    assert left.seconds == pytest.approx(steps_only(recs, 1200, 2000), rel=0.02)


def resumed_run(*, killed_at: int, gap_s: float, checkpoint: int = 600) -> list[dict]:
    """GPU_RUN killed after the records of step `killed_at`, resumed `gap_s` later from its checkpoint."""
    before = [r for r in recorded_run(2000, **GPU_RUN) if r["step"] <= killed_at]
    t_restart = before[-1]["time"] + gap_s
    resumed = {"kind": "event", "step": checkpoint, "time": t_restart - 1, "code": "resumed", "message": "resumed"}
    return before + [resumed] + recorded_run(2000, **GPU_RUN, first=checkpoint + 1, t0=t_restart, seed=1)


def test_a_resumed_run_leaves_the_restart_out_of_the_step_time(tmp_path):
    """Killed just after its checkpoint at step 600 was saved, resumed 5 minutes later from it: the interval from
    the last record before the kill to the first one after the resume is a restart, not 10 steps."""
    recs = resumed_run(killed_at=600, gap_s=300.0)
    status = status_for(2000, {"eval_steps": 500, "save_steps": 200, "eval_examples": 1000})
    h, real = history_at(recs, 650, status, tmp_path)
    assert h.eta_s() == pytest.approx(real, rel=0.03)
    assert abs(steps_only(recs, 650, 2000) - real) > 0.15 * real


def test_a_resume_that_reruns_steps_counts_the_rerun_once(tmp_path):
    """Killed at step 750 (records up to it written), resumed from the checkpoint at 600: steps 610-750 again."""
    recs = resumed_run(killed_at=750, gap_s=200.0)
    status = status_for(2000, {"eval_steps": 500, "save_steps": 200, "eval_examples": 1000})
    cut = max(i for i, r in enumerate(recs) if r["kind"] == "train" and r["step"] == 900)   # the re-run's
    h = RunHistory(str(tmp_path))
    h.apply_records(recs[:cut + 1])
    h.status, h.state, h.schedule = status, "training", run_schedule(tmp_path, status)
    assert h.eta_s() == pytest.approx(recs[-1]["time"] - recs[cut]["time"], rel=0.03)


def test_an_older_run_reads_its_schedule_from_config_yaml(tmp_path):
    """status.json written before `schedule` existed: evaluations and saves from config.yaml, no validation split
    no evaluations; the monitor's feed hands the schedule over with the status."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl, validation_split: 0.05}\n"
                                     "training: {eval_steps: 500, save_steps: 200}\n", encoding="utf-8")
    (run / "status.json").write_text(json.dumps(status_for(2000, None)), encoding="utf-8")
    up = RunFeed(run, sample_gpus=False).poll()
    assert up.schedule == Schedule(2000, 500, 200, None, 16)
    assert run_schedule(run, status_for(2000, None), {"dataset": {"validation_split": 0.0},
                                                      "training": {"eval_steps": 500}}).eval_steps is None


def test_the_evaluation_and_save_due_at_this_step_are_still_to_come():
    pace = Pace()
    for rec in recorded_run(1000, step_s=1.0, eval_every=100, eval_s=30.0, save_every=100, save_s=5.0)[:20]:
        pace.add(rec)
    sched = Schedule(1000, 100, 100, None, 16)
    at_100 = eta(pace, sched, 100, evaluated_at=None, saved_at=None)
    done_100 = eta(pace, sched, 100, evaluated_at=100, saved_at=100)
    assert at_100 is not None and done_100 is not None
    assert at_100.evals_s - done_100.evals_s == pytest.approx(30.0)
    assert at_100.saves_s - done_100.saves_s == pytest.approx(5.0)


def test_evaluations_and_saves_between_logged_steps_are_measured(tmp_path):
    """The wizard's own fixes on a small chat set (eval_steps 4, save_steps 13) beside the recipe's logging_steps
    10: every interval between two train records holds an evaluation at a step without one. Their pauses are
    measured from when they began (the trainer's `began`); without it the monitor showed no ETA all run long."""
    recs = recorded_run(54, step_s=1.2, eval_every=4, eval_s=17.0, save_every=13, save_s=2.0, samples=3,
                        sample_s=9.0)
    status = status_for(54, {"eval_steps": 4, "save_steps": 13, "eval_examples": 15})
    for step in (20, 30, 40):
        h, real = history_at(recs, step, status, tmp_path)
        left = h.eta()
        assert left is not None and not left.estimated, step
        assert left.seconds == pytest.approx(real, rel=0.05), step
    assert h.pace.step_s() == pytest.approx(1.2, rel=0.1)
    assert h.pace.save_s() == pytest.approx(2.0)
    # A run written before `began` (no train record at those steps) still has no measure of them: no guess.
    old = recorded_run(54, step_s=1.2, eval_every=4, eval_s=17.0, save_every=13, save_s=2.0, began=False)
    h, _ = history_at(old, 40, status, tmp_path)
    assert h.eta() is None


def with_fast_decode_compile(records: list[dict], compile_s: float) -> list[dict]:
    """The run's first sample batch compiles fast decode (CUDA graphs, about a minute once): the trainer announces it
    with an event after the evaluation's record, and that batch's samples come compile_s later."""
    out, shift, step = [], 0.0, None
    for rec in records:
        if step is None and rec["kind"] == "sample":
            step, shift = rec["step"], compile_s
            out.append({"kind": "event", "step": step, "time": out[-1]["time"], "code": "fast_decode_compile",
                        "message": "samples: fast decode (CUDA graphs); its first batch compiles it"})
        out.append({**rec, "time": rec["time"] + shift, **({"began": rec["began"] + shift} if "began" in rec else {})}
                   if shift else rec)
    return out


def test_fast_decodes_compile_is_paid_once_not_at_every_evaluation_to_come(tmp_path):
    """The first evaluation's samples hold fast decode's compile (57 s on an H200, once): counted as what every
    evaluation costs, the ETA after it was minutes too long (by the compile times the evaluations left)."""
    recs = with_fast_decode_compile(recorded_run(2000, step_s=0.8, eval_every=250, eval_s=20.0, save_every=500,
                                                 save_s=3.0, samples=3, sample_s=2.0), 57.0)
    status = status_for(2000, {"eval_steps": 250, "save_steps": 500, "eval_examples": 400, "samples": True,
                               "sample_batch_s": 2.0})
    for step in (300, 550, 800):
        h, real = history_at(recs, step, status, tmp_path)
        assert h.eta_s() == pytest.approx(real, rel=0.03), step
    assert h.pace.step_s() == pytest.approx(0.8, rel=0.05)   # the compile is no training time either


def test_a_time_no_float_holds_is_no_time_to_the_pace():
    """An integer JSON allows and no float holds (a hand-edited metrics line) as a record's time, or an eval's
    `began`, ended the monitor's ETA in an OverflowError: no time, as a string is."""
    pace = Pace()
    huge = 10 ** 400
    for rec in ({"kind": "train", "step": 1, "time": 100.0}, {"kind": "train", "step": 2, "time": huge},
                {"kind": "train", "step": 3, "time": 104.0}, {"kind": "eval", "step": 3, "time": 110.0, "began": huge}):
        pace.add(rec)
    assert pace.step_s() == pytest.approx(2.0) and pace.eval_s() == pytest.approx(6.0)   # began: the train record's
