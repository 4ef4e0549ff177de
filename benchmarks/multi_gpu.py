"""1 GPU against N GPUs, the same run at the same effective batch: tokens/s ratio and loss curves.

    python benchmarks/multi_gpu.py llama2-7b [--gpus 1,2] [--examples-per-step 64] [--steps 8] [--out FILE]
    python benchmarks/multi_gpu.py qwen2.5-14b --gpus 2,1 --micro 1 --max-seq-length 4096 --gpu-memory-gib 20

--gpu-memory-gib caps each GPU (LORAPILOT_GPU_MEMORY_GIB): a model that needs sharding on cards of that size,
shown on larger ones.

Each side is the engine's trainer (engine.train.run.train) started by torchrun with one process per GPU,
on the throughput benchmark's generated data: micro_batch_size 4 and gradient accumulation chosen so
that micro x accumulation x GPUs = the effective batch on every side, so every optimizer step trains the
same examples (the per-rank plan splits each step's micro-batches across the ranks). Rank 0 writes the
metrics; tokens per step come from the plan, step times from rank 0's records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import (ARCHS, _gpu_name, _versions, build_model_dir, make_examples,  # noqa: E402
                                   run_engine)


def examples_for(a):
    return make_examples(a.steps * a.examples_per_step + 64, ARCHS[a.arch]["vocab_size"], seed=0)


def worker(a) -> None:
    n = int(os.environ.get("WORLD_SIZE", 1))
    accum = a.examples_per_step // (a.micro * n)
    run_engine(Path(a.model_dir), examples_for(a), Path(a.run_dir),
               {"max_seq_length": a.max_seq_length, "max_steps": a.steps, "logging_steps": 1,
                "micro_batch_size": a.micro,
                "gradient_accumulation_steps": accum, "num_gpus": n, "parallelism": a.parallelism})


def step_tokens(a) -> list[int]:
    from engine.data.packing import plan_steps

    ex = examples_for(a)
    plan = plan_steps([len(e) for e in ex], examples_per_step=a.examples_per_step, num_epochs=1, seed=42,
                      token_budget=None, micro_batch_size=a.examples_per_step)
    return [sum(len(ex[i]) for mb in step for i in mb) for step in plan.epochs[0][:a.steps]]


def side(a, n: int) -> dict:
    from engine.rundir import read_metrics

    run_dir = Path(a.work) / f"multi-{a.arch}-{n}gpu-{a.parallelism}"
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           a.arch, "--worker", "--model-dir", str(a.model_dir), "--run-dir", str(run_dir), "--steps", str(a.steps),
           "--examples-per-step", str(a.examples_per_step), "--parallelism", a.parallelism, "--micro", str(a.micro),
           "--max-seq-length", str(a.max_seq_length)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(map(str, range(n))))
    if a.gpu_memory_gib:
        env["LORAPILOT_GPU_MEMORY_GIB"] = str(a.gpu_memory_gib)
    t0 = time.time()
    # Streamed to a file and cut off after --side-timeout: a side that hangs still leaves its log and the rest runs.
    log_path = Path(a.work) / f"multi-{a.arch}-{n}gpu-{a.parallelism}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=a.side_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            code = f"timed out after {a.side_timeout} s"
    output = log_path.read_text(errors="replace")
    print(output, flush=True)
    recs = [r for r in read_metrics(run_dir) if r.get("kind") == "train"]
    times = [b["time"] - x["time"] for x, b in zip(recs, recs[1:])]
    toks = step_tokens(a)[1:]
    st, tk = times[a.warmup:], toks[a.warmup:len(times)]
    chosen = [ln.split("] ", 1)[-1] for ln in output.splitlines()
              if any(k in ln for k in ("parallelism:", "fsdp: rank 0", "memory:", "OutOfMemory", "out of memory"))]
    saved = sorted(f.name for f in (run_dir / "adapter").glob("adapter_model*"))
    if saved:  # a sharded save that gathered only a shard would be a fraction of this size
        from safetensors import safe_open
        with safe_open(str(run_dir / "adapter" / saved[0]), "pt") as f:
            chosen.append(f"adapter saved: {len(list(f.keys()))} tensors, "
                          f"{sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()):,} elements")
    return {"gpus": n, "parallelism": chosen, "gpu": _gpu_name(), "versions": _versions(), "exit": code, "wall_s": round(time.time() - t0, 1), "losses": [r["loss"] for r in recs],
            "grad_norms": [r.get("grad_norm") for r in recs], "step_times": times,
            "tok_s": sum(tk) / sum(st) if st else 0.0, "median_step_s": statistics.median(st) if st else 0.0,
            "peak_alloc_gib": max((max(r.get("gpu_peak_alloc_gib", [0])) for r in recs), default=0.0)}


def _numel(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def table(a, results: list[dict]) -> str:
    base = results[0]
    lines = [f"GPU: {base.get('gpu')} x{max(r['gpus'] for r in results)}; {base.get('versions')}; {time.strftime('%Y-%m-%d')}",
             f"{a.arch}, effective batch {a.examples_per_step} examples per optimizer step (micro-batch {a.micro} x "
             f"accumulation x GPUs), max_seq_length {a.max_seq_length}, {a.steps} steps, first {a.warmup} + 1 excluded"
             + (f"; each GPU capped at {a.gpu_memory_gib:g} GiB" if a.gpu_memory_gib else ""), "",
             *[f"- {r['gpus']} GPU(s): " + "; ".join(r.get("parallelism") or ["one process"]) for r in results], "",
             "| GPUs | tok/s | vs 1 GPU | median step s | peak alloc GiB (rank 0) | exit |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['gpus']} | {r['tok_s']:,.0f} | {r['tok_s'] / base['tok_s'] if base['tok_s'] else 0:.2f}x | "
                     f"{r['median_step_s']:.2f} | {r['peak_alloc_gib']:.1f} | {r['exit']} |")
    lines += ["", "| step | " + " | ".join(f"loss {r['gpus']} GPU" for r in results) + " | "
              + " | ".join(f"grad norm {r['gpus']} GPU" for r in results) + " |",
              "|---" * (1 + 2 * len(results)) + "|"]
    for k in range(max(len(r["losses"]) for r in results)):
        cells = [f"{r['losses'][k]:.4f}" if k < len(r["losses"]) else "-" for r in results]
        cells += [f"{r['grad_norms'][k]:.4f}" if k < len(r["grad_norms"]) and r["grad_norms"][k] else "-"
                  for r in results]
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b")
    ap.add_argument("--gpus", default="1,2")
    ap.add_argument("--examples-per-step", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--side-timeout", type=int, default=900, help="seconds before a side is stopped as hung")
    ap.add_argument("--micro", type=int, default=4, help="training.micro_batch_size")
    ap.add_argument("--max-seq-length", type=int, default=2048)
    ap.add_argument("--gpu-memory-gib", type=float, help="cap each GPU at this much (LORAPILOT_GPU_MEMORY_GIB)")
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--parallelism", default="auto", choices=("auto", "ddp", "fsdp"),
                    help="training.parallelism of the multi-GPU sides (fsdp: the sharded path)")
    ap.add_argument("--out")
    ap.add_argument("--combine", nargs="+", metavar="JSON", help="one table from earlier --out results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    if a.combine:
        results = sorted((r for f in a.combine for r in json.loads(Path(f).read_text())), key=lambda r: r["gpus"])
        text = table(a, results)
        print(text)
        if a.out:
            Path(a.out).write_text(text)
        return
    a.model_dir = build_model_dir(a.arch, Path(a.work) / "models")
    results = []
    for n in [int(x) for x in a.gpus.split(",")]:
        results.append(side(a, n))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "step_times"}), flush=True)
    text = table(a, results)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
        Path(a.out).with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
