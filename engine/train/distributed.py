"""Data-parallel training through torch.distributed (torchrun) and the Trainer's own DDP.

One process per GPU; each loads the 4-bit model on its own GPU; the
effective batch is micro-batch x accumulation x GPUs. Only rank 0 writes the
run directory. A stop request reaches every rank at the same step (a tiny
all-reduce each step), or the ranks would wait for each other forever.
"""

from __future__ import annotations

import os
import sys

from engine.errors import ConfigError

# Tests run real data-parallel training on a CPU-only machine with gloo; users never need this.
CPU_DDP_ENV = "LORAPILOT_DDP_CPU"


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) of this process; (0, 0, 1) when not distributed."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def is_main() -> bool:
    return world()[0] == 0


def visible_gpus() -> int:
    """GPUs this process may use, without importing torch (NVML + CUDA_VISIBLE_DEVICES)."""
    from engine.gpu import sample_gpus

    try:
        n = len(sample_gpus())
    except Exception:  # no driver: no GPU
        n = 0
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        n = min(n, len([d for d in mask.split(",") if d.strip() and d.strip() != "-1"]))
    return n


def num_processes(num_gpus: int | None) -> int:
    """How many training processes: all visible GPUs by default, 1 on a CPU machine."""
    if os.environ.get(CPU_DDP_ENV):
        return max(1, num_gpus or 1)
    available = visible_gpus()
    if num_gpus is None:
        return max(1, available)
    if num_gpus > 1 and num_gpus > available:
        raise ConfigError(f"training.num_gpus: {num_gpus} requested but {available} GPU(s) visible",
                          fix=f"set training.num_gpus to {max(1, available)} or leave it empty for all visible")
    return num_gpus


def planned_processes(num_gpus: int | None) -> int:
    """What a launch would use, for estimates and the wizard: never raises (a bad count shows as asked)."""
    try:
        return num_processes(num_gpus)
    except ConfigError:
        return num_gpus or 1


def launch_command(run_dir: str, nproc: int, resume: bool) -> list[str]:
    tail = ["-m", "engine.train.run", str(run_dir)] + (["--resume"] if resume else [])
    if nproc <= 1:
        return [sys.executable, "-u"] + tail
    # --standalone: a local rendezvous on a free port, so two runs on one pod never collide.
    return [sys.executable, "-u", "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + tail


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sums small host values over the ranks (one tiny collective); identity when not distributed."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
