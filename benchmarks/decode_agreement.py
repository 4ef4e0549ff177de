"""Where fast decode's greedy tokens part from generate's, and how close generate's choice was there.

    python benchmarks/decode_agreement.py llama2-7b [--new-tokens 128] [--out FILE]

decode_cost.py found different tokens on the H200 (random weights). Random weights give nearly flat logits,
where a last-bit difference between two kernels (SDPA over a growing cache or a static one, inductor's fused
bf16) flips a near-tie, and from there the rows decode different texts. This says whether that is what happens:
for each pair of ways, per prompt, the first new token where they differ, and generate's margin there (top-1
minus top-2 logit). A margin of a few bf16 steps is a tie; a large one would be a bug.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.decode_cost import PROMPT_LENGTHS, load  # noqa: E402
from benchmarks.throughput import ARCHS, _gpu_name, _versions, build_model_dir  # noqa: E402


def generate_with_scores(model, prompts, pad, stops, new_tokens):
    import torch

    from engine.samples import _attention

    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.no_grad(), _attention(model, "sdpa"):
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=pad, eos_token_id=stops, use_cache=True,
                             output_scores=True, return_dict_in_generate=True)
    top2 = torch.stack([s.float().topk(2, dim=-1).values for s in out.scores], 1)  # batch x steps x 2
    return out.sequences[:, width:].tolist(), (top2[..., 0] - top2[..., 1]).tolist(), top2[..., 0].abs().tolist()


def fast(model, prompts, pad, stops, new_tokens, compile):
    from engine.fast_decode import greedy_decode
    from engine.samples import _attention

    with _attention(model, "sdpa"):
        return greedy_decode(model, prompts, max_new_tokens=new_tokens, stop_ids=stops, pad_id=pad, compile=compile)


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b", choices=sorted(ARCHS))
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    a = ap.parse_args()
    from engine.demo.model import build_tokenizer, demo_data_path
    from engine.samples import stop_token_ids

    model = load(build_model_dir(a.arch, Path(a.work) / "models"))
    tokenizer = build_tokenizer(demo_data_path())  # the stop and pad ids decode_cost.py and the trainer use
    stops, pad = stop_token_ids(tokenizer), tokenizer.pad_token_id
    rng = random.Random(0)
    vocab = min(ARCHS[a.arch]["vocab_size"], len(tokenizer))
    prompts = [[rng.randrange(3, vocab) for _ in range(n)] for n in PROMPT_LENGTHS]
    args = (model, prompts, pad, stops, a.new_tokens)
    gen, margin, top = generate_with_scores(*args)
    gen2, _, _ = generate_with_scores(*args)
    ways = {"generate again": gen2, "fast decode, eager": fast(*args, False)}
    fast(*args, True)  # the compile and graph capture
    ways["fast decode, compiled"] = fast(*args, True)
    lines = [f"GPU: {_gpu_name()}; {_versions()}",
             f"{a.arch}, NF4 + LoRA r 16, random weights; prompts {PROMPT_LENGTHS}, {a.new_tokens} new tokens, greedy",
             "", "| against generate | prompt | first differing token | generate's top-1 - top-2 logit there "
             "| its top-1 logit | median margin over the row |", "|---|---|---|---|---|---|"]
    for label, rows in ways.items():
        for r, (g, w) in enumerate(zip(gen, rows)):
            i = first_difference(g, w)
            med = sorted(margin[r])[len(margin[r]) // 2]
            if i is None:
                lines.append(f"| {label} | {r} | none of {len(g)} | - | - | {med:.4f} |")
            else:
                lines.append(f"| {label} | {r} | {i} of {len(g)} | {margin[r][i]:.4f} | {top[r][i]:.3f} | {med:.4f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
