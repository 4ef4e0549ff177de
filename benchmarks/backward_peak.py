"""What is alive at the peak of a compiled layer's backward, per graph node, on the CPU: the default compiled path
(transformers' checkpoint around the compiled forward: the forward graph again, then the backward graph) against
LEVERS.checkpoint_in_graph (one backward graph that recomputes what it reads).

    python benchmarks/backward_peak.py [--tokens 400] [--dropout 0.1] [--precision bf16] [--top 20]

The demo's 4-bit Llama (engine.demo: hidden 128, MLP 384), LoRA on the 7 projections, the mask-free dropout, aot_eager
with AOTAutograd's min-cut partitioner (inductor's), so the graphs are the ones inductor would get. Each graph runs
under an FX interpreter that frees a value after its last use (as inductor's generated code does), and counts the
distinct storages alive after every node: the peak, and at the peak each value with the node that made it. Inductor
fuses pointwise chains, so some of the values listed are never materialised on the GPU; the matmul outputs and what
a fusion boundary keeps are. The H100's memory recorder showed the lever's backward peak with 10-11 of Llama-2-7B's
MLP-wide (11008) buffers alive at once (benchmarks/results/user_path-s22-h100-2026-12-06.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _storages_bytes(values) -> dict:
    import torch

    seen: dict = {}
    for v in values:
        if isinstance(v, torch.Tensor):
            seen[v.untyped_storage().data_ptr()] = v.untyped_storage().nbytes()
    return seen


class Peak:
    """The peak over one run of a graph: bytes and the values alive then (name, op, shape, bytes)."""

    def __init__(self, gm, outside: list):
        self.gm, self.outside = gm, outside
        self.peak, self.alive = 0, []

    def run(self, *args):
        import torch.fx

        peak = self

        class Interp(torch.fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                env = dict(self.env)
                env[n] = out
                values = list(env.values()) + list(peak.outside)
                total = sum(_storages_bytes(values).values())
                if total > peak.peak:
                    peak.peak = total
                    peak.alive = [(k.name, str(k.target), tuple(v.shape), v.untyped_storage().nbytes())
                                  for k, v in env.items() if hasattr(v, "untyped_storage")]
                return out
        return Interp(self.gm, garbage_collect_values=True).run(*args)


def measure(in_graph: bool, tokens: int, dropout: float, precision: str = "auto") -> dict:
    import torch
    from functorch.compile import min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    from engine.demo.model import ensure_demo_model
    from engine.train.compiled_layers import compile_decoder_layers, uncompile_decoder_layers
    from tests.test_checkpoint_in_graph import _model

    peaks: list = []
    held: list = []   # the forward graph's saved outputs, alive through the backward (the default path's recompute)

    def keep(kind):
        def compiler(gm, example_inputs):
            def call(args):
                p = Peak(gm, held if kind == "backward" else [])
                out = p.run(*args)
                args.clear()
                peaks.append((kind, p))
                if kind == "forward":
                    held[:] = [o for o in out if isinstance(o, torch.Tensor)]
                return out
            call._boxed_call = True
            return call
        return compiler
    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"),
                           partition_fn=min_cut_rematerialization_partition)
    model = _model(ensure_demo_model(), dropout, precision)
    ids = torch.randint(5, 200, (1, tokens), generator=torch.Generator().manual_seed(1))
    half = tokens // 2
    positions = torch.cat([torch.arange(half), torch.arange(tokens - half)])[None]
    torch._dynamo.reset()
    compile_decoder_layers(model, lambda _: None, backend=backend, checkpoint_in_graph=in_graph)
    try:
        for _ in range(2):
            peaks.clear()
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, position_ids=positions, labels=ids).loss.backward()
    finally:
        uncompile_decoder_layers(model)
    backward = max((p for kind, p in peaks if kind == "backward"), key=lambda p: p.peak)
    return {"peak": backward.peak, "alive": backward.alive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--precision", default="auto", help="the config's training.precision: bf16 as on the GPU")
    a = ap.parse_args()
    for name, in_graph in (("today", False), ("checkpoint in the graph", True)):
        r = measure(in_graph, a.tokens, a.dropout, a.precision)
        print(f"\n## {name}: a layer's backward peaks at {r['peak']:,} bytes (its inputs and saved values included)\n")
        print("| bytes | value | op | shape |\n|---|---|---|---|")
        for v in sorted(r["alive"], key=lambda v: -v[3])[:a.top]:
            print(f"| {v[3]:,} | {v[0]} | {v[1]} | {v[2]} |")


if __name__ == "__main__":
    main()
