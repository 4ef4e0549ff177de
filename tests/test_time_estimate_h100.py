"""The time estimate against the default path's runs on one H100 (benchmarks/results/user_path-s23-h100-2026-12-06.md,
calls 2-4, and user_path-s24-h100-2026-12-06.md, calls 1-2, another lease: `lorapilot train` with the compiled
layers, the first ones checkpointing inside their graph).

Each run is read from its results tarball (the run directory's status.json, metrics.jsonl and config.yaml, and the
side's launch time); the estimate is recomputed here, on the CPU, for the plan the trainer recorded and the tokens it
trained on, and set against what the run measured: its steady step and tokens/s (steps 10-70), the compile (train
begin to step 1, less a steady step) and the whole time from launch to step 1. The summary table is
benchmarks/results/time_estimate-h100-2026-12-06.md."""

from __future__ import annotations

import io
import json
import statistics
import tarfile
from pathlib import Path

import pytest
import yaml

from engine.config import config_from_dict
from engine.estimate import get_gpu, read_model_config
from engine.estimate.estimator import compute
from engine.plan import Machine, RunPlan, plan_run

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
S23, S24 = "user_path-s23-h100-2026-12-06", "user_path-s24-h100-2026-12-06"
RUNS = [(f"{S23}/call2.tgz", "llama2-7b-compiledckfit"), (f"{S23}/call3.tgz", "llama3-8b-compiledckfit"),
        (f"{S23}/call4.tgz", "llama2-7b-compiledckfit"),
        (f"{S24}/call1.tgz", "llama2-7b-compiledmf"), (f"{S24}/call2.tgz", "llama3-8b-compiledmf")]
PRESET = {"llama2-7b": "llama-2-7b", "llama3-8b": "llama-3-8b"}
ROWS = 2000   # every side trained on the same 2,000-row alpaca JSONL (benchmarks/user_path.py), no validation split


def _read_run(tgz: str, name: str) -> dict:
    """The run `name` of a call's tarball: its files, by name, from the nested up.tgz."""
    with tarfile.open(RESULTS / tgz) as outer:
        member = next(m for m in outer.getmembers() if m.name.endswith("levers/up.tgz"))
        inner_bytes = outer.extractfile(member).read()   # type: ignore[union-attr]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for path in (f"./{name}.json", f"./{name}-run/status.json", f"./{name}-run/metrics.jsonl",
                     f"./{name}-run/config.yaml"):
            out[path.rsplit("/", 1)[-1]] = inner.extractfile(path).read().decode()   # type: ignore[union-attr]
    return out


def measured_and_estimated(tgz: str, name: str) -> dict:
    files = _read_run(tgz, name)
    side, status = json.loads(files[f"{name}.json"]), json.loads(files["status.json"])
    assert status["state"] == "done"
    train = {r["step"]: r for r in map(json.loads, files["metrics.jsonl"].splitlines()) if r["kind"] == "train"}
    intervals = [(train[s + 10]["tokens_seen"] - train[s]["tokens_seen"]) / (train[s + 10]["time"] - train[s]["time"])
                 for s in range(10, 70, 10)]
    step_s = (train[70]["time"] - train[10]["time"]) / 60
    begin = train[1]["time"] - train[1]["tokens_seen"] / train[1]["tokens_per_s"]   # step 1's rate runs from it
    model = PRESET[name.split("-compiled")[0]]
    raw = yaml.safe_load(files["config.yaml"])
    cfg = config_from_dict({**raw, "model": model})
    info, gpu = read_model_config(model), get_gpu("h100-80")
    plan = RunPlan(**status["plan"])
    per_row = round(plan.train_tokens / (plan.max_steps * plan.examples_per_step))
    lengths = [per_row] * ROWS
    est = compute(cfg, info, gpu, plan=plan, lengths=lengths)
    steps_s = est.time_s - est.startup_s - est.compile_s - est.pauses_s
    # the plan the estimate makes today for that config on an H100 compiles the same layers the same way
    today = plan_run(cfg, Machine.for_gpu(gpu), lengths=lengths, info=info)
    return {"plan": plan, "today": today,
            "tokens_per_s": (statistics.median(intervals), plan.train_tokens / steps_s),
            "step_s": (step_s, steps_s / plan.max_steps),
            "compile_s": (train[1]["time"] - begin - step_s, est.compile_s),
            "to_step_1": (train[1]["time"] - side["started"], est.startup_s + est.compile_s + steps_s / plan.max_steps)}


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return [measured_and_estimated(tgz, name) for tgz, name in RUNS]


def test_the_runs_are_the_default_path_the_estimate_plans_today(runs):
    for run in runs:
        assert run["plan"].compile_layers and run["plan"].checkpoint_in_graph_layers > 0
        assert run["today"].compile_layers == run["plan"].compile_layers
        assert run["today"].checkpoint_in_graph_layers == run["plan"].checkpoint_in_graph_layers
        assert run["today"].compile_s == run["plan"].compile_s == 90
        # train.log says the compile the estimate counts
        assert f"step 1 comes ~{run['today'].compile_s:.0f} s later" in "\n".join(run["today"].lines)


@pytest.mark.parametrize("quantity", ["tokens_per_s", "step_s"])
def test_the_steady_step_within_10_percent_of_each_run(runs, quantity):
    for run in runs:
        measured, estimated = run[quantity]
        assert abs(estimated / measured - 1) <= 0.10, (quantity, measured, estimated)


def test_the_compile_within_10_percent_of_the_runs_median(runs):
    """One compile is 78-115 s on these runs (median 88) (two compiled classes: the first layers' checkpointed one and the rest):
    the 70 s of one class counted before was 21-39 % short."""
    measured = statistics.median(run["compile_s"][0] for run in runs)
    assert all(run["compile_s"][1] == runs[0]["compile_s"][1] for run in runs)
    assert abs(runs[0]["compile_s"][1] / measured - 1) <= 0.10, (measured, runs[0]["compile_s"][1])


def test_launch_to_step_1_never_20_percent_short_nor_35_percent_long(runs):
    """The start-up is counted at the slower side (engine.estimate.timing: 35.6 s for Llama-2-7B against 19.4 and
    31.7 measured in s23), and the same configs' step 1 came 99-147 s after launch over two leases (Llama-3-8B's
    99 s on the second, with a 78 s compile, is the estimate's 129 s less 31 %): a wait longer than said is what a
    user must not meet, one shorter is the side the estimate errs on."""
    for run in runs:
        measured, estimated = run["to_step_1"]
        assert -0.20 <= estimated / measured - 1 <= 0.35, (measured, estimated)
