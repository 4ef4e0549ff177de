"""The user's path, measured from the outside: `lorapilot train CONFIG` beside a best stack written from the docs.

    python benchmarks/user_path.py llama2-7b [llama3-8b ...] [--sides engine,best,lean] [--steps 90]
        [--warmup 30] [--rows 2000] [--deadline-s S] [--side-timeout-s S] [--work DIR] [--out FILE]
    python benchmarks/user_path.py --retable DIR [--warmup 30] [--out FILE]      (from the saved side files)

Every side trains on the SAME alpaca JSONL (generated once: lengths lognormal, median ~350 tokens, sigma 0.6,
clipped to 50..2000; the instruction and input take 20-70 % of a row), 16 examples per optimizer step:
  engine  `lorapilot train CONFIG --max-steps N` through the real CLI (a subprocess, as a user runs it);
          CONFIG is model + dataset + max_seq_length 2048, nothing else. With N under engine.plan.COMPILE_MIN_STEPS
          (1,000) the plan keeps the decoder layers eager (training.compile auto): this side measures eager layers
  lean    the same CONFIG with training.memory: lean
  levers  (only with --sides) the engine side (or lean's) with engine.train.speed.LEVERS switched in the trainer
          process by benchmarks/lever_site/ (LEVER_SIDES below); the compiled sides write training.compile: true
          into CONFIG (the user's own way to compile at any length):
          compiled    every decoder layer through torch.compile (the 4-bit matmul inside), eager fallback on failure
          fusedopt    torch's fused AdamW for paged_adamw_32bit (no per-parameter device syncs)
          compiledfo  both
          compiledtg  compiled, dynamo checking only the guards that can change in a run (LEVERS.trim_guards)
          compiledhost  compiled + fused AdamW + trimmed guards (both the default since session 12: = compiled)
          compiledold   compiled as before session 12: bitsandbytes' paged AdamW, every guard checked
          compiledcpp   compiled with inductor's wrapper in C++ (LEVERS.cpp_wrapper)
          compiledgd  compiled with the NF4 weights dequantised by torch ops in the graph (LEVERS.graph_dequant,
                      the default since session 13: = compiled)
          compiledbnb  compiled with bitsandbytes' own dequantise at every projection (the path before session 13)
          compiledoff  compiled with the first 8 decoder layers' checkpointed inputs offloaded to pinned host memory
                      (LEVERS.offload_layers, engine.train.speed.PartialOffload): the compiled default's memory
                      goal, its eager peak (8.6 GiB on Llama-2-7B at 8,786 tokens, against 8.9) at its speed
          compiledmf  (the default) compiled with LoRA dropout's masks regenerated in backward from a saved seed, not saved
                      (LEVERS.mask_free_dropout, engine.train.mask_free_dropout): the dropout's memory and speed
                      back (dropout 0, steps 10-30: 8.14 GiB, ~11,600 tok/s against 8.48, ~10,600); compiledmf_mem its peak named
          compiledmf32  compiledmf with the masks hashed in int32 words (LEVERS.mask_hash32): the same masks,
                      ~25 % fewer instructions in the mask's kernel (benchmarks/mask_hash_ops.py); against the ~4 %
                      between compiledmf and compiled_d0 on Llama-2-7B (10,495 against 10,904 tok/s,
                      user_path-s20-h100-2026-12-06.md)
          compiledck  compiledprev (the default before session 23) with the activation checkpoint inside each compiled layer's graph
                      (LEVERS.checkpoint_in_graph): the backward graph recomputes only what it reads, not down_proj's
                      4-bit matmul and adapter (~7 % of the base matmul work), one graph launch less per layer; on
                      the CPU its backward keeps the adapters' dropped inputs from the recompute to their weight
                      gradients (benchmarks/results/checkpoint_in_graph-cpu-2026-12-06.md): its peak named here.
                      On the H100 1.13x the default at 9.7 GiB against 8.5 (user_path-s22-h100-2026-12-06.md)
          compiledck6k, compiledck7k  compiledck with 6,144 or 7,168 tokens per micro-batch instead of 8,192: its
                      backward peak scales with the micro-batch's tokens; does it fit the default's 8.5 GiB and
                      keep its speed? No: 8.1 / 8.7 GiB at 9,095 / 9,351 tok/s, slower than the default (a step
                      needs more micro-batches; user_path-s23-h100-2026-12-06.md)
          compiledprev  the default before 2026-12-06's session 23: compiledmf with no checkpoint in any graph
          compiledckfit  (the default since session 23) the lever in the first layers only, as many as engine.plan.checkpoint_in_graph_layers_for
                      gives (10 of Llama-2-7B's 32): their backward runs once the later layers' inputs are freed,
                      under the default's peak
          compiledgdcpp  compiledgd with the C++ wrapper
          compiledmax  compiled in mode max-autotune-no-cudagraphs: Triton matmul templates, into which inductor
                      may fuse the NF4 dequantise as a prologue (no 16-bit weight written at all)
          leancompiled, leancgd  lean with the layers compiled (training.compile: true), the second with graph_dequant
          leancompiledmf  leancompiled with the mask-free LoRA dropout (LEVERS.mask_free_dropout): lean's peak
                      without the dropout's saved copies (leancompiled: 6.28 GiB against the goal's 6.2 on 2026-12-05)
          leancgd4k, leancgd6k  leancgd with 4,096 or 6,144 tokens per micro-batch instead of 8,192: lean's memory
                      goal (6.2 GiB; the estimate: 5.6 and ~6.3 GiB against 6.9 at 8,192)
          paged_nd    nodrop with bitsandbytes' paged AdamW (the optimizer before session 12): the optimizer swap's
                      own effect on the adapter, against nodrop
          cudagraphs  compiled layers in mode reduce-overhead (CUDA graphs, cudagraph trees), micro-batches padded
                      to a multiple of 1,024 tokens so a few lengths repeat
          leanstretch  lean with one micro-batch per step when the fullest step is within 1.25x of the 8,192 cap
          lean12k  lean with 12,288 tokens per micro-batch instead of 8,192
          engine2     the default again: run-to-run noise of tokens/s and of the adapter
          compiled2   compiled again: engine,compiled,engine2,compiled2 interleaves repeats, since runs of one config
                      on one machine differ by 10-25 % (user_path-t525-h200-2026-12-03.md)
          compiled_mem, compiledbnb_mem  compiled with and without the weights dequantised in the graph, MEM_STEPS
                      steps with the trainer's CUDA allocations recorded: memory_peak.py names what is alive at
                      the peak (ARCH-SIDE.mem.md), recorded from step 3 (BENCH_MEMORY_FROM_STEP: past the
                      compile); their speed is not comparable (recording costs host time)
          compiled_d0 compiled with LoRA dropout 0 over the full steps: what the dropout costs the compiled path
          varlen, compiledvl  eager and compiled with packed rows through torch's variable-length flash attention
                      instead of flex (LEVERS.varlen_attention); varlen_nd, compiledvl_nd: their adapters. Since
                      session 15 varlen is the default: engine, compiled, lean and leancompiled run it
          flex, compiledflex, leanflex, leancompiledflex  those four with flex attention instead (the default
                      until session 15); flex_nd, compiledflex_nd: their adapters
          leancompiled8k  lean compiled at 8,192 tokens per micro-batch (6,144 is its cap with flex attention)
          nodrop, compiled_nd, cudagraphs_nd  LoRA dropout 0, 30 steps: the adapters compared (adapter_agreement.py)
          eager_nd    nodrop again: the GPU kernels' run-to-run nondeterminism, the floor of any difference
          noliger_nd  nodrop without Liger's kernels (RMSNorm, RoPE, SwiGLU, the loss in PyTorch's own): the same
                      arithmetic rounded another way in bf16, the yardstick for "within bf16 noise"
  best    an independent best stack written as the transformers docs write it: datasets' map to tokenise,
          Trainer + DataCollatorWithFlattening (padding-free) + attn_implementation flex_attention (sdpa
          without a GPU) + use_liger_kernel=True, bitsandbytes NF4 + peft LoRA r 16 all-linear, 16 examples in
          one micro-batch, gradient checkpointing, paged AdamW
Each side counts its own tokens (the engine's from its metrics.jsonl, the best stack's from its collator).
The configs leave evaluation out (dataset.validation_split 0): this measures training; what evaluation and
samples cost is measured by sample_cost.py.

Models have random weights from the architectures' config numbers (benchmarks/throughput.py's ARCHS, the
numbers in presets/models/) and a word-level tokenizer of the architecture's vocabulary size saved beside them
(no hub on the GPU machine): each generated word is one token, so the rows' token lengths are what the
generator drew, and the rows still go through the engine's real template, tokenizer, masking and packing.

Steady state: 10-step intervals (the default logging_steps) after --warmup steps, their median tokens/s and
the window's aggregate. "settled" is the end of the last interval slower than 80 % of that median: how many
steps compilation and the first allocations took. Recompiles: `Recompiling function` lines that TORCH_LOGS=
recompiles writes into each side's log. Peak: the run's gpu_peak_alloc_gib (torch.cuda.max_memory_allocated).
A side that runs out of --deadline-s is stopped and read as far as it got.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import ARCHS, PEAK_TFLOPS, _gpu_name, _versions, build_model_dir, write_out  # noqa: E402

# Lever sides: (lean config?, training.compile: true in the config?, engine.train.speed.LEVERS switched in the trainer
# process by lever_site/). Compiling is the user's own choice (a config key), the rest are benchmark levers. Names
# have no "-": the result files are ARCH-SIDE.json.
LEVER_SIDES = {
    "engine2": (False, False, ""),
    "compiled": (False, True, ""),
    "compiled2": (False, True, ""),  # compiled again: with engine2, interleaved repeats against the machine's noise
    "fusedopt": (False, False, "fused_optimizer=true"),
    "compiledfo": (False, True, "fused_optimizer=true"),
    "compiledtg": (False, True, "trim_guards=true"),
    "compiledhost": (False, True, "fused_optimizer=true,trim_guards=true"),
    "compiledcpp": (False, True, "fused_optimizer=true,trim_guards=true,cpp_wrapper=true"),
    "compiledold": (False, True, "fused_optimizer=false,trim_guards=false"),
    "cudagraphs": (False, True, "compile_mode=reduce-overhead,pad_multiple=1024"),
    "compiledgd": (False, True, "graph_dequant=true"),
    "compiledgdcpp": (False, True, "graph_dequant=true,cpp_wrapper=true"),
    "compiledbnb": (False, True, "graph_dequant=false"),
    "compiledoff": (False, True, "offload_layers=8"),   # 8 x ~70 MB layer inputs (one in flight): -0.47 GiB
    # LoRA dropout 0.05 with its masks regenerated in backward (LEVERS.mask_free_dropout): a speed side against
    # compiled and compiled_d0 (its masks are drawn otherwise than peft's, so no agreement side)
    "compiledmf": (False, True, "mask_free_dropout=true"),
    "compiledprev": (False, True, "mask_free_dropout=true,checkpoint_in_graph=false"),   # the default before s23
    "compiledmf32": (False, True, "mask_free_dropout=true,mask_hash32=true"),   # the same masks, in int32 words
    "leancompiledmf": (True, True, "mask_free_dropout=true"),   # lean's 6.28 GiB (2026-12-05) under its 6.2 goal?
    # the compiled default with the activation checkpoint inside the compiled graph (LEVERS.checkpoint_in_graph)
    "compiledck": (False, True, "mask_free_dropout=true,checkpoint_in_graph=true,checkpoint_in_graph_layers=1024"),
    "compiledck6k": (False, True, "mask_free_dropout=true,checkpoint_in_graph=true,checkpoint_in_graph_layers=1024,"
                                  "tokens_per_microbatch=6144"),
    "compiledck7k": (False, True, "mask_free_dropout=true,checkpoint_in_graph=true,checkpoint_in_graph_layers=1024,"
                                  "tokens_per_microbatch=7168"),
    # ... in the first layers only, as many as engine.plan.checkpoint_in_graph_layers_for gives (under the peak)
    "compiledckfit": (False, True, "mask_free_dropout=true,checkpoint_in_graph=true"),
    "compiledmax": (False, True, "compile_mode=max-autotune-no-cudagraphs"),
    "varlen": (False, False, "varlen_attention=true"),
    "compiledvl": (False, True, "varlen_attention=true"),
    "flex": (False, False, "varlen_attention=false"),
    "compiledflex": (False, True, "varlen_attention=false"),
    "leanflex": (True, False, "varlen_attention=false"),
    "leancompiledflex": (True, True, "varlen_attention=false"),
    "leancompiled8k": (True, True, "tokens_per_microbatch=8192"),
    "leancgd4k": (True, True, "graph_dequant=true,tokens_per_microbatch=4096"),
    "leancgd6k": (True, True, "graph_dequant=true,tokens_per_microbatch=6144"),
    "leancompiled": (True, True, ""),
    "leancgd": (True, True, "graph_dequant=true"),
    "leanstretch": (True, False, "lean_stretch=true"),
    "lean12k": (True, False, "tokens_per_microbatch=12288"),
}
# Agreement sides (ending _nd, and their reference nodrop): LoRA dropout 0 and AGREE_STEPS steps. With dropout, a
# lever that draws its masks otherwise (inductor's RNG, a padded row's longer tensors) trains another random draw
# of the same model: only without it does the adapter show whether the lever computes what eager does.
AGREE_STEPS = 30
for _name, _spec in [("nodrop", (False, False, "")), ("eager_nd", (False, False, "")),
                     ("noliger_nd", (False, False, "liger=false")),
                     ("paged_nd", (False, False, "fused_optimizer=false")),
                     *((f"{k}_nd", LEVER_SIDES[k]) for k in ("compiled", "cudagraphs", "compiledhost", "compiledgd",
                                                             "varlen", "compiledvl", "flex", "compiledflex"))]:
    LEVER_SIDES[_name] = _spec
# Dropout sides (ending _d0): the lever side with LoRA dropout 0 over the full steps, a speed side (what the dropout
# costs on the same data and steps), not an agreement side.
for _name in ("compiled",):
    LEVER_SIDES[f"{_name}_d0"] = LEVER_SIDES[_name]
# Memory sides (ending _mem): the lever side's run, MEM_STEPS steps, under BENCH_MEMORY_HISTORY (lever_site/).
MEM_STEPS = 20
for _name in ("compiled", "compiledbnb", "compiledmf", "compiledck"):
    LEVER_SIDES[f"{_name}_mem"] = LEVER_SIDES[_name]
SIDES = ("best", "engine", "lean", *LEVER_SIDES)
EXAMPLES_PER_STEP = 16        # the engine's default micro_batch_size 4 x gradient_accumulation_steps 4
LOG_EVERY = 10                # the engine's default logging_steps; the best stack's points use the same
MAX_SEQ = 2048
TEMPLATE_WORDS = ["###", "Instruction", "Input", "Response", ":"]
SPECIALS = ["<unk>", "<s>", "</s>"]   # Llama's ids: unk 0, bos 1, eos 2 (the model configs' defaults)
# The engine checks that a tokenizer gives plain text back (engine.model.keeps_text): its probe's words are in the
# vocabulary, and the WordPiece decoder's cleanup joins "yes ," back to "yes,".
PROBE_WORDS = ["the", "answer", "is", "yes", ",", "42", "."]
TEMPLATE_TOKENS = 11          # BOS, three "### Name :" headers, EOS: what a row's words leave room for


# ----------------------------------------------------------------- data and tokenizer
def n_words(vocab_size: int) -> int:
    """Distinct words in the data: the same file for every architecture whose vocabulary holds 30,000."""
    return min(30000, vocab_size - len(SPECIALS) - len(TEMPLATE_WORDS) - len(PROBE_WORDS))


def make_jsonl(path: Path, rows: int, words: int, median: int = 350, seed: int = 0) -> Path:
    """Alpaca rows whose token lengths (with the default template) are lognormal around `median`."""
    import random

    if path.exists():
        return path
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(rows):
            total = int(min(2000, max(50, rng.lognormvariate(math.log(median), 0.6))))
            body = total - TEMPLATE_TOKENS
            n_prompt = max(2, int(body * rng.uniform(0.2, 0.7)))
            n_input = n_prompt // 2 if rng.random() < 0.6 else 0

            def text(n: int) -> str:
                return " ".join(f"w{rng.randrange(words)}" for _ in range(n))
            f.write(json.dumps({"instruction": text(n_prompt - n_input), "input": text(n_input),
                                "output": text(body - n_prompt)}) + "\n")
    tmp.rename(path)
    return path


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer of the architecture's vocabulary size: BOS added, EOS and unk as Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + TEMPLATE_WORDS + PROBE_WORDS)}
    for i in range(vocab_size - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="\x01", cleanup=True)  # no word starts with \x01: none is merged
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=4096)


def model_with_tokenizer(arch: str, root: Path) -> Path:
    model_dir = build_model_dir(arch, root)
    if not (model_dir / "tokenizer.json").exists():
        build_tokenizer(ARCHS[arch]["vocab_size"]).save_pretrained(model_dir)
    return model_dir


# ----------------------------------------------------------------- lorapilot train, through the CLI
def agreement_side(side: str) -> bool:
    return side == "nodrop" or side.endswith("_nd")


def write_config(path: Path, model_dir: Path, data: Path, lean: bool, no_dropout: bool = False,
                 compile_layers: bool = False) -> Path:
    lines = [f"model: {model_dir}", "dataset:", f"  path: {data}", "  validation_split: 0.0", "training:",
             f"  max_seq_length: {MAX_SEQ}"] + (["  memory: lean"] if lean else []) + (
        ["  compile: true"] if compile_layers else []) + (
        ["lora:", "  dropout: 0.0"] if no_dropout else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def run_lorapilot(side: str, model_dir: Path, data: Path, steps: int, work: Path, timeout_s: float) -> dict:
    import shutil

    tag = f"{model_dir.name}-{side}"
    lean, compile_layers, levers = LEVER_SIDES.get(side, (side == "lean", False, ""))
    cfg = write_config(work / f"{tag}.yaml", model_dir, data, lean=lean, no_dropout=agreement_side(side) or side.endswith("_d0"),
                       compile_layers=compile_layers)
    steps = AGREE_STEPS if agreement_side(side) else MEM_STEPS if side.endswith("_mem") else steps
    run_dir = work / f"{tag}-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "tui.entry", "train", str(cfg), "--run-dir", str(run_dir), "--max-steps", str(steps)]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    # perf_hints: where inductor skips CUDA graphs it says why ("skipping cudagraphs due to ...")
    env = {"TORCH_LOGS": "recompiles,perf_hints" if "compile_mode" in levers else "recompiles"}
    memory = work / f"{tag}-mem" if side.endswith("_mem") else None
    if memory:
        shutil.rmtree(memory, ignore_errors=True)
        env["BENCH_MEMORY_HISTORY"] = str(memory)
    if levers or memory:
        site = str(REPO / "benchmarks" / "lever_site")
        env.update(BENCH_LEVERS=levers, PYTHONPATH=os.pathsep.join(
            [site, str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    rc = _run(cmd, work / f"{tag}.cli.log", timeout_s, env=env)
    if rc is None:  # out of time: the trainer runs detached from the CLI, in its own session
        _kill_trainer(run_dir)
    if memory:
        _memory_report(memory, work / f"{tag}.mem.md")
    return {"side": side, "rc": rc, "started": t0, "points": engine_points(run_dir),
            "log": str(run_dir / "train.log"), "config": cfg.read_text(), "choices": choices(run_dir / "train.log")}


def _memory_report(memory: Path, out: Path, wait_s: float = 180) -> None:
    """memory_peak.py over the trainer's snapshot, which the detached trainer writes as it exits (lever_site/)."""
    deadline = time.time() + wait_s
    while not list(memory.glob("*.pickle")) and time.time() < deadline:
        time.sleep(1)
    snaps = sorted(memory.glob("*.pickle"))
    if snaps:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory_peak.py"), *map(str, snaps),
                        "--out", str(out)], check=False)


def choices(log: Path) -> list[str]:
    """What the trainer chose and why (its `[lorapilot]` lines), e.g. to see that a lever side took its lever."""
    try:
        return [x for x in log.read_text(errors="replace").splitlines() if x.startswith("[lorapilot]")]
    except OSError:
        return []


def engine_points(run_dir: Path) -> list[dict]:
    """(step, time, cumulative tokens, cumulative trained tokens, loss, peak) from the run's metrics.jsonl."""
    from engine.rundir import read_metrics

    points, trained = [], 0.0
    prev = None
    for r in (r for r in read_metrics(run_dir) if r.get("kind") == "train"):
        if prev is not None and r.get("tokens_per_s"):
            # both rates share the interval: the trained tokens are its tokens times their ratio
            trained += (r["tokens_seen"] - prev["tokens_seen"]) * r["trained_tokens_per_s"] / r["tokens_per_s"]
        peak = r.get("gpu_peak_alloc_gib") or [0.0]
        points.append({"step": r["step"], "time": r["time"], "tokens": r["tokens_seen"], "trained": trained,
                       "loss": r.get("loss"), "peak_gib": max(peak)})
        prev = r
    return points


def _kill_trainer(run_dir: Path) -> None:
    from engine.rundir import read_status

    pid = (read_status(run_dir) or {}).get("pid")
    if pid:
        try:
            os.killpg(int(pid), signal.SIGKILL)  # the trainer we started leads its own session
        except (ProcessLookupError, PermissionError):
            pass


def _run(cmd: list[str], log: Path, timeout_s: float, env: dict | None = None) -> int | None:
    """The command's exit code, or None when it ran out of time (then it is killed)."""
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
        try:
            return p.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None


# ----------------------------------------------------------------- the best stack, as the docs write it
def best_stack(model_dir: Path, data: Path, steps: int, points_file: Path) -> None:
    """Trainer + DataCollatorWithFlattening + flex attention + Liger, NF4 + LoRA; 16 examples per micro-batch."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorWithFlattening,
                              Trainer, TrainerCallback, TrainingArguments)

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def tokenize(row):
        prompt = f"### Instruction:\n{row['instruction']}\n\n"
        prompt += f"### Input:\n{row['input']}\n\n" if row["input"] else ""
        prompt += "### Response:\n"
        p = tokenizer(prompt)["input_ids"]
        r = tokenizer(row["output"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return {"input_ids": (p + r)[:MAX_SEQ], "labels": ([-100] * len(p) + r)[:MAX_SEQ]}

    ds = load_dataset("json", data_files=str(data), split="train")
    ds = ds.map(tokenize, remove_columns=ds.column_names)

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="flex_attention" if cuda else "sdpa",
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype),
        device_map={"": 0} if cuda else None,
        # transformers 5.25 fetches Hub kernels by default: the GPU machine is offline, and the engine turns them off
        # too (engine.model.causal_lm), so both sides train transformers' own layers plus their chosen kernels
        use_kernels=False)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))

    flatten = DataCollatorWithFlattening()
    fed: list[tuple[int, int]] = []  # (tokens, trained tokens) per micro-batch, in the order collated

    def collate(rows):
        fed.append((sum(len(r["input_ids"]) for r in rows), sum(sum(1 for x in r["labels"][1:] if x != -100)
                                                                for r in rows)))
        return flatten(rows)

    class Points(TrainerCallback):
        """A point at each log (step 1, then every LOG_EVERY steps, as the engine's records), synchronised and
        written at once: a side stopped early keeps its points."""

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            if cuda:
                torch.cuda.synchronize()
            s = state.global_step  # one micro-batch a step: step s trained the first s collated (the loader reads ahead)
            point = {"step": s, "time": time.time(), "tokens": sum(t for t, _ in fed[:s]),
                     "trained": sum(t for _, t in fed[:s]), "loss": float(logs["loss"]),
                     "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0}
            with open(points_file, "a") as f:
                f.write(json.dumps(point) + "\n")

    args = TrainingArguments(
        output_dir=str(points_file.parent / "best-out"), per_device_train_batch_size=EXAMPLES_PER_STEP,
        gradient_accumulation_steps=1, max_steps=steps, learning_rate=2e-4, lr_scheduler_type="cosine",
        warmup_steps=0.03, optim="paged_adamw_32bit" if cuda else "adamw_torch", weight_decay=0.001,
        max_grad_norm=0.3, bf16=cuda, use_cpu=not cuda, logging_steps=LOG_EVERY, logging_first_step=True,
        save_strategy="no", report_to="none", remove_unused_columns=False, use_liger_kernel=cuda, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Points()])
    trainer.train()


# ----------------------------------------------------------------- reading the sides
def count_recompiles(log: Path) -> int:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return -1
    return len(re.findall(r"Recompiling function", text))


def count_cudagraph_skips(log: Path) -> int:
    try:
        return len(re.findall(r"skipping cudagraphs", log.read_text(errors="replace")))
    except OSError:
        return -1


def steady(points: list[dict], warmup: int) -> dict | None:
    """Medians and aggregates over the intervals after `warmup` steps; None without two points there."""
    win = [p for p in points if p["step"] >= warmup]
    if len(win) < 2:
        return None
    rates, trained_rates = [], []
    for a, b in itertools.pairwise(win):
        dt = b["time"] - a["time"]
        rates.append((b["tokens"] - a["tokens"]) / dt)
        trained_rates.append((b["trained"] - a["trained"]) / dt)
    median = statistics.median(rates)
    # the end of the last interval (from the first step on) slower than 80 % of the steady median
    settled = points[0]["step"]
    for a, b in itertools.pairwise(points):
        if (b["tokens"] - a["tokens"]) / (b["time"] - a["time"]) < 0.8 * median:
            settled = b["step"]
    span = win[-1]["time"] - win[0]["time"]
    return {"tok_s": median, "trained_s": statistics.median(trained_rates),
            "tok_s_all": (win[-1]["tokens"] - win[0]["tokens"]) / span,
            "trained_s_all": (win[-1]["trained"] - win[0]["trained"]) / span,
            "steps": win[-1]["step"] - win[0]["step"], "settled": settled,
            "s_per_step": span / (win[-1]["step"] - win[0]["step"])}


def _recompiles(res: dict) -> str:
    skips = res.get("cudagraph_skips") or 0
    return f"{res.get('recompiles', '-')}" + (f" ({skips} cudagraph skips)" if skips > 0 else "")


def table(results: list[dict], warmup: int) -> str:
    from engine.estimate.params import architecture, count_params

    first = results[0] if results else {}
    lines = [f"GPU: {first.get('gpu', '?')}; {first.get('versions', '?')}; {first.get('date', '?')}",
             (f"{EXAMPLES_PER_STEP} examples per optimizer step; steady state from step {warmup} on, "
              f"{LOG_EVERY}-step intervals (median; the window's aggregate in brackets)"), "",
             ("| model | side | tok/s | trained tok/s | steady steps | s/step | settled by step | recompiles "
              "| peak alloc GiB | s to step 1 | % of limit | first loss |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_arch: dict[str, dict] = {}
    for res in results:
        s = steady(res["points"], warmup)
        arch, side = res["arch"], res["side"]
        status = "" if res.get("rc") == 0 else (" (stopped: out of time)" if res.get("rc") is None
                                                 else f" (exit {res.get('rc')})")
        if s is None:
            lines.append(f"| {arch} | {side}{status} | - | - | {len(res['points'])} points | - | - | "
                         f"{res.get('recompiles', '-')} | - | - | - | - |")
            continue
        by_arch.setdefault(arch, {})[side] = s
        gpu = res.get("gpu", "")
        peak_tf = PEAK_TFLOPS.get(gpu.split()[1] if len(gpu.split()) > 1 else "")
        n_params = count_params(architecture(ARCHS[arch])).total
        limit = f"{6 * n_params * s['tok_s'] / (peak_tf * 1e12):.0%}" if peak_tf else "-"
        p = res["points"]
        to_first = f"{p[0]['time'] - res['started']:.0f}" if res.get("started") else "-"
        loss = next((x["loss"] for x in p if x.get("loss") is not None), None)
        loss_text = f"{loss:.3f}" if loss is not None else "-"
        lines.append(
            f"| {arch} | {side}{status} | {s['tok_s']:,.0f} ({s['tok_s_all']:,.0f}) | {s['trained_s']:,.0f} "
            f"({s['trained_s_all']:,.0f}) | {s['steps']} | {s['s_per_step']:.2f} | {s['settled']} | "
            f"{_recompiles(res)} | {max(x['peak_gib'] for x in p):.1f} | {to_first} | {limit} | "
            f"{loss_text} |")
    ratios = []
    for arch, sides in by_arch.items():
        if "best" not in sides:
            continue
        for side, s in sides.items():
            if side != "best":
                b = sides["best"]
                ratios.append(f"{arch}: {side} / best = {s['tok_s'] / b['tok_s']:.2f}x tokens/s, "
                              f"{s['trained_s'] / b['trained_s']:.2f}x trained tokens/s")
    return "\n".join(lines + [""] + ratios) + "\n"


# ----------------------------------------------------------------- the driver
def run_side(side: str, arch: str, model_dir: Path, data: Path, steps: int, work: Path, timeout_s: float) -> dict:
    if side != "best":
        res = run_lorapilot(side, model_dir, data, steps, work, timeout_s)
    else:
        points_file = work / f"{arch}-best.points.jsonl"
        points_file.unlink(missing_ok=True)
        log = work / f"{arch}-best.log"
        t0 = time.time()
        rc = _run([sys.executable, __file__, "--best", "--model-dir", str(model_dir), "--data", str(data),
                   "--steps", str(steps), "--points", str(points_file)], log, timeout_s,
                  env={"TORCH_LOGS": "recompiles"})
        points = [json.loads(x) for x in points_file.read_text().splitlines()] if points_file.exists() else []
        res = {"side": side, "rc": rc, "started": t0, "points": points, "log": str(log)}
    res.update(arch=arch, steps_asked=AGREE_STEPS if agreement_side(side) else steps, recompiles=count_recompiles(Path(res["log"])),
               cudagraph_skips=count_cudagraph_skips(Path(res["log"])), gpu=_gpu_name(),
               versions=_versions(), date=time.strftime("%Y-%m-%d"))
    (work / f"{arch}-{side}.json").write_text(json.dumps(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="*", default=["llama2-7b"])
    ap.add_argument("--sides", default="engine,best,lean")
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--median", type=int, default=350, help="median tokens per row (smaller: a quick CPU check)")
    ap.add_argument("--deadline-s", type=float, default=3600.0, help="for the whole invocation; sides share it")
    ap.add_argument("--side-timeout-s", type=float, default=None, help="at most this long for one side (a lever "
                    "side that stalls leaves the rest their time; it is read as far as it got)")
    ap.add_argument("--work", default="/tmp/lorapilot-user-path")
    ap.add_argument("--out")
    ap.add_argument("--retable", metavar="DIR")
    ap.add_argument("--best", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--points", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.best:
        best_stack(Path(a.model_dir), Path(a.data), a.steps, Path(a.points))
        return
    if a.retable:
        order = {s: i for i, s in enumerate(SIDES)}
        results = sorted((json.loads(f.read_text()) for f in Path(a.retable).glob("*.json")
                          if f.stem.rsplit("-", 1)[-1] in SIDES), key=lambda r: (r["arch"], order[r["side"]]))
        return write_out(table(results, a.warmup), a.out)
    t_end = time.time() + a.deadline_s
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for arch in a.archs:
        model_dir = model_with_tokenizer(arch, work / "models")
        words = n_words(ARCHS[arch]["vocab_size"])
        data = make_jsonl(work / f"alpaca-{words}w-{a.rows}-m{a.median}.jsonl", a.rows, words, a.median)
        for side in a.sides.split(","):
            left = t_end - time.time()
            if left < 60:
                print(f"| {arch} | {side} | skipped: {left:.0f} s left |", flush=True)
                continue
            t0 = time.time()
            res = run_side(side, arch, model_dir, data, a.steps, work, min(left - 15, a.side_timeout_s or left))
            results.append(res)
            print(f"({arch} {side}: exit {res['rc']}, {len(res['points'])} points, {time.time() - t0:.0f} s)")
            print(table(results[-1:], a.warmup).splitlines()[5], flush=True)
    write_out(table(results, a.warmup), a.out)


if __name__ == "__main__":
    main()
