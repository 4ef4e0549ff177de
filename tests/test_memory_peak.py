"""benchmarks/memory_peak.py: a CUDA memory snapshot read back from its end state to the peak (synthetic snapshot
in torch's format; the real ones come from the GPU)."""

from __future__ import annotations

import pickle

from benchmarks.memory_peak import peak, report

GENERATED = {"filename": "/tmp/torchinductor_root/ab/cabc.py", "line": 7, "name": "call"}
TORCH = {"filename": "/site-packages/torch/nn/functional.py", "line": 1, "name": "linear"}
ENGINE = {"filename": "/repo/engine/train/graph_dequant.py", "line": 75, "name": "_forward"}


def snapshot():
    # at the end: a block from before the recorded window (1000) and C (1150); A and B lived and died in it
    segments = [{"address": 1000, "total_size": 180, "stream": 0, "blocks": [
        {"size": 100, "state": "active_allocated"}, {"size": 50, "state": "inactive"},
        {"size": 30, "state": "active_allocated"}]}]
    trace = [{"action": "alloc", "addr": 2000, "size": 500, "frames": [GENERATED]},
             {"action": "alloc", "addr": 3000, "size": 200, "frames": [TORCH, ENGINE]},
             {"action": "free_requested", "addr": 2000, "size": 500, "frames": []},
             {"action": "free_completed", "addr": 2000, "size": 500, "frames": [ENGINE]},
             {"action": "free_completed", "addr": 3000, "size": 200, "frames": []},
             {"action": "alloc", "addr": 1150, "size": 30, "frames": [ENGINE]}]
    return {"segments": segments, "device_traces": [trace]}


def test_the_peak_is_found_walking_back_from_the_end_state():
    s = snapshot()
    total, at, live = peak(s["device_traces"][0], {1000: 100, 1150: 30})
    assert (total, at, live) == (800, 3, {1000: 100, 2000: 500, 3000: 200})   # after trace[:3]


def test_the_report_names_each_block_by_the_stack_that_allocated_it(tmp_path):
    path = tmp_path / "trainer.pickle"
    path.write_bytes(pickle.dumps(snapshot()))
    text = report(path, top=5)
    assert "peak within the window 0.000 GiB after event 3, 3 blocks alive" in text
    rows = [line for line in text.splitlines() if line.startswith("| 0.")]
    # largest first: inductor's buffer, then the engine's frame (torch's own frame skipped), then the old block
    assert [r.split("|")[3].strip().split(" ")[0] for r in rows] == [
        "/tmp/torchinductor_root/ab/cabc.py:7", "/repo/engine/train/graph_dequant.py:75", "(allocated"]
