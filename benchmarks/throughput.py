"""Throughput and memory, four sides in one invocation, one process each (clean memory counters).

    python benchmarks/throughput.py llama2-7b [llama3-8b ...] [--steps 10] [--warmup 3] [--out FILE]
    python benchmarks/throughput.py --retable DIR [--warmup 3] [--out FILE]   (from saved result files)

Sides, on the same generated data, each optimizer step holding the same 16 examples on every side (lengths lognormal, median ~350 tokens, clipped to 50..2048, the first
20-70 % of each example masked as prompt), seed and effective batch (16 examples per optimizer step):
  plain   the seeds' recipe: Trainer, pad each micro-batch to its longest, micro-batch 4 x accumulation 4, sdpa
  best    Trainer + DataCollatorWithFlattening + flex_attention + use_liger_kernel, all 16 examples in one micro-batch
  engine  lorapilot's default (a config with only model and dataset; micro-batching left to the engine)
  lean    lorapilot with training.memory: lean
  bf16    (experiment, only with --sides) the engine side with a bf16 residual stream: no fp32 upcast
          of norms, embeddings and lm_head (engine.train.speed.keep_unquantised_16bit)
Models have random weights, built from the architectures' config numbers (no hub access on the GPU machine).
Prints a table; with --out also writes it (markdown) with the GPU, versions and date.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARCHS = {
    # config numbers of the public checkpoints
    "llama2-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, rope_theta=10000.0,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False),
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, rope_theta=1000000.0,
                         max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "qwen2.5-14b": dict(model_type="qwen2", hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                        num_attention_heads=40, num_key_value_heads=8, vocab_size=152064, rope_theta=1000000.0,
                        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "tiny": dict(model_type="llama", hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096,
                 tie_word_embeddings=False),
}
SIDES = ("plain", "best", "engine", "lean")
EFFECTIVE_BATCH = 16
PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}  # measured dense bf16 on the device machines (device KINDS.md)


# ----------------------------------------------------------------- data
def make_examples(n: int, vocab: int, seed: int = 0):
    import random

    from engine.data.types import IGNORE_INDEX, TokenizedExample

    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = int(min(2048, max(50, rng.lognormvariate(5.858, 0.6))))  # exp(5.858) ~ 350
        n_prompt = int(length * rng.uniform(0.2, 0.7))
        ids = [1] + [rng.randrange(100, vocab) for _ in range(length - 1)]
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
        out.append(TokenizedExample(input_ids=ids, labels=labels, source=f"synthetic:{i}", full_length=length,
                                    trained_tokens=length - n_prompt, trained_tokens_full=length - n_prompt))
    return out


def build_model_dir(arch: str, root: Path) -> Path:
    out = root / arch
    if (out / "config.json").exists():
        return out
    return save_random_model(dict(ARCHS[arch]), out)


def save_random_model(spec: dict, out: Path) -> Path:
    """Random bf16 weights of an architecture given by its config numbers (the hubs are out of reach)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(spec)
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # the sides run in other processes: hand the GPU memory back to them
    return out


# ----------------------------------------------------------------- one side, in its own process
class StepTimer:
    """Wall time per optimizer step, synchronised (the Trainer's logging_steps=1 syncs anyway)."""

    def __init__(self):
        self.times, self.losses = [], []

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                import torch
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.times.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    timer.losses.append(float(logs["loss"]))
        return _CB()


def _hf_side(side: str, model_dir: Path, examples, steps: int, out_dir: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainingArguments
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from engine.data.packing import Collator

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    attn = "flex_attention" if (side == "best" and cuda) else "sdpa"
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, dtype=dtype,
                                                 attn_implementation=attn,
                                                 device_map={"": 0} if cuda else None,
                                                 use_kernels=False)  # see engine.model.causal_lm
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    # Every side trains the same 16 examples in each optimizer step: the engine's plan order (seeded),
    # read sequentially. (The Trainer's own shuffle would give other steps, and tokens/s on a 4-bit model
    # depends on the tokens per step: each forward pass has a fixed dequantisation cost.)
    order = [i for step in step_order(examples, steps) for i in step]
    rows = [{"input_ids": examples[i].input_ids, "labels": examples[i].labels} for i in order]
    if side == "plain":
        pad = Collator(pad_id=0, pack=False)
        inner = lambda items: pad([_Ex(r) for r in items])  # noqa: E731
        micro, accum = 4, 4
    else:
        from transformers import DataCollatorWithFlattening
        inner = DataCollatorWithFlattening(return_flash_attn_kwargs=False, return_position_ids=True)
        micro, accum = EFFECTIVE_BATCH, 1
    fed = []  # (tokens, trained tokens) per collate call, in the order the Trainer asked for them

    def collate(items):
        fed.append((sum(len(r["input_ids"]) for r in items),
                    sum(sum(1 for x in r["labels"][1:] if x != -100) for r in items)))
        return inner(items)

    args = TrainingArguments(output_dir=str(out_dir), per_device_train_batch_size=micro,
                             gradient_accumulation_steps=accum, max_steps=steps, learning_rate=2e-4,
                             lr_scheduler_type="cosine", warmup_steps=0.03,
                             optim="paged_adamw_32bit" if cuda else "adamw_torch", weight_decay=0.001,
                             max_grad_norm=0.3, logging_steps=1, save_strategy="no", report_to="none",
                             bf16=cuda, use_cpu=not cuda, disable_tqdm=True, remove_unused_columns=False,
                             use_liger_kernel=(side == "best" and cuda), seed=42)

    class SequentialTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            from torch.utils.data import SequentialSampler
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    timer = StepTimer()
    trainer = SequentialTrainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                                callbacks=[timer.callback()])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    # The dataloader may fetch one batch ahead: the first steps x accum calls are the trained ones.
    res = _summary(timer.times, timer.losses)
    res["fed_tokens"] = [sum(t for t, _ in fed[s * accum:(s + 1) * accum]) for s in range(steps)]
    return res


def step_order(examples, steps: int) -> list[list[int]]:
    """The examples of each optimizer step as the engine plans them (same seed, same lengths)."""
    from engine.data.packing import plan_steps

    plan = plan_steps([len(e) for e in examples], examples_per_step=EFFECTIVE_BATCH, num_epochs=1, seed=42,
                      token_budget=None, micro_batch_size=EFFECTIVE_BATCH)
    return [[i for mb in step for i in mb] for step in plan.epochs[0][:steps]]


class _Ex:
    def __init__(self, row):
        self.input_ids, self.labels = row["input_ids"], row["labels"]
        self.trained_tokens = sum(1 for x in self.labels if x != -100)


def run_engine(model_dir: Path, examples, out_dir: Path, training: dict, lora: dict | None = None,
               reset_peak: bool = True, callbacks=(), validation=()) -> None:
    """lorapilot's real trainer (engine.train.run.train) on injected token data; also used by vram_calibration."""
    import torch

    from engine.config import config_from_dict
    from engine.data import PreparedData
    from engine.data.types import DataReport
    from engine.demo.model import build_tokenizer, demo_data_path
    from engine.train.run import train

    raw = {"model": str(model_dir), "dataset": {"path": "synthetic", "validation_split": 0.0},
           "training": {"save_steps": 10 ** 6, "stop_on": [], **training}}
    if lora:
        raw["lora"] = dict(lora)
    cfg = config_from_dict(raw)
    if out_dir.exists():  # metrics.jsonl is appended to: a stale run would mix into the readings
        import shutil
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = PreparedData(train=examples, validation=list(validation),
                        report=DataReport(path="synthetic", format="tokens", n_train=len(examples)))
    tok = build_tokenizer(demo_data_path())  # only its pad id is used: the data is already token ids
    if reset_peak and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    code = train(cfg, out_dir, resume=False, data=data, tokenizer=tok, callbacks=callbacks)
    if code != 0:
        raise RuntimeError(f"engine training exited with {code}")


def _engine_side(side: str, model_dir: Path, examples, steps: int, out_dir: Path) -> dict:
    from engine.rundir import read_metrics

    training = {"max_seq_length": 2048, "max_steps": steps, "logging_steps": 1}
    if side == "lean":
        training["memory"] = "lean"
    if side == "bf16":
        # Experiment: the engine with a 16-bit residual stream (norms, embeddings, lm_head left in bf16
        # instead of peft's fp32 upcast); see engine.train.speed.keep_unquantised_16bit.
        import engine.model
        from engine.train.speed import keep_unquantised_16bit

        add_lora = engine.model.add_lora

        def add_lora_16bit(model, cfg, **kw):
            model = add_lora(model, cfg, **kw)
            keep_unquantised_16bit(model, print)
            return model
        engine.model.add_lora = add_lora_16bit
    run_engine(model_dir, examples, out_dir, training)
    recs = [r for r in read_metrics(out_dir) if r.get("kind") == "train"]
    # Tokens per step come from the plan (step_tokens), not from the records: tokens_seen counts what the
    # collator handed out, and the dataloader fetches one micro-batch ahead of the step being trained.
    return _summary([r["time"] for r in recs], [r["loss"] for r in recs])


def step_tokens(examples, steps: int) -> tuple[list[int], list[int]]:
    """(tokens, trained tokens) of each optimizer step; the same steps on every side."""
    order = step_order(examples, steps)
    toks = [sum(len(examples[i]) for i in step) for step in order]
    trained = [sum(sum(1 for x in examples[i].labels[1:] if x != -100) for i in step) for step in order]
    return toks, trained


def _summary(times, losses) -> dict:
    """Durations of steps 2..n (step 1 holds compilation and the first allocations), losses, peaks."""
    import torch

    return {"step_times": [times[i] - times[i - 1] for i in range(1, len(times))], "losses": losses[:4],
            "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else 0.0,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2 ** 30 if torch.cuda.is_available() else 0.0}


def bench_examples(arch: str, steps: int):
    return make_examples(steps * EFFECTIVE_BATCH + 64, ARCHS[arch]["vocab_size"], seed=0)


def run_side(a) -> None:
    examples = bench_examples(a.arch, a.steps)
    out_dir = Path(a.work) / f"{a.arch}-{a.side}"
    fn = _hf_side if a.side in ("plain", "best") else _engine_side
    res = fn(a.side, Path(a.model_dir), examples, a.steps, out_dir)
    res.update(arch=a.arch, side=a.side, steps=a.steps, gpu=_gpu_name(), versions=_versions(),
               date=time.strftime("%Y-%m-%d"))
    Path(a.result).write_text(json.dumps(res))


# ----------------------------------------------------------------- the driver
def steady(res: dict, warmup: int) -> dict:
    """Throughput over steps 2 + warmup .. n, with tokens per step from the plan (same on every side)."""
    steps = len(res["step_times"]) + 1
    toks, trained = step_tokens(bench_examples(res["arch"], steps), steps)
    st = res["step_times"][warmup:] or res["step_times"]
    tk = toks[1:][warmup:] or toks[1:]
    tr = trained[1:][warmup:] or trained[1:]
    return {"tok_s": sum(tk) / sum(st), "trained_s": sum(tr) / sum(st), "median_step_s": statistics.median(st)}


def table(results: list[dict], warmup: int) -> str:
    """The markdown table and the ratios, from the sides' result files."""
    from engine.estimate.params import architecture, count_params

    first = results[0] if results else {}
    lines = [f"GPU: {first.get('gpu', '?')}; {first.get('versions', '?')}; {first.get('date', '?')}",
             f"steps {first.get('steps', '?')} (first {warmup} + 1 excluded), effective batch {EFFECTIVE_BATCH} "
             "examples, the same examples in each step on every side", "",
             "| model | side | tok/s (trained) | median step s | peak alloc GiB | reserved GiB | MFU | first losses |",
             "|---|---|---|---|---|---|---|---|"]
    ratios = []
    by_arch: dict[str, dict] = {}
    for res in results:
        arch, side = res["arch"], res["side"]
        s = steady(res, warmup)
        by_arch.setdefault(arch, {})[side] = s
        n_params = count_params(architecture(ARCHS[arch])).total
        gpu = res.get("gpu", "")
        peak = PEAK_TFLOPS.get(gpu.split()[1] if len(gpu.split()) > 1 else "", None)
        mfu = f"{6 * n_params * s['tok_s'] / (peak * 1e12):.1%}" if peak else "-"
        losses = ", ".join(f"{x:.3f}" for x in res["losses"])
        lines.append(f"| {arch} | {side} | {s['tok_s']:,.0f} ({s['trained_s']:,.0f}) | {s['median_step_s']:.2f} "
                     f"| {res['peak_alloc_gib']:.1f} | {res['peak_reserved_gib']:.1f} | {mfu} | {losses} |")
    for arch, sides in by_arch.items():
        for side in sides:
            for ref in ("best", "plain"):
                if side not in ("best", "plain") and ref in sides:
                    ratios.append(f"{arch}: {side}/{ref} = {sides[side]['tok_s'] / sides[ref]['tok_s']:.2f}x")
        if "best" in sides and "plain" in sides:
            ratios.append(f"{arch}: best/plain = {sides['best']['tok_s'] / sides['plain']['tok_s']:.2f}x")
    return "\n".join(lines + [""] + ratios) + "\n"


def _gpu_name() -> str:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _versions() -> str:
    import importlib.metadata as md
    out = []
    for p in ("torch", "transformers", "peft", "bitsandbytes", "liger-kernel", "accelerate"):
        try:
            out.append(f"{p} {md.version(p)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="*", default=["llama2-7b"])
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", default="/tmp/lorapilot-bench")
    ap.add_argument("--out")
    ap.add_argument("--retable", metavar="DIR", help="rebuild the table from the sides' result files in DIR")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--arch", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        run_side(a)
        return
    if a.retable:
        files = sorted(Path(a.retable).glob("*.json"))
        results = [json.loads(f.read_text()) for f in files]
        order = {s: i for i, s in enumerate(SIDES + ("bf16",))}
        results.sort(key=lambda r: (r["arch"], order.get(r["side"], 99)))
        text = table(results, a.warmup)
    else:
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for arch in a.archs:
            model_dir = build_model_dir(arch, work / "models")
            for side in a.sides.split(","):
                res = run_child(__file__, ["--side", side, "--arch", arch, "--model-dir", str(model_dir), "--steps",
                                           str(a.steps), "--work", str(work)], work / f"{arch}-{side}.json",
                                f"{arch} | {side}")
                if res:
                    results.append(res)
                    print(table(results[-1:], a.warmup).splitlines()[5], flush=True)
        text = table(results, a.warmup)
    write_out(text, a.out)


def run_child(script: str, args: list[str], res_file: Path, label: str, env: dict | None = None) -> dict | None:
    """One side in its own process (clean memory counters); its result file, or None when it failed."""
    res_file.unlink(missing_ok=True)
    t0 = time.time()
    p = subprocess.run([sys.executable, script, *args, "--result", str(res_file)], cwd=REPO,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0 or not res_file.exists():
        print(f"| {label} | failed (exit {p.returncode}) |", flush=True)
        return None
    print(f"({label}: {time.time() - t0:.0f} s)", flush=True)
    return json.loads(res_file.read_text())


def write_out(text: str, out: str | None) -> None:
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


if __name__ == "__main__":
    main()
