"""Measured GPU memory of lorapilot's real training against the estimate (issue 3).

    python benchmarks/vram_calibration.py [--archs llama2-7b,...] [--parallel 3] [--budget-gib 70]
                                          [--json tests/fixtures/vram_measured.json] [--md FILE]
    python benchmarks/vram_calibration.py --plan          # estimates only, no GPU
    python benchmarks/vram_calibration.py --report --md FILE   # the table from the stored rows, no GPU

Each configuration of GRID runs engine.train.run.train (the trainer process's own function, on injected
synthetic tokens, as the throughput benchmark's engine side does) in its own process, so its allocator
counters are clean. Several processes share the GPU at once when their estimated totals fit in
--budget-gib (torch.cuda.max_memory_allocated is per process, so sharing does not change the readings).
Shapes are clean: training.packing false and every example exactly max_seq_length tokens, so each
micro-batch is micro_batch_size x max_seq_length tokens.

Recorded per configuration: the training peak (max_memory_allocated from just before trainer.train to the
end), the load peak (max_memory_allocated while loading and preparing the model), the reserved peak, and
whether Liger's kernels were applied (rows with liger false patch them out, to calibrate the unfused
logits term). The JSON rows carry the model's config.json, so tests/test_estimate_calibration.py can
re-estimate them on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import ARCHS, _gpu_name, _versions, build_model_dir  # noqa: E402

GPU_PRESET = "h100-80"
STEPS = 3
# (arch, max_seq_length, micro_batch_size, gradient_checkpointing, r, liger)
GRID = [
    ("llama2-7b", 512, 1, True, 8, True),
    ("llama2-7b", 2048, 4, True, 16, True),
    ("llama2-7b", 4096, 8, True, 64, True),
    ("llama2-7b", 1024, 2, False, 16, True),
    ("llama2-7b", 2048, 2, False, 32, True),
    ("llama2-7b", 4096, 2, True, 16, False),
    ("llama3-8b", 512, 4, True, 16, True),
    ("llama3-8b", 2048, 8, True, 16, True),
    ("llama3-8b", 4096, 1, False, 8, True),
    ("llama3-8b", 4096, 4, True, 32, True),
    ("llama3-8b", 1024, 4, True, 64, False),
    ("llama3-8b", 2048, 1, False, 16, False),
    ("qwen2.5-1.5b", 512, 8, True, 16, True),
    ("qwen2.5-1.5b", 4096, 8, True, 64, True),
    ("qwen2.5-1.5b", 2048, 4, False, 16, True),
    ("qwen2.5-1.5b", 512, 1, False, 8, True),
    ("qwen2.5-1.5b", 1024, 8, False, 32, False),
    ("qwen2.5-1.5b", 4096, 2, True, 8, False),
]


def row_key(arch, seq, micro, gc, r, liger) -> str:
    return f"{arch} seq{seq} mb{micro} gc{'on' if gc else 'off'} r{r} {'liger' if liger else 'noliger'}"


def training_dict(seq: int, micro: int, gc: bool) -> dict:
    return {"max_seq_length": seq, "micro_batch_size": micro, "gradient_accumulation_steps": 1,
            "gradient_checkpointing": gc, "packing": False, "max_steps": STEPS, "logging_steps": 1}


def lora_dict(r: int) -> dict:
    return {"r": r, "alpha": 2 * r}


def model_config(arch: str) -> dict:
    """The config.json transformers writes for the arch (what read_model_config reads on the GPU machine)."""
    from transformers import AutoConfig

    spec = dict(ARCHS[arch])
    return AutoConfig.for_model(spec.pop("model_type"), **spec).to_dict()


def estimate_row(row: dict):
    """The estimate for a measured row, from its stored config.json (pure Python, no torch)."""
    from engine.config import config_from_dict
    from engine.estimate import estimate, get_gpu, model_info_from_config

    cfg = config_from_dict({"model": row["arch"], "dataset": {"path": "synthetic"}, "lora": lora_dict(row["r"]),
                            "training": training_dict(row["seq"], row["micro"], row["gc"])})
    info = model_info_from_config(row["arch"], row["model_config"], "local")
    return estimate(cfg, info, get_gpu(GPU_PRESET), n_examples=STEPS * row["micro"],
                    tokens_per_microbatch=row["micro"] * row["seq"], fused_loss=row["liger"])


# ----------------------------------------------------------------- one configuration, in its own process
def run_one(spec: dict, work: Path) -> dict:
    import random

    import torch

    import engine.train.speed as speed
    from benchmarks.throughput import run_engine
    from engine.data.types import IGNORE_INDEX, TokenizedExample

    arch, seq, micro, gc, r, liger = (spec[k] for k in ("arch", "seq", "micro", "gc", "r", "liger"))
    applied = {"liger": False}
    original_apply = speed.apply_liger

    def apply_liger(model, device, log):
        if not liger:
            log("kernels: plain PyTorch (vram_calibration: Liger patched out for this row)")
            return False
        applied["liger"] = original_apply(model, device, log)
        return applied["liger"]

    speed.apply_liger = apply_liger
    # train() resets the peak right before trainer.train(): what was allocated up to then is the load peak.
    load_peak = {"gib": None}
    original_reset = torch.cuda.reset_peak_memory_stats

    def reset(device=None):
        if load_peak["gib"] is None:
            load_peak["gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
            load_peak["after_load_gib"] = torch.cuda.memory_allocated() / 2 ** 30
        original_reset(device)

    torch.cuda.reset_peak_memory_stats = reset

    rng = random.Random(0)
    vocab = ARCHS[arch]["vocab_size"]
    examples = []
    for i in range(STEPS * micro):
        ids = [1] + [rng.randrange(100, vocab) for _ in range(seq - 1)]
        n_prompt = int(seq * 0.3)
        examples.append(TokenizedExample(input_ids=ids, labels=[IGNORE_INDEX] * n_prompt + ids[n_prompt:],
                                         source=f"synthetic:{i}", full_length=seq, trained_tokens=seq - n_prompt,
                                         trained_tokens_full=seq - n_prompt))
    model_dir = work / "models" / arch
    out_dir = work / "runs" / row_key(arch, seq, micro, gc, r, liger).replace(" ", "_")
    t0 = time.time()
    run_engine(model_dir, examples, out_dir, training_dict(seq, micro, gc), lora_dict(r), reset_peak=False)
    cuda = torch.cuda.is_available()
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2 ** 30 if cuda else 0.0,
            "load_peak_gib": load_peak["gib"] or 0.0, "after_load_gib": load_peak.get("after_load_gib", 0.0),
            "liger_applied": applied["liger"], "seconds": round(time.time() - t0, 1)}


# ----------------------------------------------------------------- the driver
def _spec(g) -> dict:
    arch, seq, micro, gc, r, liger = g
    return {"arch": arch, "seq": seq, "micro": micro, "gc": gc, "r": r, "liger": liger}


def plan(grid) -> list[tuple[dict, float]]:
    out = []
    for g in grid:
        spec = _spec(g)
        spec["model_config"] = model_config(spec["arch"])
        e = estimate_row(spec)
        out.append((spec, e.device_total_gib))
    return out


def table(rows: list[dict]) -> list[str]:
    lines = ["| arch | seq | micro | checkpointing | r | Liger | measured peak GiB | estimate GiB | error | "
             "measured load GiB | estimate load GiB | reserved GiB | estimate device total GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        e = estimate_row(row)
        err = (e.peak_allocated_gib - row["peak_allocated_gib"]) / row["peak_allocated_gib"]
        lines.append(f"| {row['arch']} | {row['seq']} | {row['micro']} | {'on' if row['gc'] else 'off'} | {row['r']} "
                     f"| {'yes' if row['liger'] else 'no'} | {row['peak_allocated_gib']:.2f} | "
                     f"{e.peak_allocated_gib:.2f} | {err:+.1%} | {row['load_peak_gib']:.2f} | "
                     f"{e.load_peak_gib:.2f} | {row['peak_reserved_gib']:.2f} | {e.device_total_gib:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default=",".join(sorted({g[0] for g in GRID})))
    ap.add_argument("--only", help="comma-separated row indices of GRID")
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--budget-gib", type=float, default=70.0)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--json", default=str(REPO / "tests" / "fixtures" / "vram_measured.json"),
                    help="rows are merged into this file (keyed by configuration)")
    ap.add_argument("--md")
    ap.add_argument("--plan", action="store_true", help="print the estimates only")
    ap.add_argument("--report", action="store_true", help="only rebuild the table (--md) from the --json rows")
    ap.add_argument("--timeout", type=float, default=400)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.one:
        res = run_one(json.loads(a.one), work)
        Path(a.result).write_text(json.dumps(res))
        return

    if a.report:
        write_report(json.loads(Path(a.json).read_text())["rows"], a.md)
        return
    archs = set(a.archs.split(","))
    grid = [g for i, g in enumerate(GRID) if g[0] in archs and (not a.only or str(i) in a.only.split(","))]
    planned = plan(grid)
    if a.plan:
        for spec, total in planned:
            print(f"{row_key(*(spec[k] for k in ('arch', 'seq', 'micro', 'gc', 'r', 'liger'))):55s} "
                  f"estimate device total {total:6.2f} GiB, peak {estimate_row(spec).peak_allocated_gib:6.2f}")
        return

    for arch in sorted({s["arch"] for s, _ in planned}):
        t0 = time.time()
        build_model_dir(arch, work / "models")
        print(f"model {arch} ready ({time.time() - t0:.0f} s)", flush=True)
    json_path = Path(a.json)
    existing = json.loads(json_path.read_text()) if json_path.exists() else {"rows": []}
    by_key = {r["key"]: r for r in existing.get("rows", [])}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    queue = sorted(planned, key=lambda p: -p[1])     # largest first
    running: list[tuple[subprocess.Popen, dict, float, Path, float, object]] = []
    logs = work / "calibration-logs"
    logs.mkdir(parents=True, exist_ok=True)
    done = []
    while queue or running:
        used = sum(p[2] for p in running)
        started = False
        for item in list(queue):
            spec, total = item
            if len(running) < a.parallel and (not running or used + total <= a.budget_gib):
                key = row_key(*(spec[k] for k in ("arch", "seq", "micro", "gc", "r", "liger")))
                res_file = work / f"cal-{key.replace(' ', '_')}.json"
                res_file.unlink(missing_ok=True)
                log = open(logs / f"{key.replace(' ', '_')}.log", "w")
                child = {k: spec[k] for k in ("arch", "seq", "micro", "gc", "r", "liger")}
                p = subprocess.Popen([sys.executable, __file__, "--one", json.dumps(child), "--work", str(work),
                                      "--result", str(res_file)], cwd=REPO, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
                running.append((p, spec, total, res_file, time.time(), log))
                queue.remove(item)
                used += total
                started = True
                print(f"start {key} (estimate {total:.1f} GiB; {used:.1f} GiB running)", flush=True)
        time.sleep(0.5 if started else 2)
        for item in list(running):
            p, spec, total, res_file, t0, log = item
            if p.poll() is None and time.time() - t0 < a.timeout:
                continue
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
            running.remove(item)
            key = row_key(*(spec[k] for k in ("arch", "seq", "micro", "gc", "r", "liger")))
            if p.returncode != 0 or not res_file.exists():
                print(f"FAILED {key} (exit {p.returncode}); see {logs}", flush=True)
                continue
            res = json.loads(res_file.read_text())
            row = {"key": key, **spec, **res, "gpu": _gpu_name(), "versions": _versions(),
                   "date": time.strftime("%Y-%m-%d")}
            if not res["liger_applied"] and spec["liger"]:
                row["liger"] = False     # asked for but not applied (not installed): estimate it unfused
            by_key[key] = row
            done.append(row)
            e = estimate_row(row)
            print(f"done {key}: measured {res['peak_allocated_gib']:.2f} GiB, estimate {e.peak_allocated_gib:.2f} "
                  f"({(e.peak_allocated_gib / res['peak_allocated_gib'] - 1) if res['peak_allocated_gib'] else 0:+.1%})"
                  f"; load {res['load_peak_gib']:.2f} vs {e.load_peak_gib:.2f}; {res['seconds']} s", flush=True)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"rows": sorted(by_key.values(), key=lambda r: r["key"])}, indent=1)
                                 + "\n")
    write_report(sorted(by_key.values(), key=lambda r: r["key"]), a.md)


def write_report(rows: list[dict], md: str | None) -> None:
    first = rows[0] if rows else {}
    errors = [(estimate_row(r).peak_allocated_gib - r["peak_allocated_gib"]) / r["peak_allocated_gib"] for r in rows]
    text = "\n".join([
        f"GPU: {first.get('gpu', '?')}; {first.get('versions', '?')}; {first.get('date', '?')}",
        f"engine.train.run.train, {STEPS} steps, packing off, examples exactly max_seq_length (no padding), "
        "gradient accumulation 1, paged_adamw_32bit, NF4 double quant, bf16, dropout 0.05, all-linear, "
        "random weights; measured = torch.cuda.max_memory_allocated from trainer.train() on (load: before it); "
        "error = (estimate - measured) / measured", ""] + table(rows) + [
        "", f"{len(rows)} rows; error of the training peak: mean {sum(errors) / max(1, len(errors)):+.1%}, "
        f"largest {max(errors, key=abs) if errors else 0:+.1%}"]) + "\n"
    print(text)
    if md:
        Path(md).parent.mkdir(parents=True, exist_ok=True)
        Path(md).write_text(text)


if __name__ == "__main__":
    main()
