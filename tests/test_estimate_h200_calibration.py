"""The VRAM estimate against the engine's own run on an H200 (benchmarks/vram_calibration.py, issue 22).

Each row of tests/fixtures/vram_measured_h200.json is what a user runs: `lorapilot estimate CONFIG --gpu h200-141
--json`, then `lorapilot train CONFIG`, on a generated variable-length alpaca JSONL through the engine's data path;
measured is the trainer's own allocator peak over training and evaluation. The rows carry the config, the model's
config.json and the tokenized lengths, so the estimate is recomputed here on the CPU. CPU-only, pure Python.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.vram_calibration import errors, estimate_row

pytestmark = pytest.mark.usefixtures("plan_of_the_recorded_runs")
FIXTURE = Path(__file__).parent / "fixtures" / "vram_measured_h200.json"
ROWS = json.loads(FIXTURE.read_text())["rows"]
# Plan fields added after the rows were measured, at the value every one of those runs had: no run compiled its
# decoder layers then (RunPlan.compile_layers came later; the trainer compiled only under a benchmark lever), none
# offloaded part of the layers' inputs (RunPlan.offload_layers), none regenerated its dropout masks
# (RunPlan.mask_free_dropout, RunPlan.mask_hash32), none checkpointed inside a compiled graph
# (RunPlan.checkpoint_in_graph_layers).
ADDED_SINCE = {"compile_layers": False, "graph_dequant": False, "offload_layers": 0, "mask_free_dropout": False,
               "mask_hash32": False, "samples_off": None, "checkpoint_in_graph_layers": 0, "packing_off": None}


def test_the_rows_cover_what_issue_22_asks():
    assert len(ROWS) >= 12 and all(r["state"] == "done" and r["peak_allocated_gib"] for r in ROWS)
    assert {r["arch"] for r in ROWS} >= {"llama2-7b", "llama3-8b", "qwen2.5-7b", "mistral-7b"}
    training = [r["config"]["training"] for r in ROWS]
    assert any(t.keys() <= {"max_seq_length", "max_steps", "eval_steps", "logging_steps", "save_steps",
                            "sample_max_new_tokens"} for t in training)          # the default path
    assert any(t.get("memory") == "lean" for t in training)
    assert any(t.get("packing") is False for t in training)
    assert any(t.get("gradient_checkpointing") is False for t in training)
    assert any(r["config"]["lora"].get("r") == 64 for r in ROWS)
    assert {512, 4096} <= {t["max_seq_length"] for t in training}
    assert 3 * sum(r["held_out"] for r in ROWS) >= len(ROWS)   # a third at least, marked before the runs: 8 of 19
    assert len(set(ROWS[0]["lengths"])) > 50   # variable lengths, not fixed-length rows


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_the_estimate_planned_what_the_trainer_ran(row):
    """The plan `lorapilot estimate --gpu` made on this machine equals the trainer's on the H200, field by field."""
    assert row["estimate_at_run"]["plan"] == row["trainer_plan"]
    assert estimate_row(row).plan.to_dict() == dict(ADDED_SINCE, **row["trainer_plan"])


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_within_10_percent_and_never_more_than_5_percent_low(row):
    (_, estimated, error), = errors([row])
    assert -0.05 <= error <= 0.10, f"estimate {estimated:.2f} GiB vs measured {row['peak_allocated_gib']:.2f}"


THIRD_RUN = ("llama2-r64-512", "llama2-padded-gcoff-1024", "llama2-lean-512")


def test_the_third_run_was_held_out_and_measured_what_was_not():
    """benchmarks/device_jobs/h200-2026-12-03c-vram.sh: rows chosen and committed as held out before they ran,
    each a combination no earlier row measured (r 64 at 512, packing off without checkpointing, lean at 512)."""
    third = [r for r in ROWS if r["name"] in THIRD_RUN]
    assert len(third) == 3 and all(r["held_out"] for r in third)
    earlier = {(json.dumps(r["config"]["training"], sort_keys=True), r["config"]["lora"].get("r"))
               for r in ROWS if r["name"] not in THIRD_RUN and r["arch"] == "llama2-7b"}
    assert all((json.dumps(r["config"]["training"], sort_keys=True), r["config"]["lora"].get("r")) not in earlier
               for r in third)
    held = [err for r, _, err in errors([r for r in ROWS if r["held_out"]])]
    assert len(held) == 8 and all(-0.05 <= e <= 0.10 for e in held)


# Compiled decoder layers, measured on the user's path (`lorapilot train`, benchmarks/user_path.py, H200, transformers
# 5.25; the same peaks on 5.17 in levers-user_path-h200-2026-12-03): config = model + dataset + max_seq_length 2048,
# evaluation off, every step one micro-batch, the largest 8,786 tokens. Peak allocated from each run's result JSON
# (benchmarks/results/user_path-t525-h200-2026-12-03/runs/<arch>-<side>.json), eager beside compiled.
# The token lengths were not stored, so these are points of the largest micro-batch, not fixture rows.
COMPILED_PEAKS = [  # (model, LoRA dropout, eager peak GiB, compiled peak GiB)
    ("llama-2-7b", 0.05, 8.167, 8.506),    # engine / compiled
    ("llama-2-7b", 0.0, 7.231, 7.718),     # nodrop / compiled_nd
    ("llama-3-8b", 0.05, 10.0, 10.502),    # engine / compiled
]


@pytest.mark.parametrize("model,dropout,eager,compiled", COMPILED_PEAKS, ids=lambda v: str(v))
def test_compiled_layers_peaks_within_the_band_and_their_term_near_the_measured_difference(model, dropout, eager,
                                                                                           compiled):
    from engine.config import config_from_dict
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute
    from engine.plan import Machine, plan_run

    cfg = config_from_dict({"model": model, "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                            "lora": {"dropout": dropout}, "training": {"max_seq_length": 2048}})
    info, gpu = read_model_config(model), get_gpu("h200-141")
    plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[8786 // 16] * 1120, info=info)
    est = {on: compute(cfg, info, gpu, plan=replace(plan, compile_layers=on, mask_free_dropout=False),   # peft's
                       tokens_per_microbatch=8786)
           for on in (False, True)}
    error = (est[True].peak_allocated_gib - compiled) / compiled
    assert -0.05 <= error <= 0.10, f"estimate {est[True].peak_allocated_gib:.2f} GiB vs measured {compiled:.2f}"
    term = est[True].peak_allocated_gib - est[False].peak_allocated_gib
    assert term == pytest.approx(compiled - eager, abs=0.15)   # 0.36 / 0.47 GiB against 0.34, 0.49, 0.50


# The compiled layers dequantising the NF4 weights in their graph (RunPlan.graph_dequant, on since session 13),
# measured on the same user's path: benchmarks/results/user_path-s13-h200-2026-12-04 (each run's metrics.jsonl, the
# last step's peak allocated; the runs' plans logged the largest micro-batch). Beside them the bitsandbytes path's
# peak at the same micro-batch: session 12's compiled layers with the fused AdamW (user_path-s12-h200-2026-12-03).
GRAPH_DEQUANT_PEAKS = [  # (model, largest micro-batch tokens, peak GiB)
    ("llama-2-7b", 8786, 8.928),    # call 2's compiledgd, 50 steps
    ("llama-3-8b", 8486, 10.881),   # call 3's compiledgd, 40 steps
]


@pytest.mark.parametrize("model,tokens,measured", GRAPH_DEQUANT_PEAKS, ids=lambda v: str(v))
def test_graph_dequant_peaks_within_the_band(model, tokens, measured):
    from engine.config import config_from_dict
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute
    from engine.plan import Machine, plan_run

    cfg = config_from_dict({"model": model, "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                            "training": {"max_seq_length": 2048, "compile": True}})
    info, gpu = read_model_config(model), get_gpu("h200-141")
    plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[tokens // 16] * 1120, info=info)
    assert plan.compile_layers and plan.graph_dequant      # the plan a GPU runs: compiled, weights in the graph
    plan = replace(plan, mask_free_dropout=False)          # measured with peft's dropout (before session 20)
    est = compute(cfg, info, gpu, plan=plan, tokens_per_microbatch=tokens)
    error = (est.peak_allocated_gib - measured) / measured
    assert -0.05 <= error <= 0.10, f"estimate {est.peak_allocated_gib:.2f} GiB vs measured {measured:.2f}"
    bitsandbytes_path = compute(cfg, info, gpu, plan=replace(plan, graph_dequant=False), tokens_per_microbatch=tokens)
    extra = est.peak_allocated_gib - bitsandbytes_path.peak_allocated_gib
    if model == "llama-2-7b":   # measured beside the bitsandbytes path at the same micro-batch: 8.93 against 8.63
        assert extra == pytest.approx(8.928 - 8.63, abs=0.1)


# Lean with the decoder layers compiled (a long run's lean plan since session 14, at 6,144 tokens per micro-batch),
# measured on the same user's path at three caps: user_path-s14-h200-2026-12-04 (call 3b's leancgd4k and leancgd6k)
# and user_path-s13-h200-2026-12-04 (call 2's leancgd at lean's eager cap: two micro-batches, the largest 8,167).
# Peak allocated from each run's metrics.jsonl at step 50.
LEAN_COMPILED_PEAKS = [  # (largest micro-batch tokens, peak GiB)
    (4096, 5.629),
    (6144, 6.108),
    (8167, 6.698),
]


@pytest.mark.parametrize("tokens,measured", LEAN_COMPILED_PEAKS, ids=lambda v: str(v))
def test_lean_compiled_peaks_within_the_band(tokens, measured):
    from engine.config import config_from_dict
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute
    from engine.plan import LEAN_COMPILED_TOKENS_PER_MICROBATCH, Machine, plan_run

    cfg = config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                            "training": {"max_seq_length": 2048, "memory": "lean", "num_epochs": 8}})
    info, gpu = read_model_config("llama-2-7b"), get_gpu("h200-141")
    plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[410] * 2000, info=info)
    assert plan.compile_layers and plan.graph_dequant and plan.offload    # what a long lean run plans
    assert plan.token_budget == LEAN_COMPILED_TOKENS_PER_MICROBATCH
    est = compute(cfg, info, gpu, plan=replace(plan, mask_free_dropout=False),   # measured with peft's dropout
                  tokens_per_microbatch=tokens)
    error = (est.peak_allocated_gib - measured) / measured
    assert -0.05 <= error <= 0.10, f"estimate {est.peak_allocated_gib:.2f} GiB vs measured {measured:.2f}"


# The mask-free LoRA dropout (the compiled layers' default since session 20), measured on the same user's path on one
# H100 (benchmarks/results/user_path-s20-h100-2026-12-06.md: each run's metrics.jsonl, the largest step's peak
# allocated, the plan's largest micro-batch from train.log), beside the same runs with peft's dropout.
MASK_FREE_PEAKS = [  # (model, memory, largest micro-batch tokens, peak GiB, peak with peft's dropout GiB)
    ("llama-2-7b", "fast", 8786, 8.477, 8.925),
    ("llama-3-8b", "fast", 8786, 10.644, 11.064),
    ("llama-2-7b", "lean", 6144, 5.807, 6.28),
]


@pytest.mark.parametrize("model,memory,tokens,measured,peft", MASK_FREE_PEAKS, ids=lambda v: str(v))
def test_mask_free_dropout_peaks_within_the_band_and_its_saving_near_the_measured(model, memory, tokens, measured,
                                                                                   peft):
    from engine.config import config_from_dict
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute
    from engine.plan import Machine, plan_run

    cfg = config_from_dict({"model": model, "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                            "training": {"max_seq_length": 2048, "compile": True, "memory": memory}})
    info, gpu = read_model_config(model), get_gpu("h100-80")
    plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[tokens // 16] * 1120, info=info)
    assert plan.compile_layers and plan.mask_free_dropout      # what a compiled run plans with the default dropout
    est = compute(cfg, info, gpu, plan=plan, tokens_per_microbatch=tokens)
    error = (est.peak_allocated_gib - measured) / measured
    assert -0.05 <= error <= 0.10, f"estimate {est.peak_allocated_gib:.2f} GiB vs measured {measured:.2f}"
    with_peft = compute(cfg, info, gpu, plan=replace(plan, mask_free_dropout=False), tokens_per_microbatch=tokens)
    assert with_peft.peak_allocated_gib - est.peak_allocated_gib == pytest.approx(peft - measured, abs=0.15)
