"""Whether a lever trains the same adapter as the default: user_path.py's runs compared with the engine side's.

    python benchmarks/adapter_agreement.py WORK ARCH [--out FILE]

Every lorapilot side of user_path.py trains the same examples in the same steps from the same seed (one plan), so
their logged losses and final adapters are comparable one to one. Per side against its reference run (the default `engine`; for the dropout-0 agreement sides, `*_nd`, the
default without dropout, `nodrop`):
- losses: the largest difference of the logged losses (step 1, then each 10-step mean) and the first loss's;
- adapter: lora_B starts at zero, so all of it is what training wrote; its relative difference
  ||B_side - B_ref|| / ||B_ref|| over all layers, and the cosine of the two. lora_A starts from the seed's random
  init and moves little: its relative difference is against ||A_ref||.
Which difference is "bf16 noise" is read off two eager references without dropout: eager_nd (nodrop again: the same
code twice, differing only by the GPU kernels' nondeterminism, atomics in flex attention's and the matmuls' backward)
and noliger_nd (the same arithmetic with PyTorch's kernels instead of Liger's: rounded another way in bf16, as a
compiled layer's fused kernels round it another way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def losses(run_dir: Path) -> dict[int, float]:
    from engine.rundir import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r.get("kind") == "train" and "loss" in r}


def adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    path = run_dir / "adapter" / "adapter_model.safetensors"
    return load_file(str(path)) if path.exists() else {}


def compare(ref: dict, other: dict) -> dict:
    import torch

    out = {}
    for part in ("lora_B", "lora_A"):
        names = sorted(n for n in ref if part in n and n in other)
        if not names:
            continue
        # float64: over 40 M elements float32's sums read a bit-identical pair as cosine 1.0019
        r = torch.cat([ref[n].double().flatten() for n in names])
        o = torch.cat([other[n].double().flatten() for n in names])
        out[part] = {"rel": float((o - r).norm() / r.norm()), "cos": float(torch.nn.functional.cosine_similarity(
            o, r, dim=0)), "tensors": len(names)}
    return out


def reference(side: str) -> str:
    """The run a side is compared with: the default, or for a dropout-0 side (name ending _nd) the default without
    dropout (user_path.py's agreement sides)."""
    return "nodrop" if side.endswith("_nd") else "engine"


def report(work: Path, arch: str) -> str:
    lines = [f"{arch}: each side against its reference run (same plan, same seed): losses at the logged steps, final "
             "adapters", "",
             "| side | against | first loss (ref) | largest loss difference | lora_B rel. diff | lora_B cosine "
             "| lora_A rel. diff |", "|---|---|---|---|---|---|---|"]
    for run_dir in sorted(work.glob(f"{arch}-*-run")):
        side = run_dir.name[len(arch) + 1:-len("-run")]
        ref_side = reference(side)
        ref_dir = work / f"{arch}-{ref_side}-run"
        if side in ("engine", "nodrop") or not ref_dir.exists():
            continue
        ref_losses, ref_adapter = losses(ref_dir), adapter(ref_dir)
        ls = losses(run_dir)
        common = sorted(set(ls) & set(ref_losses))
        if not common:
            lines.append(f"| {side} | {ref_side} | - | no common logged step | - | - | - |")
            continue
        first = common[0]
        dl = max(abs(ls[s] - ref_losses[s]) for s in common)
        c = compare(ref_adapter, adapter(run_dir))
        b, a = c.get("lora_B"), c.get("lora_A")
        lines.append(f"| {side} | {ref_side} | {ls[first]:.4f} ({ref_losses[first]:.4f}) | {dl:.4f} over {len(common)} points | "
                     + (f"{b['rel']:.4f} | {b['cos']:.5f} | " if b else "- | - | ")
                     + (f"{a['rel']:.5f} |" if a else "- |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("arch")
    ap.add_argument("--out")
    a = ap.parse_args()
    text = report(Path(a.work), a.arch)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
