"""Data-parallel training through torch.distributed (torchrun) and the Trainer's own DDP.

One process per GPU; each loads the 4-bit model on its own GPU; the
effective batch is micro-batch x accumulation x GPUs. Only rank 0 writes the
run directory. A stop request reaches every rank at the same step (a tiny
all-reduce each step), or the ranks would wait for each other forever.
"""

from __future__ import annotations

import sys

from engine.errors import ConfigError
from engine.rundir import TRAINER_MODULE
# CPU_DDP_ENV: tests run real data-parallel training on a CPU-only machine with gloo; users never need it.
from engine.settings import CPU_DDP_ENV as CPU_DDP_ENV
from engine.settings import cpu_ddp, process_ranks, visible_device_mask


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) of this process; (0, 0, 1) when not distributed."""
    return process_ranks()


def is_main() -> bool:
    return world()[0] == 0


def visible_gpus() -> int:
    """GPUs this process may use, without importing torch (NVML + CUDA_VISIBLE_DEVICES)."""
    from engine.gpu import sample_gpus

    n = len(sample_gpus())  # no driver, no NVML: an empty list (engine.gpu's "no GPU" state)
    mask = visible_device_mask()
    if mask is not None:
        n = min(n, len(mask))
    return n


def num_processes(num_gpus: int | None) -> int:
    """How many training processes: all visible GPUs by default, 1 on a CPU machine."""
    if cpu_ddp():
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
    tail = ["-m", TRAINER_MODULE, str(run_dir)] + (["--resume"] if resume else [])
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


def fsdp_mixed_precision(dtype):
    """FSDP2's precision: compute in the run's dtype, average gradients in fp32, leave outputs as computed.

    accelerate's policy for bf16 also reduces the gradients in bf16 and casts the model's outputs to bf16,
    the loss included: the 2-GPU Llama-2-7B run logged losses in bf16's 0.0625 steps (11.1875, 11.2188)
    where DDP logged 11.2076. The adapters' gradients are small, so reducing them in fp32 costs nothing.
    """
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def use_fsdp_mixed_precision(args, dtype) -> None:
    """Puts fsdp_mixed_precision into the TrainingArguments' FSDP plugin arguments, which the Trainer hands to
    accelerate (TrainingArguments has no key for it); accelerate keeps a policy it is given."""
    args.fsdp_plugin_args["mixed_precision_policy"] = fsdp_mixed_precision(dtype)


def fsdp_arguments(model) -> dict:
    """TrainingArguments for FSDP2 over the decoder layers; the adapter is gathered whole to be saved."""
    layers = list(getattr(model, "_no_split_modules", None) or [])
    if not layers:
        raise ConfigError(f"training.parallelism: fsdp does not know how to shard {type(model).__name__}",
                          fix="use training.parallelism: ddp")
    # fsdp=True with everything in fsdp_config: the string form ("full_shard auto_wrap") is deprecated since
    # transformers 5.17; reshard_after_forward True is full_shard, the default wrap policy wraps these layers.
    return {"fsdp": True,
            "fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": layers, "reshard_after_forward": True,
                            "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False}}


def shard_report(model) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model): FSDP's parameters are DTensors."""
    local = total = 0
    for p in model.parameters():
        total += p.numel()
        local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return local, total


def unshard_head_before_loss(model) -> bool:
    """Under FSDP2, gathers the output head's weight before the loss reads it; True when hooked.

    accelerate shards the output head as a group of its own, gathered by a hook on its forward. Liger's fused
    linear cross-entropy never calls that forward: it reads lm_head.weight directly and would get this rank's
    shard (a DTensor). A pre-forward hook on the decoder's final norm, the module that runs just before the
    loss, gathers the head first. Registered before the Trainer shards the model, on the plain or the
    peft-wrapped model (the modules are the same); the head is an FSDP module by the time the hook runs.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, getattr(base, "base_model_prefix", ""), None)
    norm = getattr(decoder, "norm", None)
    if head is None or norm is None:
        return False

    def gather_head(_module, _args):
        if hasattr(head, "unshard"):  # an FSDP2 module; unsharding an unsharded one is a no-op
            head.unshard()

    norm.register_forward_pre_hook(gather_head)
    return True
