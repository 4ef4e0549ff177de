"""FSDP2 over the engine's 4-bit model: real sharding across 2 gloo processes on the CPU.

The Trainer's FSDP path (accelerate) shards only CUDA processes, so tests/fsdp_shard_worker.py drives torch's
fully_shard directly, in accelerate's layout, over what the engine builds for it: 4-bit weights stored in the
compute dtype (load_base_model(shardable=True); accelerate leaves 4-bit weights in any other dtype whole on
every rank), the decoder layers fsdp_arguments names, and the hook that gathers the output head before a loss
that reads its weight directly (Liger's fused loss). It shows the weights shard, that a sharded step computes
what the unsharded model computes (bitsandbytes has to rebuild each 4-bit weight's quantisation state after
FSDP gathers it), and that the adapter gathered for saving (FULL_STATE_DICT, as the Trainer asks accelerate)
is the whole adapter with the 1-process values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from conftest import together

WORKER = Path(__file__).with_name("fsdp_shard_worker.py")
TWO_RANKS = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]


def _run(cmd: list[str], precisions: str = "auto") -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WORKER_PRECISION": precisions})


def _records(r: subprocess.CompletedProcess, out: Path, precision: str) -> list[dict]:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [json.loads(f.read_text()) for f in sorted(out.glob(f"rank-*-{precision}.json"))]


# fp32 as the CPU trains; bf16 as a GPU does (frozen weights and 4-bit storage bf16, adapters fp32, gathered in
# bf16 and reduced in fp32), where the sharded sums round differently: looser tolerances. Both precisions in
# one reference process and one 2-rank run, started together: each start of the worker costs more than its
# step.
TOLERANCES = {"auto": 1e-4, "bf16": 5e-3}


@pytest.mark.slow
def test_two_ranks_each_hold_half_and_compute_what_one_process_does(demo_model_dir, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    precisions = ",".join(TOLERANCES)
    single, double = together(partial(_run, [sys.executable, str(WORKER), str(demo_model_dir), str(tmp_path / "one")],
                                      precisions),
                              partial(_run, [*TWO_RANKS, str(demo_model_dir), str(tmp_path / "two")], precisions))
    for precision, rel in TOLERANCES.items():
        (one,) = _records(single, tmp_path / "one", precision)
        ranks = _records(double, tmp_path / "two", precision)
        assert [r["rank"] for r in ranks] == [0, 1], precision
        assert one["held"] == one["whole"]
        for r in ranks:
            assert r["whole"] == one["whole"]
            assert 0.45 * r["whole"] <= r["held"] <= 0.55 * r["whole"]  # the 4-bit weights are sharded too
            assert r["loss"] == pytest.approx(one["loss"], rel=rel / 10), precision
            assert r["grad_norm"] == pytest.approx(one["grad_norm"], rel=rel), precision
            assert r["loss_after_step"] == pytest.approx(one["loss_after_step"], rel=rel), precision
        assert one["loss_after_step"] < one["loss"]  # the step trained something
        # the adapter as saved: gathered whole on rank 0, the same tensors and values as the 1-process adapter
        assert one["adapter_tensors"] > 0 and ranks[0]["adapter_tensors"] == one["adapter_tensors"]
        assert ranks[0]["adapter_elements"] == one["adapter_elements"]
        assert ranks[0]["adapter_norm"] == pytest.approx(one["adapter_norm"], rel=rel), precision


@pytest.mark.slow
def test_without_the_head_hook_the_loss_reads_a_shard(demo_model_dir, tmp_path):
    r = _run([*TWO_RANKS, str(demo_model_dir), str(tmp_path), "--no-head-hook"])
    assert r.returncode != 0 and "DTensor" in r.stderr
