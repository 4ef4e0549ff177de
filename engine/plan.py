"""The one plan of a run: what the trainer will do, decided once, read by everyone.

`plan_run(cfg, machine, lengths=...)` turns a config (and, when known, the training examples' token lengths
and the machine) into a RunPlan: memory mode (auto resolved), Liger's fused loss, attention, the micro-batch
plan with its token budget and its real largest micro-batch, optimizer, offloading, the evaluation batch,
processes and parallelism, steps. The trainer (engine/train/run.py) runs it and writes it to status.json;
the estimate (`lorapilot estimate`, the wizard, the sweep's time plan) computes memory and time from it.
Every rule below lives only here.

Pure Python at import (no torch): the wizard plans on every keystroke.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import count, islice
from typing import TYPE_CHECKING, Iterator

from engine.data.packing import StepPlan, epochs_to_plan, plan_steps, planned_epoch

if TYPE_CHECKING:  # annotations only: the estimate and the trainer import this module, and it stays light
    from engine.config import Config
    from engine.estimate.gpus import GpuSpec
    from engine.estimate.params import Architecture
    from engine.estimate.model_config import ModelInfo
    from engine.model import Hardware

# training.memory lean: tokens per micro-batch at most this (or max_seq_length, if longer). With the layer
# inputs offloaded what grows with tokens is one layer's recompute and its gradients (~0.25 GiB per 1,000
# tokens on a 7B), so 8k tokens keep a 7B near 6 GiB while a typical optimizer step (16 examples, ~7k
# tokens) is still one micro-batch: each forward pass of the 4-bit path has a large fixed cost.
LEAN_TOKENS_PER_MICROBATCH = 8192
# ... and at most this many when lean's decoder layers are compiled (long runs, engine.plan.compile_for): inductor's
# buffers and the weights dequantised in the graph add ~0.6 GiB at 8k tokens. Measured on the user's path (H200,
# Llama-2-7B, benchmarks/results/user_path-s14-h200-2026-12-04.md): compiled at 6,144 tokens 6,091 tok/s at 6.1 GiB,
# 1.21x eager lean's 5,018 at 6.0 GiB (8,192); compiled at 8,192 7,142 tok/s but 6.7 GiB; at 4,096 4,446 at 5.6.
# With varlen attention (user_path-s16-h200-2026-12-04.md): 6,780 at 6.1 GiB (6,144) against 7,181 at 6.7 (8,192).
LEAN_COMPILED_TOKENS_PER_MICROBATCH = 6144
# ... unless the data's fullest optimizer step is at most this much longer: then every step is one micro-batch
# (the Trainer's accumulation count is fixed, so one step over the cap would split them all in two, each pass
# paying the fixed cost again), for at most ~0.5 GiB more on a 7B.
LEAN_STRETCH = 1.25

# training.compile auto: the decoder layers are compiled for runs of at least this many optimizer steps. Measured on the
# user's path (`lorapilot train`, H200, transformers 5.25; benchmarks/results/user_path-t525-h200-2026-12-03.md):
# compiled layers train 1.14x (Llama-2-7B: 0.87 -> 0.73 s/step) and 1.18x (Llama-3-8B: 0.94 -> 0.78 s/step) faster
# in the steady state, 1.19x on transformers 5.17, for +0.3-0.5 GiB peak, but step 1 comes ~70 s later (48 -> 119 s,
# 55 -> 123 s): the compile pays back after ~425-580 steps. 1,000 is about twice that, so a run that compiles is
# clearly faster overall, and short runs (trials, the sweep, the demo) start at once.
COMPILE_MIN_STEPS = 1000
# The compile itself, once a run on a fresh machine: step 1 came +71 s (Llama-2-7B) and +68 s (Llama-3-8B) later than
# eager on transformers 5.25, +64 s on 5.17 (levers-user_path-h200-2026-12-03.md). What train.log says, and what the
# time estimate adds to a compiling plan (engine.estimate.timing). On one H100 (the user's path, the layers compiled in
# one class, mask-free dropout; benchmarks/results/user_path-s20..s23-h100-2026-12-06, each run's train begin to step 1
# less a steady step, from its metrics.jsonl): 39-101 s, median 63 over nine runs: the same figure within the noise.
COMPILE_LAYERS_S = 70.0
# ... and the first layers' own compiled class when they checkpoint inside their graph (RunPlan.checkpoint_in_graph_
# layers: another code object, compiled once more): side by side on one H100, step 1 came +20.3 s (Llama-2-7B, 10
# layers) and +21.4 s (Llama-3-8B, 4 layers) later than the one class's; the default's compile measured 88.4, 114.8
# and 87.6 s against the 70 s counted before (benchmarks/results/user_path-s23-h100-2026-12-06, calls 2-4;
# time_estimate-h100-2026-12-06.md).
COMPILE_IN_GRAPH_CHECKPOINT_S = 20.0


def compile_seconds(checkpoint_in_graph_layers: int) -> float:
    """The compile before step 1 of compiled decoder layers: one class, and another for the first layers when they
    checkpoint inside their graph. What train.log says and the time estimate counts."""
    return COMPILE_LAYERS_S + (COMPILE_IN_GRAPH_CHECKPOINT_S if checkpoint_in_graph_layers > 0 else 0.0)

# Model types Liger patches (liger_kernel.transformers.monkey_patch); others train without it.
LIGER_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
                     "granite", "olmo2")


@dataclass(frozen=True)
class Machine:
    """Where the run is planned to train."""
    device: str                      # cuda | cpu
    name: str
    memory_gib: float | None = None  # per GPU; None: unknown (no fit test)
    processes: int = 1               # data-parallel ranks
    kernels: bool = True             # Liger and Triton usable (a named GPU: the engine installs them on Linux)
    bf16: bool | None = None
    why_no_kernels: str = ""
    varlen: bool = False             # torch's variable-length flash kernel runs here (Ampere or newer, torch >= 2.9)
    varlen_window: bool = False      # ... with a sliding window (torch >= 2.12)

    @classmethod
    def for_gpu(cls, gpu: GpuSpec | None, processes: int = 1) -> Machine:
        """A GPU preset or detected card (engine.estimate.gpus.GpuSpec); None: this machine's CPU."""
        if gpu is None:
            return cls("cpu", "this machine's CPU", None, 1, kernels=False, bf16=False, why_no_kernels="no GPU")
        from engine.train.speed import varlen_kernel_available, varlen_window_available

        # flash kernels need the cards that do bf16 (Ampere and newer); the torch installed here plans for the pod
        varlen = bool(gpu.bf16) and varlen_kernel_available()
        return cls("cuda", gpu.name, gpu.memory_gib, max(1, processes), kernels=True, bf16=gpu.bf16,
                   varlen=varlen, varlen_window=varlen and varlen_window_available())

    @classmethod
    def for_hardware(cls, hw: Hardware, processes: int = 1) -> Machine:
        """The machine the trainer runs on (engine.model.Hardware), with the kernels it really has."""
        from engine.train.speed import liger_available

        ok, why = liger_available(hw.device)
        if hw.device != "cuda":
            return cls("cpu", hw.name, None, max(1, processes), kernels=False, bf16=False, why_no_kernels=why)
        from engine.train.speed import varlen_kernel_available, varlen_window_available

        bf16 = bool(hw.bf16 and hw.capability and hw.capability[0] >= 8)
        varlen = bf16 and varlen_kernel_available()
        return cls("cuda", hw.name, hw.memory_gib, max(1, processes), kernels=ok, bf16=bf16, why_no_kernels=why,
                   varlen=varlen, varlen_window=varlen and varlen_window_available())


@dataclass
class RunPlan:
    device: str
    processes: int
    precision: str                   # bf16 | fp16 | fp32
    memory: str                      # fast | lean (training.memory auto resolved)
    parallelism: str                 # none | ddp | fsdp
    liger: bool                      # Liger's kernels patched in
    fused_loss: bool                 # Liger's fused linear cross-entropy: no fp32 logits materialised
    attention: str                   # lorapilot_varlen | flex_attention | sdpa | eager (transformers' names)
    packing: bool
    token_budget: int | None         # tokens per micro-batch when packing; None: padded micro-batches
    micro_batches_per_step: int      # over all ranks
    examples_per_step: int
    largest_microbatch_tokens: int   # as the model sees it: packed tokens, or rows x longest row (padding)
    lengths_from: str                # "dataset" or the assumption made without it
    optimizer: str
    offload: bool                    # lean: checkpointed activations offloaded to host memory
    offload_layers: int              # fast compiled: the first this many decoder layers' inputs offloaded (0: none)
    mask_free_dropout: bool          # LoRA dropout's mask regenerated in backward (engine.train.mask_free_dropout)
    mask_hash32: bool                # ... its hash in int32 words (LEVERS.mask_hash32, a benchmark lever): same masks
    compile_layers: bool             # each decoder layer through torch.compile (engine.train.compiled_layers)
    graph_dequant: bool              # compiled layers dequantise the NF4 weights in their graph (engine.train.graph_dequant)
    checkpoint_in_graph_layers: int  # compiled layers: the first this many checkpoint inside their graph (0: none)
    eval_batch_size: int             # examples per evaluation micro-batch
    eval_tokens: int                 # its most tokens: never more than training's largest micro-batch
    steps_per_epoch: int | None
    max_steps: int | None
    train_tokens: int | None         # tokens through the model over the whole run (for time)
    micro_batches: int | None        # forward passes over the whole run (each has a fixed cost)
    samples_off: str | None = None   # why the evaluation samples training.sample_max_new_tokens asks for are not made
    packing_off: str | None = None   # why the rows are padded where training.packing asks for packed ones
    lines: list[str] = field(default_factory=list)   # each choice and why, for train.log
    step_plan: StepPlan | None = field(default=None, repr=False)

    @property
    def compile_s(self) -> float:
        """Seconds compiling the decoder layers before step 1 (compile_seconds); 0 when they run eager."""
        return compile_seconds(self.checkpoint_in_graph_layers) if self.compile_layers else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("step_plan", "lines"):
            out.pop(key)
        return out


# ------------------------------------------------------------------------------------------------ the rules
def precision_for(precision: str, machine: Machine) -> str:
    """training.precision auto: bf16 on Ampere and newer, fp16 on older GPUs (T4, V100), fp32 on the CPU."""
    if precision != "auto":
        return precision
    if machine.device != "cuda":
        return "fp32"
    return "fp16" if machine.bf16 is False else "bf16"


def attention_label(attention: str) -> str:
    """A plan's attention implementation as a reader knows it (the plan keeps transformers' name)."""
    from engine.train.varlen_attention import ATTENTION

    return {ATTENTION: "varlen flash attention", "flex_attention": "flex attention",
            "sdpa": "SDPA attention", "eager": "eager attention"}.get(attention, attention)


def attention_for(machine: Machine, packing: bool, precision: str,
                  softcap: bool = False, window: int | None = None) -> tuple[str, str]:
    """Packed rows on a GPU: torch's variable-length flash attention where it runs (1.21x flex's tokens/s eager,
    1.02x compiled, the same adapter within bf16 noise: benchmarks/results/user_path-s15-h200-2026-12-04.md),
    else flex attention; padded rows and the CPU: SDPA. softcap: the model soft-caps its attention logits (Gemma-2),
    which the flash kernel does not (it trained another attention than the model's, silently): flex attention for
    packed rows on a GPU, else eager attention: SDPA has no soft-capping, and transformers refuses it for Gemma-2 at
    load (a ValueError); eager is what it recommends. Eager keeps each layer's T x T scores and probabilities per head
    (engine.estimate.memory.eager_scores_bytes). window: the model's sliding window where a packed row may outgrow it
    (shorter than max_seq_length), which torch's varlen kernel takes from 2.12 on only: flex attention below that."""
    from engine.train.speed import LEVERS

    if (machine.device == "cuda" and packing and LEVERS.varlen_attention and machine.varlen and not softcap
            and (window is None or machine.varlen_window)
            and precision in ("bf16", "fp16")):   # flash kernels take 16-bit inputs only
        from engine.train.varlen_attention import ATTENTION

        return ATTENTION, ("attention: variable-length flash attention (packed rows, each example's causal "
                           "triangle from its boundaries)")
    if machine.device == "cuda" and packing and LEVERS.flex_attention:
        return "flex_attention", ("attention: flex_attention (packed rows, block-diagonal mask from position_ids); "
                                  "the first steps compile its kernels, 1-3 minutes on a fresh machine")
    packed = " (packed rows, block-diagonal mask from position_ids)" if packing else ""
    if softcap:
        return "eager", ("attention: eager" + packed + " (the model soft-caps its attention logits, which SDPA "
                         "does not compute; each layer keeps its tokens x tokens scores)")
    return "sdpa", "attention: sdpa" + packed


def liger_for(machine: Machine, model_type: str | None) -> tuple[bool, str]:
    from engine.train.speed import LEVERS

    if machine.device != "cuda":
        return False, "no GPU"
    if not machine.kernels:
        return False, machine.why_no_kernels or "Liger not available"
    if not LEVERS.liger:
        return False, "switched off (benchmark lever)"
    if model_type is not None and model_type not in LIGER_MODEL_TYPES:
        return False, f"architecture {model_type} not covered"
    return True, ""


def packing_for(cfg: Config, info: ModelInfo | None, model_config: dict | None = None) -> tuple[str | None, str | None]:
    """(why packing is off, the plan's line) where training.packing asks for packed rows that the model cannot train
    exactly; (None, None) otherwise. Packed examples stay apart only in softmax attention (positions restart, each
    example's own causal triangle). A layer that carries state across tokens outside it (Qwen3.5's gated delta net,
    Mamba's state space layers, LFM2's short convolutions: engine.estimate.params.token_state_layers) runs over the
    packed row as one sequence: transformers' PyTorch path of Qwen3.5 hands the examples' boundaries to its chunked
    recurrence, which ignores them, and its causal convolution mixes one example's last tokens into the next's
    first. No error, each example trained on its neighbours' state: such a model trains on padded micro-batches,
    whatever training.packing says (the default asks for packing: refusing it would refuse every such model).
    model_config: config.json where the estimate could not read the model's shapes from it (info None: Mamba has no
    attention heads to count)."""
    from engine.estimate.params import token_state_layers

    if info is not None:
        kinds, model_type = info.arch.token_state, info.arch.model_type
    elif model_config is not None:
        kinds, model_type = token_state_layers(model_config), str(model_config.get("model_type"))
    else:
        return None, None
    if not cfg.training.packing or not kinds:
        return None, None
    why = f"{kinds} layers carry state across a packed row's examples"
    return why, (f"batching: padded, not packed: {model_type}'s {why} (only softmax attention keeps them apart); "
                 "training.packing is ignored for this model")


def token_budget_for(cfg: Config, machine: Machine, memory: str, compiled: bool = False) -> tuple[int | None, str]:
    """Tokens per micro-batch when packing; None for classic padded micro-batches. compiled: the plan compiles the
    decoder layers (lean's cap is lower then)."""
    from engine.train.speed import LEVERS

    t = cfg.training
    if not t.packing:
        return None, f"batching: padded micro-batches of {t.micro_batch_size} examples"
    per_step = t.micro_batch_size * t.gradient_accumulation_steps
    if LEVERS.tokens_per_microbatch:
        return (LEVERS.tokens_per_microbatch,
                f"batching: packed, up to {LEVERS.tokens_per_microbatch} tokens per micro-batch (benchmark lever)")
    if machine.device == "cuda" and memory == "fast" and LEVERS.whole_step:
        # The 4-bit path has a large fixed cost per forward pass: the fewer, fuller micro-batches the better.
        budget = per_step * t.max_seq_length
        return budget, f"batching: packed, up to {budget} tokens per micro-batch (a whole optimizer step when it fits)"
    if machine.device == "cuda" and memory == "lean":
        # Tokens per micro-batch decide the working memory; one micro-batch per step where the cap allows.
        cap = LEAN_COMPILED_TOKENS_PER_MICROBATCH if compiled else LEAN_TOKENS_PER_MICROBATCH
        budget = min(per_step * t.max_seq_length, max(t.max_seq_length, cap))
        return budget, f"batching: lean, packed up to {budget} tokens per micro-batch" + (
            " (compiled layers: a lower cap keeps lean's memory)" if compiled else "")
    budget = t.micro_batch_size * t.max_seq_length
    return budget, f"batching: packed, up to {budget} tokens per micro-batch (micro_batch_size x max_seq_length)"


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run continues: its checkpoint's optimizer step, and the optimizer its saved states belong to
    (engine.train.resume_check.checkpoint_optimizer: "" when the checkpoint's record does not say). The step is for
    train.log only: a resumed run replays the plan of the run it resumes (compile_for)."""
    step: int
    optimizer: str


def optimizer_for(name: str, machine: Machine, memory: str, sharded: bool,
                  resumed: Resumed | None = None) -> tuple[str, str]:
    """bitsandbytes' paged and 8-bit optimizers are CUDA features; lean keeps the states in 8 bits; the fast path
    runs the paged 32-bit default as torch's fused AdamW, unless a resumed run's checkpoint holds another's states."""
    from engine.train.speed import LEVERS

    if sharded and name != "adamw_torch":
        # bitsandbytes' update kernels have no DTensor rule (NotImplementedError on H200 x2); torch's AdamW updates
        # each rank's shard of the adapters.
        return "adamw_torch", f"optimizer: adamw_torch ({name} cannot update sharded parameters)"
    if machine.device != "cuda" and name != "adamw_torch":
        return "adamw_torch", f"optimizer: {name} needs a GPU; using adamw_torch on the CPU"
    if machine.device == "cuda" and memory == "lean" and name == "paged_adamw_32bit":
        return "paged_adamw_8bit", "optimizer: paged_adamw_8bit (lean: optimizer states in 8 bits)"
    if machine.device == "cuda" and name == "paged_adamw_32bit" and LEVERS.fused_optimizer:
        if resumed is not None and resumed.optimizer in ("", name):
            # Its saved states are bitsandbytes' (state1/state2): torch's AdamW cannot load them. ("": a checkpoint
            # recorded before the plan chose the fused AdamW; torch's own AdamW states load into the fused one.)
            return name, f"optimizer: {name} (the checkpoint's: its saved states load into no other optimizer)"
        # bitsandbytes' optimizers synchronise the device after every parameter (448 times a step on a 7B with
        # all-linear LoRA), which stalls a host-bound step; paging buys nothing for adapters' few-hundred-MB
        # states. Measured on the H200 with the layers compiled: with trimmed guards, 1.09x the step rate.
        return "adamw_torch_fused", ("optimizer: adamw_torch_fused (the same AdamW in 32 bits as paged_adamw_32bit: "
                                     "one fused kernel, no per-parameter syncs)")
    return name, f"optimizer: {name}"


def scheduler_for(name: str, warmup_ratio: float) -> str:
    """training.lr_scheduler in transformers' words. warmup_ratio ramps the rate up under every schedule (the schema's
    "how the learning rate decays after warmup"); transformers' `constant` takes no warmup at all, and dropped it
    without a word: with a warmup it is `constant_with_warmup`, the same rate once warm."""
    return "constant_with_warmup" if name == "constant" and warmup_ratio > 0 else name


def offload_for(machine: Machine, memory: str, checkpointing: bool = True) -> tuple[bool, str]:
    """Lean offloads the checkpointed decoder layers' inputs. Without checkpointing there are none: TRL's hook would
    offload every saved tensor, neither measured nor estimated (memory auto may still choose lean there; an explicit
    lean without checkpointing is refused by the config)."""
    from engine.train.speed import LEVERS

    if memory != "lean" or not LEVERS.offload:
        return False, ""
    if machine.device != "cuda":
        return False, "activations: kept on the device (offloading needs a GPU)"
    if not checkpointing:
        return False, ("activations: kept on the GPU (training.gradient_checkpointing false: no checkpointed layer "
                       "inputs to offload)")
    return True, ("activations: offloaded to pinned host memory during forward, fetched back ahead of backward "
                  "(TRL)")


def offload_layers_for(machine: Machine, memory: str, compiled: bool, checkpointing: bool) -> tuple[int, str]:
    """How many decoder layers' checkpointed inputs the fast compiled path offloads to host memory (the first ones:
    engine.train.speed.PartialOffload), against what compiling adds to the peak; 0 unless LEVERS.offload_layers is
    set: not measured yet. Lean offloads them all (offload_for). One GPU: measured on one only."""
    from engine.train.speed import LEVERS

    k = LEVERS.offload_layers
    if k <= 0 or memory != "fast" or not compiled or machine.device != "cuda" or machine.processes > 1 \
            or not checkpointing:
        return 0, ""
    return k, (f"activations: the first {k} decoder layers' inputs offloaded to pinned host memory during forward, "
               "fetched back for their backward (TRL); the other layers' kept on the GPU")


# The activation checkpoint inside a compiled layer's graph (LEVERS.checkpoint_in_graph) makes the layer's one
# backward graph keep more MLP-wide (tokens x intermediate_size) buffers at once than the default's separate recompute
# graph: 9.7 against 8.5 GiB on Llama-2-7B at 7,860 tokens on an H100, 7.4 such buffers more
# (benchmarks/results/user_path-s22-h100-2026-12-06.md; its memory recorder names them). Rounded up.
IN_GRAPH_EXTRA_MLP_TENSORS = 7.5
# Where it was measured (Llama-2-7B, Llama-3-8B): another architecture's layer may not trace whole inside the
# checkpoint (fullgraph), and a compile failure sends every layer back to eager, slower than the default.
IN_GRAPH_MEASURED_TYPES = ("llama",)


def checkpoint_in_graph_layers_for(arch: Architecture | None, machine: Machine, memory: str, compiled: bool,
                                   checkpointing: bool) -> tuple[int, str]:
    """How many decoder layers, the first ones, checkpoint inside their compiled graph (LEVERS.checkpoint_in_graph:
    faster, engine.train.compiled_layers says why) without raising the step's peak.

    The backward runs from the last layer to the first, and while layer j runs it, the checkpointed inputs of
    layers 0..j are still held: the default peaks in the last layer's backward, with all of them. A layer that keeps
    IN_GRAPH_EXTRA_MLP_TENSORS more MLP-wide buffers (each intermediate/hidden layer inputs' worth) stays under
    that peak where enough later layers' inputs are already freed: the first layers only. One layer's input of
    margin. Dense models on one GPU, fast memory (lean offloads the inputs, so the freed ones would not count),
    where it was measured (IN_GRAPH_MEASURED_TYPES); 0 elsewhere."""
    from engine.train.speed import LEVERS

    if not LEVERS.checkpoint_in_graph or not compiled or not checkpointing or memory != "fast" \
            or machine.device != "cuda" or machine.processes > 1 or arch is None or arch.experts > 1 \
            or arch.model_type not in IN_GRAPH_MEASURED_TYPES:
        return 0, ""
    if LEVERS.checkpoint_in_graph_layers is not None:
        k = min(LEVERS.checkpoint_in_graph_layers, arch.layers)
    else:
        extra = IN_GRAPH_EXTRA_MLP_TENSORS * arch.intermediate / arch.hidden   # in layer inputs
        k = max(0, math.floor(arch.layers - extra) - 1)
    if k <= 0:
        return 0, ""
    return k, (f"kernels: the first {k} of {arch.layers} decoder layers checkpoint inside their compiled graph "
               "(faster; the later ones' backward would raise the peak)")


def mask_free_dropout_for(machine: Machine, memory: str, compiled: bool, dropout: float) -> tuple[bool, str]:
    """Whether LoRA dropout keeps no mask nor dropped copy per projection for backward (engine.train.mask_free_dropout):
    compiled layers on one GPU (fast, and lean's long runs), where it was measured: 0.40-0.47 GiB lower than peft's
    dropout at the same speed (benchmarks/results/user_path-s20-h100-2026-12-06.md). Not on eager layers: there the
    mask is a chain of full-size integer ops, slower than nn.Dropout's. Not across processes: not measured there."""
    from engine.train.speed import LEVERS

    if not LEVERS.mask_free_dropout or dropout <= 0 or memory not in ("fast", "lean") or not compiled or machine.device != "cuda" \
            or machine.processes > 1:
        return False, ""
    hashed = ", hashed in int32 words (benchmark lever)" if LEVERS.mask_hash32 else ""
    return True, (f"dropout: LoRA dropout {dropout:g} without saved masks (each regenerated in backward from a "
                  f"seed{hashed}; the projections reading one input save it once)")


def compile_for(setting: str | bool, machine: Machine, memory: str, steps: int | None,
                room: bool = True, resumed_at: int = 0, compile_s: float = COMPILE_LAYERS_S) -> tuple[bool, str]:
    """training.compile: whether each decoder layer goes through torch.compile (engine.train.compiled_layers), and
    the line that says why. Inductor generates Triton kernels: a GPU with Triton or nothing. auto compiles only
    where it was measured to pay back: one process, a run of at least COMPILE_MIN_STEPS steps (lean's too, at
    LEAN_COMPILED_TOKENS_PER_MICROBATCH).
    room False: the estimate fits the fast path eager but not compiled (plan_run asks): auto stays eager rather
    than fall back to lean, which is far slower than what compiling gains.
    steps: the whole run's, also for a resumed run (resumed_at: its checkpoint's step, for the line only). Decided by
    the steps left, a run resumed near its end went eager: lean's token cap, and with it how every step is cut into
    micro-batches and the Trainer's accumulation count, changed under the checkpoint, and the compiled and the eager
    layers draw their dropout masks differently. The plan is the run's, whatever its progress.
    compile_s: the compile's seconds, said in the line (compile_seconds of the layers the plan would compile)."""
    if setting is False:
        return False, "compile: decoder layers eager (training.compile: false)"
    gpu = machine.device == "cuda" and machine.kernels
    why_not = "no GPU" if machine.device != "cuda" else machine.why_no_kernels or "no Triton"
    if setting is True:
        if not gpu:
            return False, f"compile: training.compile true has no effect here ({why_not}); decoder layers eager"
        return True, (f"compile: decoder layers compiled (training.compile: true); step 1 comes "
                      f"~{compile_s:.0f} s later")
    if not gpu:
        return False, f"compile: decoder layers eager ({why_not})"
    if machine.processes > 1:
        return False, (f"compile: decoder layers eager ({machine.processes} processes: compiling is measured on one "
                       "GPU only; training.compile: true to compile anyway)")
    if steps is None:
        return False, "compile: decoder layers eager (the run's steps are unknown)"
    kept = f"; resumed at step {resumed_at:,}: the run's own plan" if resumed_at else ""
    if steps < COMPILE_MIN_STEPS:
        return False, (f"compile: decoder layers eager ({steps:,} steps, under {COMPILE_MIN_STEPS:,}: the "
                       f"~{compile_s:.0f} s compile would not pay back{kept})")
    if not room:
        return False, (f"compile: decoder layers eager ({steps:,} steps would pay back the compile, but the compiled "
                       f"layers' extra memory would not fit {machine.memory_gib:.0f} GiB{kept})")
    faster = "~1.2x faster ones than lean's eager layers" if memory == "lean" else "~1.15x faster ones"
    return True, (f"compile: decoder layers compiled ({steps:,} steps: the ~{compile_s:.0f} s compile before "
                  f"step 1 pays back after ~500 steps of {faster}{kept})")


# ------------------------------------------------------------------------------------------- micro-batches
def microbatch_tokens(mb: list[int], lengths: list[int], packing: bool) -> int:
    """Tokens of one micro-batch as the model sees them: one packed row, or padded rows of the longest."""
    if packing:
        return sum(lengths[i] for i in mb)
    return len(mb) * max((lengths[i] for i in mb), default=0)


def _steps_run(step_plan: StepPlan, max_steps: int) -> Iterator[list[list[int]]]:
    """The optimizer steps the run will take, in order: the planned epochs as the trainer walks them
    (PlannedMicroBatches), the first max_steps of them. The plan holds every epoch the run needs up to
    MAX_SHUFFLES (epochs_to_plan); later epochs walk them in turn (planned_epoch)."""
    if not any(step_plan.epochs):  # no step at all: nothing to walk (and no endless walk over empty epochs)
        return iter(())
    walked = (step_plan.epochs[planned_epoch(e, len(step_plan.epochs))] for e in count())
    return islice((step for epoch in walked for step in epoch), max_steps)


def steps_per_epoch(n_examples: int, examples_per_step: int) -> int:
    """Optimizer steps in one pass over n_examples, a last partial step counted (the trainer's epoch)."""
    return max(1, math.ceil(n_examples / max(1, examples_per_step)))


def total_steps(cfg: Config, steps_per_epoch: int | None) -> int | None:
    """The trainer's max_steps: training.max_steps, or num_epochs x steps per epoch (rounded)."""
    t = cfg.training
    if t.max_steps and t.max_steps > 0:
        return t.max_steps
    if steps_per_epoch is None:
        return None
    return max(1, round(t.num_epochs * steps_per_epoch))


def _eval_batch(cfg: Config, largest: int, val_lengths: list[int] | None) -> tuple[int, int]:
    """(examples per evaluation micro-batch, its most tokens): eval never exceeds training's largest micro-batch
    (a longest row of max_seq_length at least: one example is the smallest batch there is)."""
    t = cfg.training
    longest = min(t.max_seq_length, max(val_lengths)) if val_lengths else t.max_seq_length
    room = max(largest, longest)
    size = max(1, min(t.micro_batch_size, room // max(1, longest)))
    if val_lengths:
        tokens = max(microbatch_tokens(list(range(i, min(i + size, len(val_lengths)))), val_lengths, t.packing)
                     for i in range(0, len(val_lengths), size))
    else:
        tokens = size * longest
    return size, tokens


# ---------------------------------------------------------------------------------------------- the plan
def plan_run(cfg: Config, machine: Machine, *, lengths: list[int] | None = None, n_examples: int | None = None,
             val_lengths: list[int] | None = None, info: ModelInfo | None = None, fraction: float | None = None,
             resumed: Resumed | None = None, model_config: dict | None = None) -> RunPlan:
    """The run's plan. lengths: the training examples' token lengths as the trainer tokenises them; without them
    every example is assumed to fill max_seq_length (an upper bound), `n_examples` of them when counted.

    info (engine.estimate.ModelInfo) lets training.memory and training.parallelism auto ask the memory estimate
    whether the fast path (one whole copy per GPU) fits the machine; without it they take the fast path (ddp).
    resumed: where a resumed run continues: the optimizer its checkpoint's states belong to; otherwise the plan of
    the run it resumes, whatever its progress (compile_for). model_config: the model's config.json where info could
    not be read from it (packing_for).
    """
    packing_off, packing_line = packing_for(cfg, info, model_config)
    if packing_off:   # every rule below (budget, attention, micro-batches, evaluation) plans padded rows
        from dataclasses import replace

        cfg = replace(cfg, training=replace(cfg.training, packing=False))
    t = cfg.training
    parallel = _parallelism_choices(cfg, machine)
    memories = ["fast", "lean"] if t.memory == "auto" and machine.device == "cuda" else \
        ["fast" if t.memory == "auto" else t.memory]
    candidates = [(p, m) for p in parallel for m in memories]
    best = None
    for k, (p, m) in enumerate(candidates):
        plan = _plan_for(cfg, machine, m, p, lengths, n_examples, val_lengths, info,
                         resumed=resumed)
        best = plan
        if info is None or machine.memory_gib is None:
            break
        from engine.estimate.memory import plan_fits
        if plan_fits(cfg, info, plan, machine.memory_gib, fraction):
            break
        if plan.compile_layers and t.compile == "auto":  # eager on this path before the next, if that fits
            eager = _plan_for(cfg, machine, m, p, lengths, n_examples, val_lengths, info, compile_room=False,
                              resumed=resumed)
            if plan_fits(cfg, info, eager, machine.memory_gib, fraction):
                best = eager
                break
    assert best is not None
    if t.memory == "auto":
        if machine.device != "cuda":
            why = "memory: fast (no GPU)"
        elif info is None or machine.memory_gib is None:
            why = "memory: fast (no estimate to decide from)"
        elif best.memory == "fast":
            why = f"memory: fast (the estimate fits {machine.memory_gib:.0f} GiB)"
        else:
            why = f"memory: lean (the fast path would not fit {machine.memory_gib:.0f} GiB)"
        best.lines.insert(0, why)
    if machine.processes <= 1 and t.parallelism == "fsdp":   # every visible GPU: one here (num_gpus 1 is refused)
        best.lines.insert(0, "parallelism: training.parallelism fsdp has no effect on one process; the whole model "
                             "on its GPU")
    if machine.processes > 1:
        best.lines.insert(0, f"parallelism: {best.parallelism} over {machine.processes} processes"
                          + (" (auto: a whole copy per GPU does not fit)" if best.parallelism == "fsdp"
                             and t.parallelism == "auto" else "")
                          + (" (auto: int8 weights are never sharded, a whole copy per GPU)"
                             if t.parallelism == "auto" and cfg.quantization == "int8" and machine.device == "cuda"
                             else ""))
    if packing_line:
        best.packing_off = packing_off
        best.lines.insert(0, packing_line)
    best.samples_off, line = samples_for(cfg, best.parallelism)
    if line:
        best.lines.append(line)
    return best


def samples_for(cfg: Config, parallelism: str) -> tuple[str | None, str | None]:
    """(why the evaluation samples are off, the plan's line) or (None, None) where they are made as configured.

    Rank 0 generates alone, and a sharded model's every forward gathers weights from all ranks: it would wait
    forever. Generating on all ranks in lockstep would hang at the first token where they disagree. The trainer
    makes no samples where this says so (engine.train.run.build_trainer).
    """
    if parallelism == "fsdp" and cfg.training.sample_max_new_tokens > 0:
        return "the model is sharded", ("samples: off while the model is sharded (fsdp); lorapilot chat RUN_DIR "
                                        "shows what it learned")
    return None, None


def sample_prompts_problem(cfg: Config, samples_off: str | None) -> str | None:
    """What training.sample_prompts gets where the plan makes no samples (samples_for), whichever way the plan came
    to shard the model (training.parallelism fsdp, or auto choosing it for a model one GPU cannot hold): one
    refusal, said alike by the config's validation, `lorapilot estimate` and the trainer's plan phase; None where
    samples are made or none were written."""
    t = cfg.training
    if not (samples_off and t.sample_prompts):
        return None
    how = "training.parallelism fsdp" if t.parallelism == "fsdp" else \
        f"training.parallelism {t.parallelism} shards it on this machine: a whole copy does not fit one GPU"
    return (f"training.sample_prompts: samples are off while {samples_off} ({how}); leave sample_prompts empty "
            "(lorapilot chat RUN_DIR shows what the run learned), or parallelism ddp where a whole copy fits each GPU")


def _lean_stretch(memory: str, budget: int | None, step_plan: StepPlan, lengths: list[int],
                  n_ranks: int) -> int | None:
    """Lean's budget raised to the data's fullest step when that is within LEAN_STRETCH of the cap; else None."""
    from engine.train.speed import LEVERS

    if memory != "lean" or budget is None or not LEVERS.lean_stretch or step_plan.micro_batches_per_step <= n_ranks:
        return None
    fullest = max(sum(lengths[i] for mb in step for i in mb) for epoch in step_plan.epochs for step in epoch)
    return fullest if fullest <= budget * LEAN_STRETCH and n_ranks == 1 else None


def _parallelism_choices(cfg: Config, machine: Machine) -> list[str]:
    if machine.processes <= 1:
        return ["none"]
    if machine.device != "cuda":  # accelerate shards only CUDA processes: CPU ranks would silently run plain DDP
        return ["ddp"]
    mode = cfg.training.parallelism
    if mode != "auto":
        return [mode]
    if cfg.quantization == "int8":   # never sharded (engine.config.INT8_UNSHARDABLE; fsdp itself is refused there)
        return ["ddp"]
    return ["ddp", "fsdp"]   # shard only where a whole copy per GPU does not fit


def _plan_for(cfg: Config, machine: Machine, memory: str, parallelism: str, lengths: list[int] | None,
              n_examples: int | None, val_lengths: list[int] | None, info: ModelInfo | None,
              compile_room: bool = True, resumed: Resumed | None = None) -> RunPlan:
    t = cfg.training
    lines: list[str] = []
    precision = precision_for(t.precision, machine)
    liger, why = liger_for(machine, info.arch.model_type if info is not None else None)
    if not liger:  # where it is, the trainer says which of its kernels it patched in (engine.train.speed)
        lines.append(f"kernels: plain PyTorch ({why})")
    window = info.arch.sliding_window if info is not None else None
    attention, line = attention_for(machine, t.packing, precision,
                                    softcap=info is not None and info.arch.attention_softcap,
                                    window=window if window is not None and window < t.max_seq_length else None)
    lines.append(line)
    n_ranks = machine.processes
    examples_per_step = t.micro_batch_size * t.gradient_accumulation_steps * n_ranks
    rows = cfg.dataset.max_examples
    if rows and n_examples is not None:   # rows, before the validation share is held out
        from engine.estimate.dataset_size import training_examples

        d = cfg.dataset
        n_examples = min(n_examples, training_examples(rows, d.validation_split, bool(d.validation_path)))
    assumed = lengths is None
    # Steps do not depend on how a step is cut into micro-batches: the compile is decided first, since lean's
    # token cap depends on it.
    counted = n_examples if assumed else len(lengths or [])
    per_epoch = None if counted is None else steps_per_epoch(counted, examples_per_step)
    steps = total_steps(cfg, per_epoch)
    arch = info.arch if info is not None else None
    # decided as if compiled: the compile's seconds depend on it; kept only where the layers do compile (below)
    in_graph, in_graph_line = checkpoint_in_graph_layers_for(arch, machine, memory, True, t.gradient_checkpointing)
    compile_layers, compile_line = compile_for(t.compile, machine, memory, steps, room=compile_room,
                                               resumed_at=resumed.step if resumed else 0,
                                               compile_s=compile_seconds(in_graph))
    budget, line = token_budget_for(cfg, machine, memory, compiled=compile_layers)
    lines.append(line)
    optimizer, line = optimizer_for(t.optimizer, machine, memory, sharded=parallelism == "fsdp",
                                    resumed=resumed)
    lines.append(line)
    offload, line = offload_for(machine, memory, t.gradient_checkpointing)
    if line:
        lines.append(line)

    if lengths is None:
        # Without the data: one step of examples that fill max_seq_length (what the fullest step could be).
        lengths_from = "assumed: every example fills max_seq_length (dataset not tokenized; an upper bound)"
        plan_lengths = [t.max_seq_length] * examples_per_step
    else:
        lengths_from = "dataset"
        plan_lengths = list(lengths)
    n_epochs = 1 if assumed or per_epoch is None or steps is None else epochs_to_plan(per_epoch, steps)
    step_plan = plan_steps(plan_lengths, examples_per_step=examples_per_step, num_epochs=n_epochs, seed=t.seed,
                           token_budget=budget, micro_batch_size=t.micro_batch_size, multiple_of=n_ranks)
    stretched = _lean_stretch(memory, budget, step_plan, plan_lengths, n_ranks) if not assumed else None
    if stretched is not None:
        budget = stretched
        step_plan = plan_steps(plan_lengths, examples_per_step=examples_per_step, num_epochs=n_epochs, seed=t.seed,
                               token_budget=budget, micro_batch_size=t.micro_batch_size, multiple_of=n_ranks)
        lines.append(f"batching: lean, the fullest step ({budget} tokens) within {LEAN_STRETCH:g}x the cap: "
                     "one micro-batch per step")
    run_steps = steps if not assumed else 1
    largest, tokens, passes = 0, 0, 0
    for step in _steps_run(step_plan, run_steps or 1):
        for mb in step:
            n = microbatch_tokens(mb, plan_lengths, t.packing)
            largest = max(largest, n)
            tokens += n
            passes += 1
    train_tokens: int | None = tokens
    micro_batches: int | None = passes
    if assumed:  # one full step, times the steps
        train_tokens = tokens * steps if steps is not None else None
        micro_batches = step_plan.micro_batches_per_step * steps if steps is not None else None
    eval_size, eval_tokens = _eval_batch(cfg, largest, val_lengths)
    lines.append(compile_line)
    offload_layers, line = offload_layers_for(machine, memory, compile_layers, t.gradient_checkpointing)
    if line:
        lines.append(line)
    mask_free, line = mask_free_dropout_for(machine, memory, compile_layers, cfg.lora.dropout)
    if line:
        lines.append(line)
    in_graph = in_graph if compile_layers else 0
    if in_graph:
        lines.append(in_graph_line)
    from engine.train.speed import LEVERS
    graph_dequant = compile_layers and cfg.quantization == "nf4" and LEVERS.graph_dequant
    return RunPlan(device=machine.device, processes=n_ranks, precision=precision, memory=memory,
                   parallelism=parallelism, liger=liger, fused_loss=liger, attention=attention, packing=t.packing,
                   token_budget=budget, micro_batches_per_step=step_plan.micro_batches_per_step,
                   examples_per_step=examples_per_step, largest_microbatch_tokens=largest, lengths_from=lengths_from,
                   optimizer=optimizer, offload=offload, offload_layers=offload_layers, mask_free_dropout=mask_free,
                   mask_hash32=mask_free and LEVERS.mask_hash32,
                   compile_layers=compile_layers, graph_dequant=graph_dequant, checkpoint_in_graph_layers=in_graph,
                   eval_batch_size=eval_size, eval_tokens=eval_tokens,
                   steps_per_epoch=per_epoch, max_steps=steps, train_tokens=train_tokens, micro_batches=micro_batches,
                   lines=lines, step_plan=None if assumed else step_plan)
