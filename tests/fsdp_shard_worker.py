"""One rank of tests/test_fsdp_shards.py: the engine's shardable 4-bit model with LoRA, sharded as accelerate's
FSDP2 preparation shards it, with a loss that reads the output head's weight as Liger's fused loss does.

    python tests/fsdp_shard_worker.py MODEL_DIR OUT_DIR [--no-head-hook]     (one process: the reference)
    python -m torch.distributed.run --nproc_per_node=2 tests/fsdp_shard_worker.py MODEL_DIR OUT_DIR [--no-head-hook]

accelerate does not shard CPU processes, so this calls torch's fully_shard itself, in accelerate's layout
(accelerate/utils/fsdp_utils.py, fsdp2_prepare_model): the decoder layers the engine's fsdp_arguments name,
the input embeddings, the output head as a group of its own that stays gathered after forward, then the root;
parameters cast to the compute dtype. Liger's fused linear cross-entropy (a GPU kernel) is stood in for by the
same access pattern: the head's weight read directly, its forward never called. For each precision in
WORKER_PRECISION (comma-separated, default auto) writes OUT_DIR/rank-N-PRECISION.json (ranks printing at once
would interleave): elements held, loss and LoRA gradient norm of a first step, and the loss after one AdamW step.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def loss_reading_the_head_weight(self, input_ids=None, position_ids=None, labels=None, **kwargs):
    """LlamaForCausalLM.forward as Liger patches it: hidden states, then a loss over lm_head.weight."""
    import torch
    from transformers.modeling_outputs import CausalLMOutputWithPast

    hidden = self.model(input_ids=input_ids, position_ids=position_ids, **kwargs).last_hidden_state
    logits = (hidden @ self.lm_head.weight.T).float()
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:])
    return CausalLMOutputWithPast(loss=loss)


def shard_like_accelerate(model, world: int, dtype) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from engine.train.distributed import fsdp_arguments, fsdp_mixed_precision

    mesh = init_device_mesh("cpu", (world,))
    kw = dict(mesh=mesh, mp_policy=fsdp_mixed_precision(dtype))  # the policy the trainer hands accelerate
    layers = set(fsdp_arguments(model)["fsdp_config"]["transformer_layer_cls_to_wrap"])
    for module in model.modules():
        if type(module).__name__ in layers:
            fully_shard(module, **kw)
    fully_shard(model.get_input_embeddings(), **kw)
    # accelerate looks for the final norm among the direct children of the model's base_model_prefix
    # attribute; through peft's wrapper that is LlamaForCausalLM, whose children hold none: the head alone.
    fully_shard([model.get_output_embeddings()], **kw, reshard_after_forward=False)
    fully_shard(model, **kw)


def saved_adapter(model, world: int) -> dict:
    """What the Trainer would save: with FSDP2 and FULL_STATE_DICT, accelerate's get_state_dict gathers the whole
    model (rank 0 receives it), and peft keeps the adapter's tensors of it."""
    import torch
    from peft import get_peft_model_state_dict

    if world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
        full = get_model_state_dict(model, options=options)
        if not full:  # the other ranks get nothing to save
            return {}
        lora = get_peft_model_state_dict(model, state_dict=full)
    else:
        lora = get_peft_model_state_dict(model)
    return {"adapter_tensors": len(lora), "adapter_elements": sum(t.numel() for t in lora.values()),
            "adapter_norm": float(torch.linalg.vector_norm(torch.stack([t.float().norm() for t in lora.values()])))}


def main(model_dir: str, out_dir: str, head_hook: bool) -> None:
    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:
        dist.init_process_group("gloo")
    # Each precision asked for in turn, on a model of its own, in this one process: a start of torch,
    # transformers and bitsandbytes per precision and rank would cost the suite more than the steps themselves.
    for precision in os.environ.get("WORKER_PRECISION", "auto").split(","):
        record = one_step(model_dir, precision, world, head_hook)
        Path(out_dir, f"rank-{rank}-{precision}.json").write_text(json.dumps({"rank": rank, "world": world,
                                                                              "precision": precision, **record}))
    if world > 1:
        # Every rank past its last collective before any tears gloo down: a rank destroying the group while the
        # other's work was still in flight aborted once in CI ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def one_step(model_dir: str, precision: str, world: int, head_hook: bool) -> dict:
    """The model loaded in this precision, sharded over the world when there is one, and one training step."""
    import torch

    from engine.config import config_from_dict
    from engine.model import add_lora, load_base_model
    from engine.train.distributed import unshard_head_before_loss

    cfg = config_from_dict({"model": model_dir, "dataset": {"path": "unused.jsonl"}, "lora": {"dropout": 0.0}})
    torch.manual_seed(0)  # the adapters' random init: the same on every rank and in the reference
    model, dtype_name = load_base_model(model_dir, "nf4", precision, shardable=True)
    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    if head_hook:  # where engine/train/run.py hooks it: on the loaded model, before the adapters
        assert unshard_head_before_loss(model)
    model = add_lora(model, cfg, gradient_checkpointing=True)
    if dtype_name == "bf16":  # as on a GPU: frozen weights bf16, the adapters fp32
        from engine.train.speed import keep_unquantised_16bit
        keep_unquantised_16bit(model, lambda _: None)
    causal_lm = model.get_base_model()
    causal_lm.forward = types.MethodType(loss_reading_the_head_weight, causal_lm)
    # B starts at zero in LoRA: give it values, or the first step's input gradients would not test much
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    if world > 1:
        shard_like_accelerate(model, world, dtype)
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
    return {"held": held, "whole": whole, "loss": loss.item(), "grad_norm": grad_norm,
            "loss_after_step": after.item(), **saved_adapter(model, world)}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], head_hook="--no-head-hook" not in sys.argv[3:])
