"""The VRAM estimate against peaks measured on a real GPU (benchmarks/vram_calibration.py, issue 3).

Each row of tests/fixtures/vram_measured.json is one configuration trained by the engine's own trainer
(engine.train.run.train) on an H100, with torch.cuda.max_memory_allocated over the training steps and
during loading. The estimate must stay within +-10 % of every measured training peak and load peak.
CPU-only: the estimate is pure Python and the rows carry the model's config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.estimate import estimate, get_gpu, model_info_from_config

pytestmark = pytest.mark.usefixtures("plan_of_the_recorded_runs")
FIXTURE = Path(__file__).parent / "fixtures" / "vram_measured.json"
ROWS = json.loads(FIXTURE.read_text())["rows"]
TOLERANCE = 0.10


def estimate_for(row: dict):
    # The same config the calibration trained (benchmarks/vram_calibration.py: training_dict, lora_dict).
    cfg = config_from_dict({
        "model": row["arch"], "dataset": {"path": "synthetic"},
        "lora": {"r": row["r"], "alpha": 2 * row["r"]},
        "training": {"max_seq_length": row["seq"], "micro_batch_size": row["micro"],
                     "gradient_accumulation_steps": 1, "gradient_checkpointing": row["gc"], "packing": False,
                     "max_steps": 3}})
    info = model_info_from_config(row["arch"], row["model_config"], "local")
    return estimate(cfg, info, get_gpu("h100-80"), n_examples=3 * row["micro"],
                    tokens_per_microbatch=row["micro"] * row["seq"], fused_loss=row["liger"])


def test_the_grid_covers_what_issue_3_asks():
    assert len(ROWS) >= 12
    assert {r["arch"] for r in ROWS} >= {"llama2-7b", "llama3-8b", "qwen2.5-1.5b"}
    assert {r["gc"] for r in ROWS} == {True, False}
    assert min(r["seq"] for r in ROWS) <= 512 and max(r["seq"] for r in ROWS) >= 4096
    assert min(r["micro"] for r in ROWS) == 1 and max(r["micro"] for r in ROWS) >= 8
    assert min(r["r"] for r in ROWS) <= 8 and max(r["r"] for r in ROWS) >= 64
    assert {r["liger"] for r in ROWS} == {True, False}   # the fused and the unfused logits term
    assert all(r["liger_applied"] == r["liger"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r["key"] for r in ROWS])
@pytest.mark.parametrize("peak", ["peak_allocated_gib", "load_peak_gib"])
def test_estimate_within_10_percent_of_the_measured_peak(row, peak):
    estimated = getattr(estimate_for(row), peak)
    measured = row[peak]
    error = (estimated - measured) / measured
    assert abs(error) <= TOLERANCE, f"{peak}: estimate {estimated:.2f} GiB vs measured {measured:.2f} ({error:+.1%})"
