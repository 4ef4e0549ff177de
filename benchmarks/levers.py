"""The lever table: each speed lever of the engine's default path added one at a time, measured.

    python benchmarks/levers.py llama2-7b [--steps 8] [--warmup 3] [--out FILE]

Every row is the engine's real trainer (engine.train.run.train) in its own process (clean memory
counters) on the throughput benchmark's data (16 examples per optimizer step, the same examples in the
same steps on every row), with the levers of the rows above it switched on
(engine.train.speed.LEVERS). The first row is the seeds' plain recipe inside the engine: padded
micro-batches of 4 examples x 4, SDPA, plain kernels, fp32 residual stream. A lever is kept in the
default only where it wins; the last row is lean (training.memory: lean), a memory lever.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import (_gpu_name, _versions, bench_examples, build_model_dir, run_child,  # noqa: E402
                                   run_engine, steady, write_out)

# (label, training overrides, lever settings, environment)
OFF = dict(flex_attention=False, liger=False, bf16_stream=False, whole_step=False)
ROWS = [
    ("plain: padded 4 x 4, sdpa, plain kernels, fp32 stream", {"packing": False, "memory": "fast"}, dict(OFF), {}),
    ("+ packing, ~4 examples per micro-batch (1,800 tokens)", {"memory": "fast"},
     dict(OFF, tokens_per_microbatch=1800), {}),
    ("+ flex attention", {"memory": "fast"}, dict(OFF, flex_attention=True, tokens_per_microbatch=1800), {}),
    ("+ Liger kernels", {"memory": "fast"},
     dict(OFF, flex_attention=True, liger=True, tokens_per_microbatch=1800), {}),
    ("+ a whole step per micro-batch", {"memory": "fast"},
     dict(OFF, flex_attention=True, liger=True, whole_step=True), {}),
    ("+ bf16 residual stream (= the default)", {"memory": "fast"}, {}, {}),
    ("+ expandable_segments allocator", {"memory": "fast"}, {},
     {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
    ("lean: + offloaded activations, 8-bit optimizer states", {"memory": "lean"}, {}, {}),
    ("(experiment) default with transformers' compiled create_block_mask instead of the eager block masks",
     {"memory": "fast"}, {"own_block_mask": False}, {}),
    ("(experiment) default + decoder layers compiled (torch.compile, dynamic)", {"memory": "fast", "compile": True},
     {}, {}),
    ("(experiment) default + fused AdamW instead of paged (no per-parameter syncs)", {"memory": "fast"},
     {"fused_optimizer": True}, {}),
]


def run_row(a) -> None:
    from engine.rundir import read_metrics
    from engine.train import speed

    label, training, levers, _ = ROWS[a.row]
    for k, v in levers.items():
        setattr(speed.LEVERS, k, v)
    examples = bench_examples(a.arch, a.steps)
    out = Path(a.work) / f"lever-{a.arch}-{a.row}"
    run_engine(Path(a.model_dir), examples, out, {"max_seq_length": 2048, "max_steps": a.steps,
                                                   "logging_steps": 1, **training})
    import torch
    recs = [r for r in read_metrics(out) if r.get("kind") == "train"]
    times = [r["time"] for r in recs]
    res = {"arch": a.arch, "row": a.row, "label": label, "losses": [r["loss"] for r in recs][:4],
           "step_times": [times[i] - times[i - 1] for i in range(1, len(times))],
           "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else 0.0,
           "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2 ** 30 if torch.cuda.is_available() else 0.0,
           "gpu": _gpu_name(), "versions": _versions(), "date": time.strftime("%Y-%m-%d")}
    Path(a.result).write_text(json.dumps(res))


def table(results: list[dict], warmup: int) -> str:
    first = results[0] if results else {}
    lines = [f"GPU: {first.get('gpu', '?')}; {first.get('versions', '?')}; {first.get('date', '?')}", "",
             "| lever (cumulative) | tok/s (trained) | vs previous | median step s | peak alloc GiB | reserved GiB "
             "| first losses |", "|---|---|---|---|---|---|---|"]
    prev = None
    # Experiments and lean branch off the default: they are compared with it, not with the row above.
    default = next((steady(r, warmup)["tok_s"] for r in results if "= the default" in r["label"]), None)
    for res in results:
        s = steady(res, warmup)
        branch = res["label"].startswith(("(experiment)", "lean:")) and default
        base = default if branch else prev
        ratio = (f"{s['tok_s'] / base:.2f}x" + (" vs default" if branch else "")) if base else "-"
        lines.append(f"| {res['label']} | {s['tok_s']:,.0f} ({s['trained_s']:,.0f}) | {ratio} | "
                     f"{s['median_step_s']:.2f} | {res['peak_alloc_gib']:.1f} | {res['peak_reserved_gib']:.1f} | "
                     + ", ".join(f"{x:.3f}" for x in res["losses"]) + " |")
        if not branch:
            prev = s["tok_s"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b")
    ap.add_argument("--rows", default=",".join(str(i) for i in range(len(ROWS))))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    ap.add_argument("--retable", metavar="DIR")
    ap.add_argument("--row", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.row is not None:
        run_row(a)
        return
    work = Path(a.work)
    if a.retable:
        results = sorted((json.loads(f.read_text()) for f in Path(a.retable).glob(f"lever-{a.arch}-*.json")),
                         key=lambda r: r["row"])
    else:
        work.mkdir(parents=True, exist_ok=True)
        model_dir = build_model_dir(a.arch, work / "models")
        results = []
        for row in [int(r) for r in a.rows.split(",")]:
            res = run_child(__file__, [a.arch, "--row", str(row), "--model-dir", str(model_dir), "--steps",
                                       str(a.steps), "--work", str(work)], work / f"lever-{a.arch}-{row}.json",
                            ROWS[row][0], env=ROWS[row][3])
            if res:
                results.append(res)
                print(table(results[-1:], a.warmup).splitlines()[4], flush=True)
    write_out(table(results, a.warmup), a.out)


if __name__ == "__main__":
    main()
