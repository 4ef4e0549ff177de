"""Where an optimizer step's time goes: torch.profiler over two steady steps of the engine's real trainer.

    python benchmarks/profile_step.py llama2-7b [--memory fast|lean] [--compile] [--levers name=value,...]
                                                [--steps 6] [--out FILE]

Same model, data and accounting as benchmarks/throughput.py (random weights from the config numbers,
16 examples per step). Prints the wall time of the profiled steps against the GPU's busy time (the sum
of kernel times: what is left is the GPU waiting for the host), the kernels and host-side ops that
cost the most, and the host syncs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import bench_examples, build_model_dir, run_engine  # noqa: E402

SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense",
            "aten::item", "cudaMemcpyAsync")


def profiler_callback(first: int, count: int, report: dict):
    """Starts the profiler at step `first` and stops it after `count` steps; fills `report`."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])

    class _Profile(TrainerCallback):
        prof = None
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == first and self.prof is None:
                sync()
                self.prof = torch.profiler.profile(activities=activities)
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.prof is not None and state.global_step == first + count:
                sync()
                report["wall_s"] = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                report["events"] = self.prof.key_averages()
                if report.get("trace"):
                    self.prof.export_chrome_trace(report["trace"])
                report["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0
                self.prof = None
    return _Profile()


def summarise(report: dict, steps: int, top: int) -> str:
    ev = report["events"]
    wall = report["wall_s"]
    # Kernels and copies are the events that run on the device; the aten ops above them carry the same time.
    kernels = [e for e in ev if e.self_device_time_total > 0 and e.device_type.name == "CUDA"]
    gpu_busy = sum(e.self_device_time_total for e in kernels) / 1e6
    host = sum(e.self_cpu_time_total for e in ev if e.device_type.name == "CPU") / 1e6
    lines = [f"profiled {steps} steps: wall {wall:.3f} s, GPU kernels {gpu_busy:.3f} s "
             f"({gpu_busy / wall:.0%} busy), host ops {host:.3f} s; per step {wall / steps:.3f} s; "
             f"peak allocated {report.get('peak_gib', 0):.2f} GiB", ""]
    lines.append("| kernel / op (by GPU time) | calls | GPU s | share |")
    lines.append("|---|---|---|---|")
    for e in sorted(ev, key=lambda e: -e.self_device_time_total)[:top]:
        lines.append(f"| {e.key[:90]} | {e.count} | {e.self_device_time_total / 1e6:.3f} | "
                     f"{e.self_device_time_total / 1e6 / max(gpu_busy, 1e-9):.1%} |")
    lines += ["", "| host op (by self CPU time) | calls | CPU s |", "|---|---|---|"]
    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:top]:
        lines.append(f"| {e.key[:90]} | {e.count} | {e.self_cpu_time_total / 1e6:.3f} |")
    lines += ["", "host syncs and copies:"]
    for e in ev:
        if any(s in e.key for s in SYNC_OPS):
            lines.append(f"  {e.key}: {e.count} calls, {e.self_cpu_time_total / 1e6:.3f} s host")
    lines.append(f"\n{len(kernels)} distinct GPU kernels; "
                 f"{sum(e.count for e in ev if e.key == 'cudaLaunchKernel')} kernel launches")
    return "\n".join(lines)


def switch_levers(spec: str) -> None:
    """engine.train.speed.LEVERS switched in this process, the trainer's: lever_site's one rule for it."""
    import importlib.util

    path = REPO / "benchmarks" / "lever_site" / "sitecustomize.py"
    spec_ = importlib.util.spec_from_file_location("lever_site", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    module.switch_levers(spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b")
    ap.add_argument("--memory", default="fast", choices=("fast", "lean"))
    ap.add_argument("--compile", action="store_true", help="training.compile: true (the decoder layers compiled)")
    ap.add_argument("--levers", default="", help="engine.train.speed.LEVERS to switch, name=value,...")
    ap.add_argument("--trace", help="also write a Chrome trace of the profiled steps here")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--profile", type=int, default=2, help="steps profiled (after steps-profile-1 warm ones)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    a = ap.parse_args()
    work = Path(a.work)
    model_dir = build_model_dir(a.arch, work / "models")
    examples = bench_examples(a.arch, a.steps)
    switch_levers(a.levers)
    report: dict = {"trace": a.trace}
    first = a.steps - a.profile - 1
    training = {"max_seq_length": 2048, "max_steps": a.steps, "logging_steps": 1, "memory": a.memory}
    if a.compile:
        training["compile"] = True
    run_engine(model_dir, examples, work / f"profile-{a.arch}-{a.memory}",
               training, callbacks=[profiler_callback(first, a.profile, report)])
    what = f"memory {a.memory}" + (", compiled layers" if a.compile else "") + (f", levers {a.levers}" if a.levers else "")
    text = f"# {a.arch}, {what}\n\n" + summarise(report, a.profile, a.top)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
