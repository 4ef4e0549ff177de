"""What one batch of samples costs to decode: model.generate against engine.fast_decode, side by side.

    python benchmarks/decode_cost.py llama2-7b [--repeats 4] [--new-tokens 128] [--out FILE]

The trainer's samples in isolation (no training around them, so a run of minutes answers what
sample_cost.py needs a training run for): the 4-bit model of the throughput benchmark with LoRA r 16
on all linear layers, in eval mode, the default 3 prompts (lengths 120, 260 and 410 tokens) decoded
greedily in one batch, as the callback does at an evaluation. Each way runs `--repeats` times; the
first call holds any compilation (CUDA graph capture included), so the steady cost is the median of
the rest. Random weights never stop early: every row decodes all its tokens, the worst case.
The tokens of the two ways are compared: on the CPU they are the same; on a GPU they part at bf16 ties, where
generate does not repeat itself either (benchmarks/decode_agreement.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import ARCHS, _gpu_name, _versions, build_model_dir  # noqa: E402

PROMPT_LENGTHS = (120, 260, 410)
WAYS = (("generate", "0"), ("fast decode", "1"))  # compiled into CUDA graphs on a GPU, eager on the CPU


def load(model_dir: Path):
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.model import load_base_model

    model, _ = load_base_model(str(model_dir), "nf4", "auto")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: give the adapter an effect, as after training
            torch.nn.init.normal_(p, std=0.02)
    return model.eval()


def time_way(model, tokenizer, prompts, env: str, repeats: int, new_tokens: int) -> tuple[list[float], list[str]]:
    import torch

    from engine import samples

    os.environ[samples.FAST_DECODE_ENV] = env
    times, texts = [], []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        texts = samples.generate_greedy_batch(model, tokenizer, prompts, max_new_tokens=new_tokens)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if env != "0" and samples.fast_decode_broken():
        raise SystemExit("fast decode failed and fell back to generate (its warning is above)")
    return times, texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b", choices=sorted(ARCHS))
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    a = ap.parse_args()
    import random

    from engine.demo.model import build_tokenizer, demo_data_path

    model = load(build_model_dir(a.arch, Path(a.work) / "models"))
    tokenizer = build_tokenizer(demo_data_path())  # decodes the ids; the prompts are random ids of the vocabulary
    rng = random.Random(0)
    vocab = min(ARCHS[a.arch]["vocab_size"], len(tokenizer))
    prompts = [[rng.randrange(3, vocab) for _ in range(n)] for n in PROMPT_LENGTHS]
    rows, outputs, steady = [], [], []
    for label, env in WAYS:
        times, texts = time_way(model, tokenizer, prompts, env, a.repeats, a.new_tokens)
        outputs.append(texts)
        steady.append(statistics.median(times[1:] or times))
        rows.append(f"| {label} | {times[0]:.2f} | {steady[-1]:.2f} | {steady[-1] / a.new_tokens * 1000:.1f} | "
                    f"{', '.join(f'{t:.2f}' for t in times)} |")
    same = outputs[0] == outputs[1]
    generate_s, fast_s = steady
    text = "\n".join([
        f"GPU: {_gpu_name()}; {_versions()}",
        f"{a.arch}, NF4 + LoRA r 16 all-linear, eval mode; {len(prompts)} prompts ({', '.join(map(str, PROMPT_LENGTHS))}"
        f" tokens) in one batch, {a.new_tokens} new tokens each, greedy; {a.repeats} calls each way",
        "",
        "| way | first call s | steady s (median of the rest) | ms per token | every call s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"fast decode / generate, steady: {fast_s / generate_s:.2f}x the time ({generate_s / fast_s:.1f}x faster)",
        f"same tokens as generate: {'yes' if same else 'NO'}",
    ])
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
