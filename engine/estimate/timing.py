"""Optimizer steps, wall-clock time and cost of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.estimate.params import Architecture, ParamCounts
from engine.estimate.speed_table import path_of, speed_basis

if TYPE_CHECKING:
    from engine.config import Config
    from engine.estimate.gpus import GpuSpec
    from engine.estimate.model_config import ModelInfo
    from engine.plan import Machine, RunPlan

def flops_per_token(arch: Architecture, params: ParamCounts, lora_params: int, tokens_per_example: int,
                    gradient_checkpointing: bool) -> float:
    """Training FLOPs per token.

    Forward is 2 FLOPs per matmul weight. Backward of a frozen base needs only
    the input gradients (another 2N, not the 4N of full fine-tuning, because no
    weight gradients are formed); checkpointing repeats the forward. Causal
    attention adds 2 x q_dim x sequence per layer forward, twice that backward, in the layers that have it (not a
    hybrid decoder's linear-attention layers, Qwen3.5's: their recurrence beside the matmuls is not counted).
    Adapters cost 6 FLOPs per parameter like any trained weight.
    """
    # lm_head multiplies even when tied; a token meets only its top-k experts
    matmul = params.linear + params.experts * arch.experts_per_token // arch.experts + arch.vocab * arch.hidden
    attention = 2 * arch.q_dim * tokens_per_example * arch.full_attention_layers
    forward = 2 * matmul + attention
    backward = 2 * matmul + 2 * attention
    recompute = forward if gradient_checkpointing else 0.0
    return forward + backward + recompute + 6 * lora_params


# This machine's CPU when there is no GPU: the run trains in fp32 with plain PyTorch kernels (bitsandbytes' 4-bit
# layers dequantise on the CPU). Four terms, each fitted to the user's path (`lorapilot train CONFIG` through the CLI,
# timed from its metrics.jsonl by benchmarks/cpu_time.py) at the moments no other process was busy, then rounded
# ~10 % towards the slower side: a quiet machine finishes within the estimate and in no less than 80 % of it (the
# demo, the demo in 2 micro-batches a step and the 85M model measured 0.82, 0.84 and 0.88 of it; tests/test_cpu_time.py
# reads them), a busy one takes longer and the detail says so (beside other jobs the demo's steps took 3-30x as long).
# The terms were first rounded each on its own and the fixed cost charged a micro-batch: 1.26-1.77x the measurements.

# The first step's warm-up beyond a normal step, counted once a run: measured -0.08 to +0.07 s on a quiet machine
# (the demo, 2 micro-batches a step, the 85M model), up to 6 s beside other jobs; half a second covers the quiet
# cases' noise. benchmarks/results/cpu_time-2026-12-03.md
CPU_FIRST_STEP_S = 0.5
# An optimizer step's fixed cost however many micro-batches it holds (the Trainer's step, the optimizer and the
# schedule, logging, the callbacks): what a tiny model's step is made of. The demo's quiet step is 0.127 s in one
# micro-batch and 0.159 s in two, the same FLOPs (1.52 GFLOP at the 85M model's 31 GFLOP/s a core: 0.024 s): a second
# micro-batch costs 0.032 s, the step itself the other 0.071 s. benchmarks/results/cpu_time-2026-12-03.md
CPU_SECONDS_PER_STEP = 0.08
# A micro-batch's own fixed cost beyond its FLOPs (its forward and backward launched, the loss, the collator): the
# 0.032 s a second micro-batch added to the demo's step above. benchmarks/results/cpu_time-2026-12-03.md
CPU_SECONDS_PER_MICROBATCH = 0.035
# The FLOPs (flops_per_token) at a rate per core: what a larger model's step is made of. The 85M model (137 GFLOP a
# step with checkpointing's recompute) took 2.30 s a step: 31 GFLOP/s a core with the step's and its micro-batch's
# fixed cost (0.103 s) taken off. benchmarks/results/cpu_time-2026-12-03.md
CPU_GFLOPS_PER_CORE = 28.0


def cpu_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# What every CPU time says beside its figure (`lorapilot estimate` and the wizard): the rates are a quiet machine's.
CPU_TIME_CAVEAT = "a busy machine takes several times longer"
# The same said in two words after the time, where a line has no room for it (the wizard's estimate line, 80 columns).
CPU_TIME_CAVEAT_SHORT = "if idle"


def cpu_detail(cores: int | None = None) -> str:
    """What the CPU time assumes, in the user's words (CPU_TIME_CAVEAT is said beside it)."""
    return (f"{cores or cpu_cores()} cores at {CPU_GFLOPS_PER_CORE:g} GFLOP/s each, {CPU_SECONDS_PER_STEP:g} s a step, "
            f"{CPU_SECONDS_PER_MICROBATCH:g} s a micro-batch and {CPU_FIRST_STEP_S:g} s of warm-up, as measured on a "
            "quiet 2-core machine")


def cpu_seconds(steps: float, micro_batches: float, flops: float, cores: int | None = None) -> float:
    """Training time on this machine's CPU: the first step's warm-up once, each optimizer step's and each
    micro-batch's fixed cost, and the FLOPs at the per-core rate over this machine's cores (or `cores`)."""
    rate = (cores or cpu_cores()) * CPU_GFLOPS_PER_CORE * 1e9
    return CPU_FIRST_STEP_S + steps * CPU_SECONDS_PER_STEP + micro_batches * CPU_SECONDS_PER_MICROBATCH + flops / rate


def compile_words(seconds: float) -> str:
    """What a compiled plan's time includes, one wording for `lorapilot estimate` and the wizard."""
    return f"includes ~{seconds:.0f} s compiling the layers before the first step"


# The run's start-up: everything between `lorapilot train` and the first step, beside the compile (RunPlan.compile_s,
# counted with the plan that compiles): the processes and their imports, reading and tokenising the dataset, the data
# doctor, reading the base checkpoint and quantising it, building the adapters and the Trainer. The one rule; the
# sweep's trial time is the estimate's time and so counts it too (each trial is a fresh trainer process). Not in it:
# downloading the model from the Hub: no bandwidth is known offline, so the estimate states the checkpoint's size
# beside the time when it is not in the local cache (engine.estimate.hub_cache), and a second run reads the cache.

# What does not grow with the model or the data (imports, the tokenizer, the Trainer): the demo on this 2-core CPU
# (1.0 M parameters, 400 rows, 12.6 k tokens) started in 8.3 and 8.8 s when the machine was quiet, 11-20 s beside
# other jobs (launch to train begin; benchmarks/results/cpu_time-2026-12-03.md, its start-up column; 8.2 s again on
# 2026-12-05, `lorapilot train presets/demo.yaml`: launch to the first train record less its own duration).
STARTUP_FIXED_S = 8.5
# Tokenising the rows (train and validation) as the trainer does, with the data doctor: the H200 runs of 2,000 alpaca
# rows (~810 k tokens) wrote their pre-flight findings 11.6-20.4 s after launch (median ~15 s), ~4 s of it the fixed
# part above: 49-77 k tokens/s, counted at the slower side (benchmarks/results/user_path-h200-2026-12-03,
# levers-user_path-h200-2026-12-03 and user_path-t525-h200-2026-12-03: each side's "started" against its
# metrics.jsonl's first record).
TOKENIZE_TOKENS_PER_S = 60e3
# Reading the 16-bit checkpoint (2 bytes a parameter) and quantising it to 4-bit, the adapters and the Trainer built:
# on an H200, from the first record to train begin (the first train record's time less its own duration, from its
# tokens_per_s), 5-16 s for Llama-2-7B (13.5 GB) and 7-20 s for Llama-3-8B (16 GB), the same runs; ~4 s of it the
# fixed part: 1.0 GB/s, the slowest of them (weights from a local disk, the page cache warm: a cold network disk is
# slower). On the CPU (fp32, bitsandbytes quantising on the CPU): an 85 M model started ~0.5 s later than the demo
# (cpu_time-2026-12-03.md): ~0.34 GB/s of checkpoint, rounded down to 0.25 GB/s.
LOAD_BYTES_PER_S = {"cuda": 1.0e9, "cpu": 0.25e9}


# Bytes a parameter in the checkpoint as config.json names its dtype (torch_dtype; `dtype` from transformers 5 on):
# 16-bit where it names none or another, as the models the start-up was measured on ship.
CHECKPOINT_BYTES_PER_PARAM = {"float32": 4, "float64": 8}


def checkpoint_bytes(param_count: int, dtype: str | None = None) -> int:
    """The base checkpoint's size: what the start-up reads and quantises, and what a first run downloads when it
    is not in the local cache. One rule for both."""
    return max(0, param_count) * CHECKPOINT_BYTES_PER_PARAM.get(str(dtype or "").removeprefix("torch."), 2)


def startup_seconds(param_count: int, tokens: int, device: str, dtype: str | None = None) -> float:
    """The run's start-up before its first step (the compile apart): the fixed part, the dataset's tokens (train and
    validation) to tokenise, and the base checkpoint's bytes (checkpoint_bytes) to read and quantise on `device`
    (cuda | cpu)."""
    rate = LOAD_BYTES_PER_S["cuda" if device == "cuda" else "cpu"]
    return STARTUP_FIXED_S + max(0, tokens) / TOKENIZE_TOKENS_PER_S + checkpoint_bytes(param_count, dtype) / rate


def download_size(nbytes: int) -> str:
    """A download's size as the hub shows it (decimal units): "16.1 GB", "2 MB"."""
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{max(1, round(nbytes / 1e6))} MB"


def download_words(nbytes: int, when: str = "first") -> str:
    """A base model to fetch before the run starts, one wording for `lorapilot estimate`, the wizard and the sweep
    (the time does not count it: no bandwidth is known offline)."""
    return f"+ download {download_size(nbytes)} {when} (not in the local cache)"


@dataclass(frozen=True)
class RunTime:
    seconds: float | None
    basis: str               # where the rate comes from, in the user's words ("measured on H200", ...)
    detail: str = ""         # the path, the fraction of the peak and the measured speeds behind it
    flops: float | None = None   # the run's training FLOPs (all ranks), what the rate divides
    compile_s: float = 0.0   # of seconds: compiling the decoder layers before the first step (once a run)
    caveat: str = ""         # said wherever the time is shown (CPU_TIME_CAVEAT on the CPU)


def run_seconds(arch: Architecture, params: ParamCounts, lora_params: int, plan: RunPlan, machine: Machine,
                gpu: GpuSpec | None, quantization: str, gradient_checkpointing: bool) -> RunTime:
    """Training time for the plan's micro-batches (engine.plan.RunPlan): the tokens they really hold (not
    max_seq_length per example) at the rate the speed table measured for this card and path
    (engine.estimate.speed_table), plus the layers' compile when the plan compiles them; on the CPU, this
    machine's cores. seconds None without a rate."""
    if plan.train_tokens is None or plan.max_steps is None:
        return RunTime(None, "steps unknown")
    examples = max(1, plan.max_steps * plan.examples_per_step)
    per_example = max(1, plan.train_tokens // examples)
    fpt = flops_per_token(arch, params, lora_params, per_example, gradient_checkpointing)
    flops = plan.train_tokens * fpt
    per_rank_flops = flops / max(1, plan.processes)
    if machine.device != "cuda":
        passes = (plan.micro_batches or 0) / max(1, plan.processes)
        return RunTime(cpu_seconds(plan.max_steps, passes, per_rank_flops), "this machine's CPU", cpu_detail(), flops,
                       caveat=CPU_TIME_CAVEAT)
    path = path_of(plan.memory, plan.packing, plan.compile_layers)
    basis = speed_basis(gpu, path, quantization) if gpu is not None else None
    if basis is None or gpu is None or not gpu.tflops_16bit:
        return RunTime(None, f"no speed figure for {gpu.name if gpu else 'this GPU'}", flops=flops)
    seconds = per_rank_flops / (gpu.tflops_16bit * 1e12 * basis.fraction)
    if not plan.compile_layers:
        return RunTime(seconds, basis.text, basis.detail, flops)
    detail = basis.detail
    if path == "padded":   # compiled layers measured on the packed and lean paths only
        detail += "; compiled layers on this path not measured: timed at its eager rate"
    # the compile, once a run (engine.plan.compile_seconds): counted on top of the compiled rate
    detail += f"; {compile_words(plan.compile_s)}"
    return RunTime(seconds + plan.compile_s, basis.text, detail, flops, compile_s=plan.compile_s)


# An evaluation's forward pass costs about a third of a training step's forward + backward per example. The sweep
# times its trials' evaluations by it, and the monitor's ETA before a run's first evaluation is measured.
EVAL_COST_PER_EXAMPLE = 1 / 3
# A checkpoint save (the adapter, its optimizer states, the schedule and RNG) takes about one training step: 0.58 s
# against 0.84 s a step for Llama-2-7B r=16 on an H200 (benchmarks/results/user_path-t525-h200-2026-12-03), 0.11 s
# against ~0.7 s for the demo on 2 CPU cores. What the ETA counts a save at before the run's first is measured.
SAVE_COST_STEPS = 1.0


def eval_seconds(examples: int | None, step_s: float, examples_per_step: int | None) -> float | None:
    """One evaluation over `examples` validation examples, from a training step's seconds (EVAL_COST_PER_EXAMPLE);
    None when either count is unknown."""
    if not examples or not examples_per_step:
        return None
    return examples / examples_per_step * step_s * EVAL_COST_PER_EXAMPLE


def save_seconds(step_s: float) -> float:
    """One checkpoint save, from a training step's seconds (SAVE_COST_STEPS)."""
    return step_s * SAVE_COST_STEPS


# A batch of samples (engine.samples.sample_all: the prompts decoded together, greedy, max_new_tokens each; random
# weights never stop early: priced as the worst case) costs per decode step:
# - on a GPU, model.generate is bound by the host's cost per op, not by FLOPs: a 4-bit 7B/8B (32 layers) with its
#   adapters took 16.4 / 21.7 s for its first batch of 3 prompts x 128 tokens on an H200 (11.7 / 12.8 s later ones):
#   5.3 ms a layer a step, the first call's (benchmarks/results/h200-2026-12-02.md, decode_cost.py).
GPU_DECODE_LAYER_S = 5.3e-3
# - on the CPU, each layer's modules and, 4-bit, their bitsandbytes dequantisation of every weight at every step,
#   then the FLOPs at the training rate (CPU_GFLOPS_PER_CORE). 3 prompts, NF4 + LoRA r 16, the quiet 2-core machine
#   (load < 1), rounded to the slower side like training's CPU terms: the demo (4 layers, 0.9 M weights) 8 ms a step,
#   5 ms unquantised (1.25 ms a layer, 4-bit ~0.75 ms more); 2 layers of hidden 1024 (25 M weights) 29 ms, of hidden
#   2048 (101 M) 238 ms: ~4.6e8 weights dequantised a second at the larger size (the smaller dequantise faster; the
#   larger's rate is taken). Beside other jobs the same batches took 10-35x as long (load 7-9: the results file
#   keeps both rounds). benchmarks/results/cpu_sample_cost-2026-12-05.md
CPU_DECODE_LAYER_S = 1.5e-3
CPU_DECODE_4BIT_LAYER_S = 1.0e-3
CPU_DEQUANT_WEIGHTS_PER_S = 4.5e8


def sample_batch_seconds(arch: Architecture, params: ParamCounts, prompts: int, new_tokens: int, device: str,
                         quantization: str, cores: int | None = None) -> float:
    """One batch of samples: `new_tokens` decode steps of `prompts` rows, on `device` (cuda | cpu)."""
    if prompts <= 0 or new_tokens <= 0:
        return 0.0
    if device == "cuda":
        return new_tokens * arch.layers * GPU_DECODE_LAYER_S
    quantised = quantization != "none"
    step = arch.layers * (CPU_DECODE_LAYER_S + (CPU_DECODE_4BIT_LAYER_S if quantised else 0.0))
    step += params.linear / CPU_DEQUANT_WEIGHTS_PER_S if quantised else 0.0
    step += prompts * 2 * (params.linear + params.experts * arch.experts_per_token // arch.experts
                           + arch.vocab * arch.hidden) / ((cores or cpu_cores()) * CPU_GFLOPS_PER_CORE * 1e9)
    return new_tokens * step


@dataclass(frozen=True)
class Schedule:
    """What the trainer does besides training steps: evaluations every eval_steps (None: no validation data), a
    checkpoint every save_steps, one of each at max_steps when it is not a multiple (transformers'
    DefaultFlowCallback), and then the adapter (engine.train.run.finish). samples: the trainer generates samples
    at its evaluations (engine.train.sample_budget keeps them under SAMPLE_TIME_SHARE of the run)."""
    max_steps: int
    eval_steps: int | None = None
    save_steps: int | None = None
    eval_examples: int | None = None     # validation examples: an evaluation's cost before the first is measured
    examples_per_step: int | None = None
    samples: bool = False
    sample_batch_s: float | None = None  # of seconds: one batch of samples (sample_batch_seconds); None: unknown

    def status_fields(self) -> dict:
        """What the trainer writes into status.json's `schedule` (engine.eta.run_schedule reads it back)."""
        return {"eval_steps": self.eval_steps, "save_steps": self.save_steps, "eval_examples": self.eval_examples,
                "samples": self.samples, "sample_batch_s": self.sample_batch_s}


def plan_schedule(cfg: Config, plan: RunPlan, n_val: int | None, info: ModelInfo | None = None) -> Schedule:
    """The schedule the trainer runs the plan by (engine.train.run writes it into status.json; the estimate counts
    it): evaluations only with validation examples (n_val None: unknown, validation configured counts), samples at
    them unless turned off (sample_max_new_tokens 0) or the model is sharded (engine.train.distributed), a batch of
    them priced from the model (`info`; None: unknown)."""
    from engine.samples import DEFAULT_SAMPLE_PROMPTS

    t, d = cfg.training, cfg.dataset
    has_eval = bool(n_val) if n_val is not None else bool(d.validation_path or d.validation_split)
    samples = has_eval and t.sample_max_new_tokens > 0 and plan.parallelism != "fsdp"
    batch_s = None
    if samples and info is not None:
        prompts = len(t.sample_prompts) or min(DEFAULT_SAMPLE_PROMPTS, n_val or DEFAULT_SAMPLE_PROMPTS)
        batch_s = sample_batch_seconds(info.arch, info.params, prompts, t.sample_max_new_tokens, plan.device,
                                       cfg.quantization)
    return Schedule(plan.max_steps or 0, t.eval_steps if has_eval else None, t.save_steps, n_val or None,
                    plan.examples_per_step, samples=samples, sample_batch_s=batch_s)


def count_due(every: int | None, after: int, last: int) -> int:
    """Evaluations (or saves) every `every` steps in (after, last], plus the one at `last` when not a multiple."""
    if not every or last <= after:
        return 0
    return last // every - after // every + (1 if last % every else 0)


@dataclass(frozen=True)
class Pauses:
    """The evaluations and saves a run still has to do from some step, and their seconds."""
    evals: int                # evaluations still to come
    saves: int                # checkpoint saves still to come, the adapter counted as one more
    evals_s: float            # of seconds: the evaluations, their samples included
    saves_s: float            # ... the checkpoints and the adapter
    estimated: bool = False   # a cost is the rule's here, not measured on the run

    @property
    def seconds(self) -> float:
        return self.evals_s + self.saves_s


def pauses(schedule: Schedule, step_s: float, step: int = 0, *, eval_each: float | None = None,
           save_each: float | None = None, evaluated_at: int | None = None, saved_at: int | None = None) -> Pauses:
    """What the run does besides its steps from `step` (the last step finished) to its end, given a training step's
    seconds: the one rule the estimate (from step 0, nothing measured) and the monitor's ETA (engine.eta) count by.

    eval_each / save_each: an evaluation's (its samples in it) and a save's measured cost; None before the first is
    measured: eval_seconds and save_seconds then, and the samples by the trainer's budget
    (sample_budget.expected_spend: the first batch at its price, later ones within SAMPLE_TIME_SHARE of the run's
    time). evaluated_at / saved_at: the step of the last evaluation /
    checkpoint seen (one due at `step` and not yet seen is still to come)."""
    from engine.train.sample_budget import expected_spend

    last = schedule.max_steps
    step = min(step, last)
    n_eval = count_due(schedule.eval_steps, step, last)
    if schedule.eval_steps and step and evaluated_at != step and (step % schedule.eval_steps == 0 or step == last):
        n_eval += 1
    # The final checkpoint at max_steps, then the adapter (counted as one more save: it writes less).
    n_save = count_due(schedule.save_steps, step, last) + 1
    if schedule.save_steps and step and saved_at != step and (step % schedule.save_steps == 0 or step == last):
        n_save += 1
    estimated = False
    samples = False
    if eval_each is None and n_eval:
        eval_each = eval_seconds(schedule.eval_examples, step_s, schedule.examples_per_step)
        estimated = eval_each is not None
        samples = schedule.samples
    if save_each is None:
        save_each, estimated = save_seconds(step_s), True
    evals_s = n_eval * (eval_each or 0.0)
    saves_s = n_save * save_each
    if samples:   # not measured yet: the first batch (unless an evaluation was seen), later ones within the share
        evals_s += expected_spend(n_eval, (last - step) * step_s + evals_s + saves_s, schedule.sample_batch_s,
                                  first_due=evaluated_at is None)
    return Pauses(n_eval, n_save, evals_s, saves_s, estimated)


def pauses_words(evaluations: int, saves: int, startup_s: float = 0.0) -> str:
    """What an estimated time includes besides the steps, short (the wizard's Review, `lorapilot estimate`):
    "incl. 35 s start-up, 40 evals, 21 saves"."""
    parts = [f"{duration_text(startup_s).lstrip('~')} start-up"] if startup_s else []
    parts += [f"{evaluations} eval{'s' * (evaluations != 1)}"] if evaluations else []
    parts += [f"{saves} save{'s' * (saves != 1)}"] if saves else []
    return f"incl. {', '.join(parts)}" if parts else ""


def duration_text(seconds: float | None) -> str:
    """An estimated duration, one wording everywhere (the wizard, `lorapilot estimate`, the sweep)."""
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
