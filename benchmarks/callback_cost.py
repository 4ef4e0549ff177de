"""What the monitor callback costs per step, read off a finished run's metrics (callback_s), and what
each NVML query behind its GPU fields costs on this machine.

    python benchmarks/callback_cost.py RUN_DIR [RUN_DIR...]

callback_s in a train record is the cumulative time RunDirCallback spent in its per-step work; the
step time is the interval between consecutive train records (logging every step).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def nvml_costs() -> str:
    from engine.gpu import _NVML, sample_gpus

    _NVML.ensure()
    if _NVML.lib is None:
        return "NVML: not available"
    nv, h = _NVML.lib, _NVML.handles[0]
    out = []
    for name, fn, args in [("memory", nv.nvmlDeviceGetMemoryInfo, (h,)),
                           ("utilisation", nv.nvmlDeviceGetUtilizationRates, (h,)),
                           ("temperature", nv.nvmlDeviceGetTemperature, (h, 0)),
                           ("power", nv.nvmlDeviceGetPowerUsage, (h,)),
                           ("sample_gpus (all)", sample_gpus, ())]:
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            fn(*args)
            ts.append(time.perf_counter() - t0)
        out.append(f"NVML {name}: median {statistics.median(ts) * 1000:.2f} ms, max {max(ts) * 1000:.2f} ms")
    return "\n".join(out)


def run_costs(run_dir: Path) -> str:
    from engine.rundir import read_metrics

    train = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    cb = [(b["callback_s"] - a["callback_s"]) for a, b in zip(train, train[1:])]
    step = [(b["time"] - a["time"]) for a, b in zip(train, train[1:])]
    per = ", ".join(f"{c * 1000:.1f}" for c in cb)
    return (f"{run_dir.name}: callback per step (ms): {per}\n"
            f"  median {statistics.median(cb) * 1000:.2f} ms of a median {statistics.median(step):.3f} s step = "
            f"{statistics.median(cb) / statistics.median(step):.2%}; total {sum(cb) / sum(step):.2%} (goal < 1 %)")


if __name__ == "__main__":
    print(nvml_costs())
    for d in sys.argv[1:]:
        print(run_costs(Path(d)))
