"""Does DDP change how flex attention compiles? A small Llama (bf16, gradient checkpointing, packed rows with
flex attention) trained a few steps on one GPU, by 1 process or by 2 (gloo, both on the same GPU).

    torchrun --nproc_per_node=N benchmarks/device_jobs/diag/ddp_flex.py [--no-optimize-ddp]

Prints per-step seconds and dynamo's counters (graphs compiled, recompiles) per rank.
"""
import argparse
import os
import random
import time

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--no-optimize-ddp", action="store_true")
ap.add_argument("--steps", type=int, default=5)
a = ap.parse_args()
if a.no_optimize_ddp:
    torch._dynamo.config.optimize_ddp = False
world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
if world > 1:
    dist.init_process_group("gloo")
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
                  num_key_value_heads=16, vocab_size=32000)
cfg._attn_implementation = "flex_attention"
model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.train()
if world > 1:
    model = torch.nn.parallel.DistributedDataParallel(model)
rng = random.Random(rank)
t_start = time.time()
for step in range(a.steps):
    lens = [rng.randint(100, 1500) for _ in range(8)]
    n = sum(lens)
    ids = torch.randint(0, 32000, (1, n), device="cuda")
    pos = torch.cat([torch.arange(ln) for ln in lens])[None].cuda()
    t = time.time()
    out = model(input_ids=ids, position_ids=pos, labels=ids)
    out.loss.backward()
    torch.cuda.synchronize()
    c = torch._dynamo.utils.counters
    print(f"world {world} rank {rank} step {step} tokens {n} {time.time() - t:.1f}s "
          f"graphs {c['stats']['unique_graphs']} frames {c['frames']['ok']} recompiles {dict(c['recompiles'])}"
          f" ddp {dict(c['ddp'])}", flush=True)
print(f"world {world} rank {rank} total {time.time() - t_start:.1f}s", flush=True)
