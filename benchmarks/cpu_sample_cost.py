"""One batch of samples on this machine's CPU: 3 prompts x N new tokens, NF4 (or none) + LoRA r 16, decoded by
model.generate as the trainer's samples are (engine.samples), through the trainer's loader (engine.model).

    python benchmarks/cpu_sample_cost.py demo|two|wide nf4|none NEW_TOKENS

demo: the embedded demo (4 layers, hidden 128); two: 2 layers of hidden 1024; wide: 2 layers of hidden 2048
(random weights, a 1,024-token vocabulary). Prints wall and process-CPU seconds per decode step, fastest call.
The numbers behind engine/estimate/timing.py's CPU_DECODE_* (benchmarks/results/cpu_sample_cost-2026-12-05.md).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def model_dir(kind: str) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.demo.model import demo_model_dir

    if kind == "demo":
        return str(demo_model_dir())
    hidden, inter = {"two": (1024, 2752), "wide": (2048, 5504)}[kind]
    out = tempfile.mkdtemp()
    LlamaForCausalLM(LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                                 num_attention_heads=16, num_key_value_heads=16, vocab_size=1024,
                                 max_position_embeddings=1024)).save_pretrained(out)
    return out


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.model import load_base_model

    kind, quant, new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, _ = load_base_model(model_dir(kind), quant, "auto")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")).eval()
    ids = torch.randint(10, min(model.config.vocab_size, 1000) - 1, (3, 60))
    wall, cpu = [], []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                           min_new_tokens=new, do_sample=False, pad_token_id=0, use_cache=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(f"{kind} {quant}: {min(wall) / new * 1000:.0f} ms a step wall, {min(cpu) / new * 1000:.0f} ms CPU "
          f"(calls {', '.join(f'{w:.1f}' for w in wall)} s)")


if __name__ == "__main__":
    main()
