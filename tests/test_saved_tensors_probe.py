"""benchmarks/saved_tensors.py, the GPU probe of the estimate's per-layer activation rules, in its --tiny mode on the
CPU: the demo's model through the trainer's build path, its table and JSON written, and its counts where
tests/test_estimate_saved_tensors.py pins them (fp32 on the CPU, LoRA dropout 0.05, all-linear) equal to the
estimate's terms. The GPU's own numbers (backward peaks, the step's peak) have no allocator to read here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


def test_tiny_mode_writes_the_table_with_the_estimate_beside_what_the_layers_save(tmp_path):
    from benchmarks.saved_tensors import main

    assert main(["--tiny", "--cases", "0", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "saved_tensors-tiny.md").read_text()
    result = json.loads((tmp_path / "saved_tensors-tiny.json").read_text())
    (case,) = result["cases"]
    assert case["case"] == "dropout 0.05" and case["device"] == "cpu" and case["precision"] == "fp32"
    assert len(case["saved"]) == len(case["recomputed"]) == case["layers"] == 4
    for term in ("saved", "recomputed"):
        # every layer, per token, as the estimate counts it (the CPU test's 0.5 %)
        assert case[term] == pytest.approx([case["estimate"][term]] * 4, rel=0.005), term
        assert f"| dropout 0.05 | {term} (B/token/layer) | {case['estimate'][term]:,.1f} |" in table
    assert "| dropout 0.05 | backward peak (MiB/layer at 80 tokens; estimate: working memory " in table
    assert table.count("- (no GPU)") == 1
    # the CPU's SDPA: o_proj's input is the attention's saved output, as the estimate's CPU rule says
    assert "| dropout 0.05 | o_proj's input is the attention's saved output | yes | yes | - |" in table
