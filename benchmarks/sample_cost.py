"""What the samples at each evaluation cost, against the training they interrupt, in one real run.

    python benchmarks/sample_cost.py llama2-7b [--steps 13] [--eval-every 6] [--fast-decode [eager]] [--compiled-block-mask] [--out FILE]

The engine's trainer on the throughput benchmark's data (16 examples per step), evaluating every
`--eval-every` steps on 24 held-out examples; at each evaluation the callback generates the default 3
held-out prompts x up to 128 new tokens (random weights never stop early: the worst case). The share
is given at the defaults' interval (eval_steps 50): samples per evaluation / (samples + 50 steps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import ARCHS, build_model_dir, make_examples, run_engine  # noqa: E402

DEFAULT_EVAL_STEPS = 50  # engine/config.py


def guarded(gen_s: float, step_s: float, steps: int = 1000) -> tuple[int, float]:
    """Evaluations with samples, and their share of the run, under the trainer's budget (one decoder, every batch
    gen_s)."""
    from engine.train.sample_budget import SampleBudget

    budget, clock, kept = SampleBudget(), 0.0, 0
    for k in range(1, steps // DEFAULT_EVAL_STEPS + 1):
        clock += DEFAULT_EVAL_STEPS * step_s
        if budget.next_batch(clock, (steps - k * DEFAULT_EVAL_STEPS) * step_s):
            clock += gen_s
            budget.record(gen_s)
            kept += 1
    return kept, budget.spent / clock


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="llama2-7b")
    ap.add_argument("--steps", type=int, default=13)
    ap.add_argument("--eval-every", type=int, default=6)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    ap.add_argument("--compiled-block-mask", action="store_true",
                    help="transformers' compiled create_block_mask instead of the engine's eager one (the default)")
    ap.add_argument("--fast-decode", nargs="?", const="1", choices=("1", "eager"),
                    help="samples through engine.fast_decode (LORAPILOT_FAST_DECODE): compiled, or 'eager'")
    a = ap.parse_args()
    if a.fast_decode:
        import os
        os.environ["LORAPILOT_FAST_DECODE"] = a.fast_decode
    from engine.train import speed
    # set only when asked: writing the flag's default here once overrode the engine's own default
    if a.compiled_block_mask:
        speed.LEVERS.own_block_mask = False
    from engine.rundir import read_metrics

    work = Path(a.work)
    model_dir = build_model_dir(a.arch, work / "models")
    examples = make_examples(a.steps * 16 + 64 + 24, ARCHS[a.arch]["vocab_size"], seed=0)
    out = work / f"samples-{a.arch}"
    run_engine(model_dir, examples[:-24], out, {"max_seq_length": 2048, "max_steps": a.steps, "logging_steps": 1,
                                                "eval_steps": a.eval_every},
               validation=examples[-24:])
    recs = read_metrics(out)
    train = [r for r in recs if r["kind"] == "train"]
    times = [b["time"] - x["time"] for x, b in zip(train, train[1:])]
    evals = [r["step"] for r in recs if r["kind"] == "eval"]
    # a step that holds an evaluation is not a training step: leave those intervals out
    plain = [t for r, t in zip(train[1:], times) if r["step"] not in {e + 1 for e in evals}]
    step_s = statistics.median(plain[2:] or plain)
    per_eval: dict[int, float] = {}
    for r in recs:
        if r["kind"] == "sample":
            per_eval[r["step"]] = per_eval.get(r["step"], 0.0) + r["gen_s"]
    gen = statistics.median(per_eval.values())
    share = gen / (gen + DEFAULT_EVAL_STEPS * step_s)
    cb = (train[-1]["callback_s"] - train[0]["callback_s"]) / max(1, len(train) - 1)
    n_samples = sum(1 for r in recs if r["kind"] == "sample")
    kept, share_kept = guarded(gen, step_s)
    import engine.samples
    if a.fast_decode and engine.samples.fast_decode_broken():
        print("fast decode FAILED and fell back to model.generate (its warning is above): the times are generate's")
    text = (f"{a.arch} (own_block_mask {speed.LEVERS.own_block_mask}, fast_decode {a.fast_decode or 'off'}): median training step {step_s:.3f} s; {len(per_eval)} evaluations, {n_samples} samples; "
            f"sampling {gen:.2f} s per evaluation (3 prompts x up to 128 new tokens, one batch)\n"
            # the first one holds any compilation: a median over two evaluations is their mean
            f"sampling per evaluation, in order: {', '.join(f'{v:.2f}' for v in per_eval.values())} s\n"
            f"at the defaults (every {DEFAULT_EVAL_STEPS} steps): samples are {share:.1%} of training time "
            f"(goal < 5 %)\n"
            f"with the callback's time budget, a 1,000-step run samples at {kept} of 20 evaluations: "
            f"{share_kept:.1%} of its time\n"
            f"callback (status, records, NVML; logging every step): {cb * 1000:.2f} ms per step = "
            f"{cb / step_s:.2%} of a step (goal < 1 %)\n")
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
