"""The run's start-up (engine.estimate.timing.startup_seconds): launch to the first step, the compile apart. The
estimate, the wizard and the sweep left it out (the sweep added a guess of its own): the $ line was short by it on a
rented GPU. Its shape here, and its constants against the runs they come from (benchmarks/results/), never against
this machine's speed."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from engine.estimate import read_model_config
from engine.estimate import timing
from engine.estimate.timing import startup_seconds

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PRESET = {"llama2-7b": "llama-2-7b", "llama3-8b": "llama-3-8b"}


def test_the_start_up_grows_with_the_checkpoint_read_and_the_tokens_tokenised():
    small = startup_seconds(1_000_000, 10_000, "cuda")
    assert startup_seconds(7_000_000_000, 10_000, "cuda") - small == pytest.approx(
        2 * 6_999_000_000 / timing.LOAD_BYTES_PER_S["cuda"])
    assert startup_seconds(1_000_000, 1_010_000, "cuda") - small == pytest.approx(1e6 / timing.TOKENIZE_TOKENS_PER_S)
    # this machine's CPU reads and quantises the same checkpoint slower than a GPU host
    assert startup_seconds(7_000_000_000, 0, "cpu") > startup_seconds(7_000_000_000, 0, "cuda")
    assert startup_seconds(0, 0, "cuda") == startup_seconds(0, 0, "cpu") == timing.STARTUP_FIXED_S > 0


def measured_h200_startups() -> list[tuple[str, float, int]]:
    """(model, launch to train begin in s, tokens tokenised) of `lorapilot train`'s runs on an H200 kept with their
    run directories: the side's "started", its first train record's time less that record's own duration."""
    found: list[tuple[str, float, int]] = []
    for result in sorted(RESULTS.glob("*h200*/**/*.json")):
        try:
            side = json.loads(result.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(side, dict) or "started" not in side or side.get("arch") not in PRESET:
            continue
        run = result.parent / Path(side.get("log") or "x/x").parent.name
        if not (run / "status.json").is_file():
            continue
        first = next((r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                      if r["kind"] == "train"), None)
        if first is None:   # failed before its first step (user_path-t525's first call)
            continue
        plan = json.loads((run / "status.json").read_text())["plan"]
        per_row = plan["train_tokens"] / (plan["max_steps"] * plan["examples_per_step"])
        rows = 2000   # every side trained on the same 2,000-row JSONL (benchmarks/user_path.py), no validation split
        began = first["time"] - first["tokens_seen"] / first["tokens_per_s"]
        found.append((side["arch"], began - side["started"], round(rows * per_row)))
    return sorted(set(found))   # levers-user_path's second call kept the first call's sides beside its own


def test_the_start_up_of_a_7b_model_on_an_h200_is_what_the_runs_measured_counted_at_the_slower_side():
    runs = measured_h200_startups()
    assert len(runs) >= 5
    for arch in PRESET:
        mine = [(s, tokens) for a, s, tokens in runs if a == arch]
        assert mine, arch
        params = read_model_config(PRESET[arch]).param_count
        estimated = [startup_seconds(params, tokens, "cuda") for _, tokens in mine]
        measured = [s for s, _ in mine]
        # at or above what half the runs took, and not far above the slowest
        assert statistics.median(estimated) >= statistics.median(measured), (arch, measured, estimated)
        assert max(estimated) <= 1.5 * max(measured), (arch, measured, estimated)


def test_the_demos_start_up_on_the_cpu_is_what_the_quiet_runs_measured():
    """benchmarks/cpu_time.py's runs: launch to train begin; the quietest of each case (others ran beside the rest)."""
    runs = json.loads((RESULTS / "cpu_time-2026-12-03" / "runs.json").read_text())["runs"]
    demo = min(r["startup"] for r in runs["demo"]["runs"])
    large = min(r["startup"] for r in runs["llama-85m"]["runs"])
    tokens = 12_633   # the demo's 400 rows as the trainer tokenises them (both cases train on them)
    assert demo <= startup_seconds(997_504, tokens, "cpu") <= 1.25 * demo
    assert large <= startup_seconds(85_000_000, tokens, "cpu") <= 1.25 * large
