"""One rank of tests/test_fsdp_shards.py: the engine's shardable 4-bit model with LoRA, sharded by FSDP2.

    python tests/fsdp_shard_worker.py MODEL_DIR                      (one process: the reference)
    python -m torch.distributed.run --nproc_per_node=2 tests/fsdp_shard_worker.py MODEL_DIR

accelerate does not shard CPU processes, so this calls torch's fully_shard itself, on the decoder layers the
engine's fsdp_arguments name. Prints one JSON line per rank: elements held, loss and LoRA gradient norm of a
first step, and the loss after one AdamW step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(model_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from engine.config import config_from_dict
    from engine.model import add_lora, load_base_model
    from engine.train.distributed import fsdp_arguments

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    cfg = config_from_dict({"model": model_dir, "dataset": {"path": "unused.jsonl"}, "lora": {"dropout": 0.0}})
    torch.manual_seed(0)  # the adapters' random init: the same on every rank and in the reference
    model, dtype_name = load_base_model(model_dir, "nf4", "auto", shardable=True)
    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    model = add_lora(model, cfg, gradient_checkpointing=True)
    # B starts at zero in LoRA: give it values, or the first step's input gradients would not test much
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        dist.init_process_group("gloo")
        mesh = init_device_mesh("cpu", (world,))
        # As accelerate shards under mixed precision: gathered parameters cast to the compute dtype (a no-op for
        # 4-bit weights stored in it).
        policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        layers = set(fsdp_arguments(model)["fsdp_config"]["transformer_layer_cls_to_wrap"])
        for module in model.modules():
            if type(module).__name__ in layers:
                fully_shard(module, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
    held = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    whole = sum(p.numel() for p in model.parameters())

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 200, (1, 96), generator=gen)
    positions = torch.cat([torch.arange(40), torch.arange(56)])[None]  # two packed examples
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(input_ids=ids, position_ids=positions, labels=ids).loss
    loss.backward()
    grads = [p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
             for p in model.parameters() if p.requires_grad]
    grad_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        after = model(input_ids=ids, position_ids=positions, labels=ids).loss
    print(json.dumps({"rank": rank, "world": world, "held": held, "whole": whole, "loss": loss.item(),
                      "grad_norm": grad_norm, "loss_after_step": after.item()}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
