"""What is alive on the GPU at a run's peak, and who allocated it: a CUDA memory snapshot read back in time.

    python benchmarks/memory_peak.py SNAPSHOT.pickle [SNAPSHOT2.pickle ...] [--top 25] [--out FILE]

The snapshot is torch.cuda.memory._dump_snapshot's, taken with _record_memory_history(stacks="python") in the
trainer (benchmarks/lever_site/ does it for a user_path side ending in _mem, BENCH_MEMORY_HISTORY). Its trace is
a ring buffer of the last allocation events; its segments say what is allocated at the end. Walking the trace
backwards from that end state (an alloc undone, a completed free put back) gives the allocated total after every
event, and so the peak within the recorded window and the blocks alive at it. Each block is then named by the
stack of its allocation (the last alloc event at its address before the peak): the first frame outside torch's
own Python, where compiled code's buffers point into inductor's generated file, whose line says which buffer.
Printed: the peak, and its blocks grouped by that frame, largest first. Issue 26: where the +0.30 GiB of the
weights dequantised in the compiled graph sit.
"""

from __future__ import annotations

import argparse
import linecache
import pickle
from collections import defaultdict
from pathlib import Path

GIB = 1024 ** 3


def live_at_end(snapshot: dict) -> dict[int, int]:
    """Address -> size of every allocated block when the snapshot was taken (the segments' active blocks)."""
    live = {}
    for seg in snapshot.get("segments", []):
        addr = seg["address"]
        for block in seg.get("blocks", []):
            if block["state"] == "active_allocated":
                live[addr] = block["size"]
            addr += block["size"]
    return live


def peak(trace: list[dict], live: dict[int, int]) -> tuple[int, int, dict[int, int]]:
    """(peak bytes, index into trace after which it was reached, the blocks alive then), from the end state back.

    Index i means "after the events trace[:i]"; len(trace) is the end state itself."""
    live = dict(live)
    total = sum(live.values())
    best = (total, len(trace), dict(live))
    for i in range(len(trace) - 1, -1, -1):
        e = trace[i]
        if e["action"] == "alloc":
            total -= live.pop(e["addr"], 0)
        elif e["action"] == "free_completed":
            live[e["addr"]] = e["size"]
            total += e["size"]
        else:
            continue
        if total > best[0]:
            best = (total, i, dict(live))
    return best


def allocation_frames(trace: list[dict], upto: int) -> dict[int, list[dict]]:
    """Address -> the frames of the last alloc event at that address among trace[:upto]."""
    frames: dict[int, list[dict]] = {}
    for e in trace[:upto]:
        if e["action"] == "alloc":
            frames[e["addr"]] = e.get("frames", [])
    return frames


def site(frames: list[dict]) -> str:
    """The first frame outside torch's own library code (inductor's generated files count as outside), with its
    source line where the file is still there; frames run innermost first."""
    for f in frames:
        name = f.get("filename", "")
        generated = "torchinductor" in name
        if generated or ("/torch/" not in name and not name.startswith("<")):
            text = linecache.getline(name, f.get("line", 0)).strip()
            return f"{name}:{f.get('line')} {f.get('name', '')}" + (f"  | {text[:100]}" if text else "")
    return "(torch internals or no stack recorded)"


def report(path: Path, top: int) -> str:
    snapshot = pickle.loads(path.read_bytes())
    traces = snapshot.get("device_traces") or [[]]
    trace = max(traces, key=len)
    end = live_at_end(snapshot)
    total, at, live = peak(trace, end)
    frames = allocation_frames(trace, at)
    groups: dict[str, list[int]] = defaultdict(list)
    for addr, size in live.items():
        groups[site(frames[addr]) if addr in frames else "(allocated before the recorded window)"].append(size)
    lines = [f"## {path.name}", "",
             f"{len(trace):,} events recorded; allocated at the end {sum(end.values()) / GIB:.3f} GiB; peak within "
             f"the window {total / GIB:.3f} GiB after event {at:,}, {len(live):,} blocks alive", "",
             "| GiB | blocks | allocated at |", "|---|---|---|"]
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    for where, sizes in ranked[:top]:
        lines.append(f"| {sum(sizes) / GIB:.3f} | {len(sizes)} | {where.replace('|', '/')} |")
    rest = ranked[top:]
    if rest:
        lines.append(f"| {sum(sum(s) for _, s in rest) / GIB:.3f} | {sum(len(s) for _, s in rest)} | "
                     f"{len(rest)} other sites |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshots", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    text = "\n".join(report(p, a.top) for p in a.snapshots)
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
