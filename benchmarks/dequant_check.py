"""NF4 weights dequantised by torch ops (engine.train.graph_dequant) against bitsandbytes' own, on the GPU.

    python benchmarks/dequant_check.py [--out FILE]

For each projection shape of Llama-2-7B and Llama-3-8B: a random bf16 weight quantised by bitsandbytes (NF4,
nested absmax, as the engine loads models), dequantised three ways: bitsandbytes' kernels, our torch ops run
eagerly, and our torch ops compiled by inductor (one generated kernel, as inside the compiled layers). Prints
how many weights differ from bitsandbytes' and by how much, then one projection's forward + backward at 8,192
tokens (the compiled layers' micro-batch) both ways: bitsandbytes' matmul_4bit eagerly, and the compiled
dequantise + matmul, as medians of CUDA-event times and of the host's time per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"llama2-7b q/k/v/o": (4096, 4096), "llama2-7b gate/up": (11008, 4096), "llama2-7b down": (4096, 11008),
          "llama3-8b k/v": (1024, 4096), "llama3-8b gate/up": (14336, 4096), "llama3-8b down": (4096, 14336)}


def main() -> None:
    import torch
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    from engine.train.graph_dequant import dequantize_nf4

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tokens", type=int, default=8192)
    args = ap.parse_args()
    lines = [f"# NF4 dequantise: torch ops against bitsandbytes ({torch.cuda.get_device_name()}, torch "
             f"{torch.__version__}, bitsandbytes {bnb.__version__})", "",
             "| shape | weights | eager ops differ | inductor differs | largest difference |", "|---|---|---|---|---|"]
    compiled = torch.compile(dequantize_nf4, dynamic=False)
    for name, shape in SHAPES.items():
        w = torch.randn(*shape, device="cuda", dtype=torch.bfloat16) * 0.02
        packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        ref = F.dequantize_4bit(packed, state)
        eager = dequantize_nf4(packed, state, torch.bfloat16)
        ours = compiled(packed, state, torch.bfloat16)
        diff = (ours.float() - ref.float()).abs().max().item()
        lines.append(f"| {name} {shape} | {ref.numel():,} | {int((eager != ref).sum())} | {int((ours != ref).sum())} "
                     f"| {diff:.3g} |")
    lines += ["", timing(args.tokens)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def timing(tokens: int) -> str:
    """One Llama-2-7B gate projection, forward and backward through x, both ways."""
    import torch
    import bitsandbytes as bnb

    import engine.train.graph_dequant as gd

    lin = bnb.nn.Linear4bit(4096, 11008, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    lin.weight = bnb.nn.Params4bit(torch.randn(11008, 4096) * 0.02, requires_grad=False, quant_type="nf4",
                                   compress_statistics=True)
    lin = lin.cuda()
    x = torch.randn(tokens, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(tokens, 11008, device="cuda", dtype=torch.bfloat16)

    def step(fn):
        y = fn(x)
        y.backward(g)

    rows = ["| path | GPU ms per fwd+bwd | host ms per fwd+bwd |", "|---|---|---|"]
    eager_fn = lin.forward
    gd.dequantise_in_graph([lin])
    compiled_fn = torch.compile(lin, dynamic=True)
    for name, fn in (("bitsandbytes matmul_4bit (eager)", eager_fn), ("dequantise in graph (inductor)", compiled_fn)):
        for _ in range(5):
            step(fn)
        torch.cuda.synchronize()
        gpu, host = [], []
        for _ in range(20):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            t = time.perf_counter()
            step(fn)
            host.append((time.perf_counter() - t) * 1e3)
            end.record()
            torch.cuda.synchronize()
            gpu.append(start.elapsed_time(end))
        rows.append(f"| {name} | {statistics.median(gpu):.2f} | {statistics.median(host):.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
