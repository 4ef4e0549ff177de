"""The trainer process: `python -m engine.train.run RUN_DIR [--resume]`.

Started detached by engine.train.launch; everything it says goes into the run
directory (status.json, metrics.jsonl, train.log via its stdout).
Exit codes: 0 done or stopped, 1 the run failed, 2 bad input.

`train` runs in five phases, each a function below: load (machine, tokenizer, data, the data doctor), plan (the
one plan, engine.plan), build (the model with its adapters, then the Trainer: engine.train.trainer), run, finish
(stopped, or the adapter saved). `main` around them owns the run directory's lock and turns failures into status.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from engine.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, UserError, shell_word
from engine.rundir import (ADAPTER_DIR, CHECKPOINT_STATE_FILE, CHECKPOINTS_DIR, CONFIG_FILE, RunDirMoved,
                           checkpoint_step, write_status)
from engine.train.signals import StopFlag

if TYPE_CHECKING:  # the heavy imports stay inside the functions that need them
    from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainingArguments

    from engine.config import Config
    from engine.data import PreparedData
    from engine.data.prompt import PromptStyle
    from engine.diagnose.live import LiveDiagnostics
    from engine.estimate.model_config import ModelInfo
    from engine.model import Hardware
    from engine.plan import Resumed, RunPlan
    from engine.train.callback import RunDirCallback
    from engine.train.compiled_layers import CompileFallback
    from engine.train.trainer import PlannedTrainer


LOG_PREFIX = "[lorapilot] "


def log_text(msg: str) -> str:
    """A message as train.log's lines: the prefix on the first, each further line (a finding's evidence and fix,
    an error's problems) indented by the prefix's width, so a record's lines stay aligned under it."""
    first, *rest = msg.split("\n")
    return "\n".join([LOG_PREFIX + first] + [" " * len(LOG_PREFIX) + line for line in rest])


def log(msg: str) -> None:
    from engine.train.distributed import is_main
    if is_main():  # every rank shares train.log: one voice is enough
        print(log_text(msg), flush=True)


def status(run_dir: Path, **fields: Any) -> None:
    from engine.train.distributed import is_main
    if is_main():
        write_status(run_dir, **fields)


def oom_hint(cfg: Config, memory: str | None, run_dir: Path, packed: bool | None = None) -> str:
    """What to change after a CUDA OOM, for the path the run took (`memory`: fast, lean, or None if unknown;
    `packed`: whether its plan packed, None if unknown: the config's training.packing)."""
    from engine.plan import LEAN_TOKENS_PER_MICROBATCH

    t = cfg.training
    packed = t.packing if packed is None else packed   # a model whose rows stay padded (engine.plan.packing_for)
    tips = []
    # lean offloads the checkpointed layer inputs: the config refuses it without checkpointing
    with_checkpointing = "" if t.gradient_checkpointing else " with training.gradient_checkpointing: true"
    if memory == "fast" and packed:
        # The fast path packs a whole optimizer step per micro-batch: micro_batch_size does not change its size.
        tips.append(f"training.memory: lean{with_checkpointing} (at most {LEAN_TOKENS_PER_MICROBATCH:,} tokens per "
                    "micro-batch, activations in host memory)")
    elif t.micro_batch_size > 1 and not (memory == "lean" and packed):  # lean packs by tokens too
        tips.append(f"training.micro_batch_size {t.micro_batch_size} -> {max(1, t.micro_batch_size // 2)} "
                    f"(and gradient_accumulation_steps x2 to keep the effective batch)")
    if not t.gradient_checkpointing:
        tips.append("training.gradient_checkpointing: true")
    shorter = max(64, t.max_seq_length // 2)
    if shorter < t.max_seq_length:   # never a change that changes nothing ("64 -> 64") or lengthens the rows
        tips.append(f"training.max_seq_length {t.max_seq_length} -> {shorter}")
    if t.optimizer == "paged_adamw_32bit" and memory != "lean":
        tips.append("training.optimizer: paged_adamw_8bit")
    if memory not in ("fast", "lean"):
        tips.append(f"training.memory: lean{with_checkpointing}")
    if cfg.quantization != "nf4":
        tips.append("quantization: nf4 (4-bit base weights)")
    if not tips:
        return (f"CUDA out of memory with the smallest settings lorapilot suggests: this model needs a GPU with more "
                f"memory (lorapilot estimate {shell_word(run_dir / CONFIG_FILE)} --gpu NAME says which fits)")
    return f"CUDA out of memory: {'; or '.join(tips)}. {_after_oom(tips, run_dir)}"


def _after_oom(tips: list[str], run_dir: Path) -> str:
    """How the run goes on with the hint's changes: a resume from its checkpoint follows only the changes
    engine.train.resume_check lets a resume make (it refuses the others: the checkpoint's batch plan and optimizer
    states depend on them); without a checkpoint a resume starts at step 0 with any of them."""
    from engine.rundir import usable_checkpoint
    from engine.train.resume_check import CHANGEABLE

    config, resume = run_dir / CONFIG_FILE, f"lorapilot train --resume {shell_word(run_dir)}"
    ckpt, _ = usable_checkpoint(run_dir)
    keys = list(dict.fromkeys(tip.replace(":", " ").split()[0] for tip in tips))
    follows = [k for k in keys if k in CHANGEABLE]
    if ckpt is None or len(follows) == len(keys):
        return f"Edit {config} and continue from the last checkpoint: {resume}"
    new_run = f"lorapilot train {shell_word(config)}"
    if not follows:
        return (f"Edit {config} and start a new run with it: {new_run} (a resume from {Path(ckpt).name} refuses "
                "these changes: the checkpoint was trained with the old values)")
    return (f"Edit {config}: {', '.join(follows)} alone resume{'s' if len(follows) == 1 else ''} from "
            f"{Path(ckpt).name} ({resume}); the others change what the checkpoint was trained with, so start a new "
            f"run with them: {new_run}")


def _preflight(cfg: Config, data: PreparedData, hw: Hardware, run_dir: Path) -> None:
    """The data doctor before any GPU time is spent: findings into metrics.jsonl; errors refuse the run."""
    from engine.diagnose.finding import blocking, finding_text
    from engine.diagnose.preflight import preflight
    from engine.errors import DataError
    from engine.rundir import MetricsWriter

    from engine.train.distributed import is_main, world

    # Its step counts are the plan's (engine.plan: examples per step over every process), as the wizard's checklist
    findings = preflight(data.train, cfg, gpu_bf16=hw.bf16 if hw.device == "cuda" else None,
                         dropped=data.report.dropped, too_long_lengths=data.report.too_long_lengths,
                         num_gpus=world()[2])

    if is_main():
        writer = MetricsWriter(run_dir)
        for f in findings:
            writer.write("finding", 0, **{k: v for k, v in f.to_record().items() if k not in ("kind", "step", "time")})
            log(finding_text(f, "pre-flight"))
        writer.close()
    errors = [f for f in findings if f.severity == "error"]
    if blocking(findings):
        raise DataError(f"{cfg.dataset.path}: the data cannot train: " + "; ".join(f.message for f in errors),
                        fix=errors[0].fix)


def _live_diagnostics(run_dir: Path, resume: bool, data: PreparedData) -> LiveDiagnostics:
    """On resume the diagnostics continue from the run's history, so nothing is raised twice.

    The training responses let samples be checked for word-for-word copies of the training data.
    """
    from engine.diagnose.live import LiveDiagnostics
    from engine.rundir import read_metrics

    responses = [e.response_text for e in data.train if e.response_text]
    if resume:
        return LiveDiagnostics.from_history(read_metrics(run_dir), training_responses=responses)
    return LiveDiagnostics(training_responses=responses)


def _resume_point(cfg: Config, run_dir: Path, n_ranks: int, data: PreparedData | None = None,
                  tokens: dict | None = None) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest intact checkpoint, and what the log says about the resume as (event code, text): damaged
    checkpoints skipped, config changes applied (the launcher refused the changes a resume cannot follow; a hub
    dataset at another revision than the checkpoint's is refused here too, by the revision this load read, and
    examples made of other tokens than the checkpoint's, by the `tokens` this load made: Inputs.tokens)."""
    from engine.train.resume_check import config_changes, resumed_checkpoint, token_changes

    ckpt, skipped = resumed_checkpoint(run_dir)
    notes = [("checkpoint_damaged", f"checkpoint skipped, its files are damaged: {why}") for why in skipped]
    if skipped:
        notes.append(("checkpoint_damaged", f"falling back to {Path(ckpt).name}" if ckpt else
                      "no intact checkpoint: starting at step 0"))
    if ckpt:
        notes += [("config_applied", f"config change applied: {c}")
                  for c in config_changes(ckpt, cfg, run_dir / CONFIG_FILE, n_ranks, _revisions_read(data))]
        if tokens is not None:
            notes += [("tokens_unchecked", t) for t in token_changes(ckpt, tokens, cfg, run_dir / CONFIG_FILE)]
    return ckpt, notes


def _revisions_read(data: PreparedData | None) -> dict[str, str] | None:
    """The hub datasets' revisions the trainer's load read (engine.hub.read_from); None where the data was injected
    (benchmarks) or read no hub dataset: run_record and config_changes then load to see."""
    return (data.report.hub_revisions or None) if data is not None else None


def train(cfg: Config, run_dir: Path, *, resume: bool, data: PreparedData | None = None,
          tokenizer: PreTrainedTokenizerBase | None = None, callbacks: Iterable[TrainerCallback] = (),
          stop: StopFlag | None = None) -> int:
    """Runs the whole training, in five phases: load, plan, build, run, finish.

    `data`, `tokenizer` and extra Trainer `callbacks` may be injected (benchmarks: synthetic tokens, a profiler).
    `stop`: the flag main installed first thing."""
    if stop is None:
        stop = StopFlag(run_dir)
        stop.install()
    inputs = load(cfg, run_dir, resume=resume, data=data, tokenizer=tokenizer)
    # The checkpoint a resume continues from, found once: the plan and the Trainer read the same one.
    resume_at = _resume_point(cfg, run_dir, inputs.n_ranks, inputs.data, inputs.tokens) if resume else (None, [])
    run_plan = plan_here(cfg, inputs, run_dir, ckpt=resume_at[0])
    built = build_model(cfg, inputs, run_plan)
    if resume_at[0]:  # the adapter just built is the checkpoint's, or the resume is refused before its load
        from engine.train.resume_check import adapter_changes

        adapter_changes(resume_at[0], built.model, cfg, run_dir / CONFIG_FILE)
    assembled = build_trainer(cfg, run_dir, inputs, run_plan, built, resume=resume, resume_at=resume_at, stop=stop,
                              callbacks=callbacks)
    run_training(assembled, n_ranks=inputs.n_ranks)
    return finish(run_dir, assembled, built, inputs, stop=stop)


@dataclass
class Inputs:
    """What the load phase found: this machine and the prepared data, tokenised as training sees it."""
    hw: Hardware
    dtype_name: str  # the compute dtype: bf16, fp16 or fp32
    n_ranks: int     # training processes (torchrun's world size; 1 without it)
    tokenizer: PreTrainedTokenizerBase
    data: PreparedData
    # What the examples are as tokens (engine.data.fingerprint.tokens_record), recorded in each checkpoint and checked
    # by a resume; load makes it (None: Inputs built around load, by tests and benchmarks).
    tokens: dict | None = None


@dataclass
class BuiltModel:
    """The model with its adapters, and what the speed levers did to it (the trainer's hooks follow them)."""
    model: Any                              # a peft model
    sharding: dict                          # FSDP's TrainingArguments; empty when not sharded
    fused_loss: bool                        # Liger's fused loss patched in (the plan asked, the model took it)
    offload: AbstractContextManager         # activation offloading around each training step (or nothing)
    fallback: CompileFallback | None        # the compiled decoder layers' way back to eager, when compiled


@dataclass
class Assembled:
    """The Trainer ready to train, the callback writing the run directory, and where training starts."""
    trainer: PlannedTrainer
    callback: RunDirCallback
    style: PromptStyle                      # the prompt format the adapter is saved with
    resume: bool
    ckpt: str | None                        # the checkpoint a resume continues from
    resume_notes: list[tuple[str, str]]     # (event code, text) for the log and metrics.jsonl


def load(cfg: Config, run_dir: Path, *, resume: bool, data: PreparedData | None,
         tokenizer: PreTrainedTokenizerBase | None) -> Inputs:
    """Phase 1: the machine, the tokenizer and the data; the data doctor before any GPU time is spent, so that a
    dataset that cannot train fails here, in seconds, not after the model loaded."""
    from engine.data import load_examples
    from engine.data.stops import unknown_stops_note
    from engine.model import check_text_decoder_of, compute_dtype_name, detect_hardware, load_tokenizer
    from engine.train.distributed import world

    check_text_decoder_of(cfg.model)   # a multimodal checkpoint it would load with its tower: refused first
    hw = detect_hardware()
    dtype_name = compute_dtype_name(cfg.training.precision, hw)
    log(f"hardware: {hw.name} ({hw.device}, {hw.count} GPU); compute dtype {dtype_name}")

    status(run_dir, state="loading", phase="data")
    tokenizer = tokenizer or load_tokenizer(cfg.model, cfg.trust_remote_code)
    if stops_note := unknown_stops_note(tokenizer):
        log(f"stops: {stops_note}")
    data = data or load_examples(cfg, tokenizer)
    rep = data.report
    log(f"data: {rep.n_train} train / {rep.n_validation} validation examples, format {rep.format}, "
        f"prompt format: {rep.template}; dropped {rep.dropped or 'none'}; {rep.cuts()}"
        + (f"; {rep.n_system_left_out} rows train without their system prompt (the chat template leaves it out)"
           if rep.n_system_left_out else ""))
    for note in rep.notes:
        log(f"data: {note}")

    if not resume:  # a resumed run passed it already; its findings are in metrics.jsonl
        _preflight(cfg, data, hw, run_dir)
    _, _, n_ranks = world()
    from engine.data.fingerprint import tokens_record

    return Inputs(hw=hw, dtype_name=dtype_name, n_ranks=n_ranks, tokenizer=tokenizer, data=data,
                  tokens=tokens_record(data, tokenizer))


def plan_here(cfg: Config, inputs: Inputs, run_dir: Path, *, ckpt: str | None = None) -> RunPlan:
    """Phase 2: the one plan (engine.plan) for this machine and these examples, written into status.json as run,
    so that `lorapilot estimate` can be checked against it (tests/test_plan_seam.py). ckpt: the checkpoint a resume
    continues from; the plan keeps the optimizer its states belong to, and is otherwise the plan the run started with."""
    resumed = None
    if ckpt:
        from engine.plan import Resumed
        from engine.rundir import checkpoint_step
        from engine.train.resume_check import checkpoint_optimizer

        resumed = Resumed(step=checkpoint_step(ckpt), optimizer=checkpoint_optimizer(ckpt))
    run_plan = _plan(cfg, inputs.data, inputs.hw, inputs.n_ranks, resumed)
    if not ckpt:   # a resumed run keeps the plan it started with, its samples off included
        refuse_what_the_plan_turns_off(cfg, run_plan, run_dir / CONFIG_FILE)
    if ckpt and run_plan.max_steps and cfg.training.max_steps <= 0:   # a max_steps the launcher refused already
        from engine.train.resume_check import max_steps_behind

        epochs = cfg.training.num_epochs
        if behind := max_steps_behind(run_plan.max_steps, ckpt, run_dir / CONFIG_FILE,
                                      f"training.num_epochs {epochs:g} is {run_plan.max_steps} steps"):
            raise behind
    # With the examples' real lengths the plan is complete: its micro-batches and its step counts.
    assert run_plan.step_plan is not None and run_plan.steps_per_epoch is not None and run_plan.max_steps is not None
    micro, ranks = run_plan.step_plan.micro_batches_per_step, inputs.n_ranks
    log(f"plan: {run_plan.examples_per_step} examples per optimizer step in "
        f"{micro} micro-batch{'es' if micro != 1 else ''} over {ranks} process{'es' if ranks != 1 else ''}; "
        f"{run_plan.steps_per_epoch} step{'s' if run_plan.steps_per_epoch != 1 else ''} per epoch; "
        f"{run_plan.max_steps} steps; "
        f"largest micro-batch {run_plan.largest_microbatch_tokens:,} tokens")
    # What the trainer does besides steps, for the ETA (engine.eta): the estimate's schedule of this plan.
    from engine.estimate.timing import plan_schedule

    sched = plan_schedule(cfg, run_plan, len(inputs.data.validation), _model_info(cfg))
    status(run_dir, state="loading", phase="model", max_steps=run_plan.max_steps, memory=run_plan.memory,
           parallelism=run_plan.parallelism, plan=run_plan.to_dict(), schedule=sched.status_fields(),
           estimate=_estimate_of(cfg, inputs, run_plan, resumed=bool(ckpt)))
    return run_plan


def _model_info(cfg: Config) -> ModelInfo | None:
    """The model's shapes from its config.json (engine.estimate), None where it cannot be read."""
    from engine.estimate.model_config import read_model_config

    try:
        return read_model_config(cfg.model)
    except UserError:
        return None


def _estimate_of(cfg: Config, inputs: Inputs, run_plan: RunPlan, *, resumed: bool = False) -> dict | None:
    """The estimate of this plan, as `lorapilot estimate` shows it for this machine and these examples: its time, which
    the monitor shows as the estimate's before a step time is measured (engine.eta.starting_eta), and on a GPU its memory peak, which the
    monitor sets beside the trainer's measured one (both torch.cuda.max_memory_allocated). None without a figure (no
    config.json to count the model from, no GPU named); no time without a speed figure for this GPU, nor for a resume
    (it starts from its checkpoint's step)."""
    from engine.estimate import detect_gpu
    from engine.estimate.estimator import compute

    info = _model_info(cfg)
    if info is None:
        return None
    gpu = detect_gpu() if run_plan.device == "cuda" else None
    if run_plan.device == "cuda" and gpu is None:   # no NVML to name the card: no rate to time it at
        return None
    lengths = [len(e) for e in inputs.data.train]
    est = compute(cfg, info, gpu, plan=run_plan,
                  n_examples=len(lengths), lengths=lengths, val_lengths=[len(e) for e in inputs.data.validation],
                  n_val=len(inputs.data.validation), num_gpus=run_plan.processes)
    out: dict = {}
    if est.time_s is not None and not resumed:
        out = {"time_s": round(est.time_s, 3), "startup_s": round(est.startup_s, 3), "compile_s": est.compile_s,
               "basis": est.time_basis}
    if run_plan.device == "cuda":
        out |= {"peak_allocated_gib": round(est.peak_allocated_gib, 3), "device_total_gib": round(est.device_total_gib, 3)}
    return out or None


def build_model(cfg: Config, inputs: Inputs, run_plan: RunPlan) -> BuiltModel:
    """Phase 3a: the base model as the plan says (quantised, its attention, sharded or not), the speed levers the
    plan chose, then the LoRA adapters."""
    from transformers import set_seed

    from engine.model import add_lora, load_base_model, quiet_progress_bars
    from engine.train.distributed import fsdp_arguments, unshard_head_before_loss
    from engine.train.speed import LEVERS, activation_offload, apply_liger, keep_unquantised_16bit

    # train.log is what `tail -f` shows: transformers' "Loading weights 0%..100%" bar is a line of carriage returns
    # there (a hub download's bar, the only sign of progress on gigabytes, stays)
    quiet_progress_bars()
    t = cfg.training
    # Before the adapters exist: their random init must be the seed's, on every rank and every run.
    set_seed(t.seed)
    model, _ = load_base_model(cfg.model, cfg.quantization, t.precision, trust_remote_code=cfg.trust_remote_code,
                               attn_implementation=run_plan.attention,
                               shardable=run_plan.parallelism == "fsdp")
    sharding = fsdp_arguments(model) if run_plan.parallelism == "fsdp" else {}
    # Sharded, Liger's fused loss needs the output head gathered first (a hook on the final norm).
    liger = apply_liger(model, run_plan.liger, log, fused_loss=not sharding or unshard_head_before_loss(model),
                        compiled=run_plan.compile_layers)
    model = add_lora(model, cfg, gradient_checkpointing=t.gradient_checkpointing)
    offload = activation_offload(model, run_plan.offload, layers=run_plan.offload_layers)
    if run_plan.mask_free_dropout:   # the plan's rule (engine.plan.mask_free_dropout_for); its line is in train.log
        from engine.train.mask_free_dropout import install

        hashed = " (masks hashed in int32 words)" if run_plan.mask_hash32 else ""
        log(f"dropout: {install(model, hash32=run_plan.mask_hash32)} LoRA adapters drop their inputs without saved "
            f"masks{hashed}")
    if inputs.dtype_name == "bf16" and cfg.quantization != "none":
        keep_unquantised_16bit(model, log)
    fallback = None
    if run_plan.compile_layers:  # the plan's rule (engine.plan.compile_for): a GPU with Triton, or training.compile
        from engine.train.compiled_layers import CompileFallback, compile_decoder_layers, restore_liger_in_layers
        compile_decoder_layers(model, log, mode=LEVERS.compile_mode, trim_guards=LEVERS.trim_guards,
                               cpp_wrapper=LEVERS.cpp_wrapper, graph_dequant=run_plan.graph_dequant,
                               checkpoint_in_graph=run_plan.checkpoint_in_graph_layers)
        # A compile failure trains on eagerly; build_trainer makes it an event once the callback exists.
        fallback = CompileFallback(model, log, restore=restore_liger_in_layers if liger else None)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"model: {cfg.model}, quantization {cfg.quantization}, {trainable:,} trainable LoRA parameters")
    return BuiltModel(model=model, sharding=sharding, fused_loss=liger and run_plan.fused_loss, offload=offload,
                      fallback=fallback)


def build_trainer(cfg: Config, run_dir: Path, inputs: Inputs, run_plan: RunPlan, built: BuiltModel, *,
                  resume: bool, stop: StopFlag, callbacks: Iterable[TrainerCallback],
                  resume_at: tuple[str | None, list[tuple[str, str]]] = (None, [])) -> Assembled:
    """Phase 3b: the Trainer over the plan's micro-batches, with the callback that writes the run directory
    (records, samples, diagnostics, stop requests) continuing a resumed run's history. resume_at: _resume_point's
    checkpoint and notes."""
    from engine.data.packing import Collator, PlannedMicroBatches
    from engine.data.prompt import PromptStyle
    from engine.samples import choose_prompts
    from engine.train.callback import RunDirCallback
    from engine.train.distributed import is_main
    from engine.train.resume_check import run_record
    from engine.train.speed import LEVERS
    from engine.train.trainer import PlannedTrainer, packed_attention

    t, data, tokenizer, n_ranks = cfg.training, inputs.data, inputs.tokenizer, inputs.n_ranks
    assert run_plan.step_plan is not None and run_plan.steps_per_epoch is not None  # plan_here checked them
    packing = run_plan.packing   # training.packing, unless the model cannot train packed rows (engine.plan.packing_for)
    collator = Collator(pad_id=tokenizer.pad_token_id, pack=packing,
                        pad_multiple=LEVERS.pad_multiple if packing else 0)
    if collator.pad_multiple:
        log(f"batching: packed rows padded to a multiple of {collator.pad_multiple} tokens (benchmark lever)")
    attention = packed_attention(built.model, packing, t.max_seq_length)
    if attention["own_block_mask"]:
        log("attention: block masks built from the examples' boundaries (no compiled create_block_mask)")
    elif LEVERS.own_block_mask and packing and built.model.config._attn_implementation == "flex_attention":
        log("attention: block masks built by transformers, one per layer type (sliding-window layers whose window "
            "an example may outgrow)")
    args = _training_arguments(cfg, run_dir, inputs, run_plan, built)

    style = PromptStyle(format=data.report.format, system=data.report.system_prompt)
    # the plan said why not (engine.plan.samples_for), in train.log, the review and the estimate
    prompts = [] if run_plan.samples_off else choose_prompts(cfg, tokenizer, data.validation, style)
    ckpt, resume_notes = resume_at
    callback = RunDirCallback(run_dir, collator=collator, steps_per_epoch=run_plan.steps_per_epoch, stop_flag=stop,
                              stop_on=t.stop_on, diagnostics=_live_diagnostics(run_dir, resume, data),
                              is_main=is_main(), world_size=n_ranks,
                              tokenizer=tokenizer, sample_prompts=prompts,
                              sample_max_new_tokens=t.sample_max_new_tokens,
                              tokens_offset=_tokens_at(run_dir, ckpt),
                              # fast decode keeps its KV cache and graphs allocated: not where memory is tight
                              fast_decode_ok=(inputs.hw.device == "cuda" and run_plan.memory == "fast"
                                              and n_ranks == 1),
                              run_record=run_record(cfg, run_plan.optimizer, n_ranks, _revisions_read(data),
                                                    inputs.tokens),
                              learning_rate=t.learning_rate if ckpt else None)
    train_ds = PlannedMicroBatches(data.train, run_plan.step_plan)  # one item is one planned micro-batch
    trainer = PlannedTrainer(model=built.model, args=args, train_dataset=train_ds,
                             eval_dataset=data.validation if data.validation else None,
                             collator=collator, callbacks=[callback, *callbacks],
                             fallback=built.fallback, offload=built.offload, sharded=bool(built.sharding),
                             fused_loss=built.fused_loss, **attention,
                             log_line=log, before_save=callback.stop_flag.check_place)
    if built.fallback is not None:
        built.fallback.on_fallback = lambda msg: callback.event("compile_failed", trainer.state.global_step, msg)
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)  # the callback writes each record to train.log in lorapilot's words
    return Assembled(trainer=trainer, callback=callback, style=style, resume=resume, ckpt=ckpt,
                     resume_notes=resume_notes)


def _training_arguments(cfg: Config, run_dir: Path, inputs: Inputs, run_plan: RunPlan,
                        built: BuiltModel) -> TrainingArguments:
    """The plan in transformers' words: one dataset item is one planned micro-batch."""
    from transformers import TrainingArguments

    from engine.plan import scheduler_for

    t, hw, n_ranks, dtype_name = cfg.training, inputs.hw, inputs.n_ranks, inputs.dtype_name
    assert run_plan.step_plan is not None and run_plan.max_steps is not None  # plan_here checked them
    has_eval = bool(inputs.data.validation)
    args = TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=1,  # one item = one planned micro-batch
        gradient_accumulation_steps=run_plan.step_plan.micro_batches_per_step // n_ranks,  # each rank every n-th
        per_device_eval_batch_size=run_plan.eval_batch_size,  # never more tokens than training's micro-batches
        max_steps=run_plan.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=scheduler_for(t.lr_scheduler, t.warmup_ratio),
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        optim=run_plan.optimizer,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN must reach the diagnostics, not be averaged away
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        bf16=dtype_name == "bf16",
        fp16=dtype_name == "fp16",
        use_cpu=hw.device == "cpu",
        report_to=_report_to(t.report_to),
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        # checkpointing: left off here (the default), since add_lora enabled it on the model
        ddp_backend="gloo" if hw.device == "cpu" and n_ranks > 1 else None,
        ddp_find_unused_parameters=False,
        **built.sharding,
    )
    if built.sharding:
        from engine.model import torch_dtype
        from engine.train.distributed import use_fsdp_mixed_precision
        use_fsdp_mixed_precision(args, torch_dtype(dtype_name))
    return args


def run_training(assembled: Assembled, *, n_ranks: int) -> None:
    """Phase 4: says where a resume continues from (train.log and metrics.jsonl), then trains."""
    import torch

    callback, ckpt = assembled.callback, assembled.ckpt
    if assembled.resume:
        from engine.rundir import RESUMED, read_status

        for code, note in assembled.resume_notes:
            log(note)
            callback.event(code, checkpoint_step(ckpt) if ckpt else 0, note)
        log(f"resuming from {ckpt}" if ckpt else "no checkpoint to resume from: starting at step 0")
        # Its code tells readers that records after this step written before it are superseded (rundir).
        # With this life's launch: status.json keeps only the latest, and the elapsed time sums every life's span.
        callback.event(RESUMED, checkpoint_step(ckpt) if ckpt else 0,
                       f"resumed from {Path(ckpt).name}" if ckpt else "restarted (no checkpoint)",
                       launched=(read_status(callback.run_dir) or {}).get("launched"))
    if n_ranks > 1:
        # Under DDP, dynamo hands flex attention's compile to its DDP graph splitter, which recompiled the kernels
        # on every rank for minutes before the first step finished (H200 x2). Flex attention holds no parameters,
        # so there is nothing for the splitter to overlap.
        torch._dynamo.config.optimize_ddp = False
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if ckpt and checkpoint_step(ckpt) >= assembled.trainer.args.max_steps:
        # The run's last step is checkpointed but its adapter was not saved whole (killed while saving it: the
        # launcher resumes a run at its last step only then). transformers would train one step past max_steps:
        # the checkpoint's weights and state are taken as they are, and finish saves the adapter from them.
        from transformers import TrainerState

        log(f"{Path(ckpt).name} is the run's last step: its adapter is saved from it, without training")
        assembled.trainer._load_from_checkpoint(ckpt)
        assembled.trainer.state = TrainerState.load_from_json(str(Path(ckpt) / CHECKPOINT_STATE_FILE))
        return
    assembled.trainer.train(resume_from_checkpoint=ckpt)


def finish(run_dir: Path, assembled: Assembled, built: BuiltModel, inputs: Inputs, *, stop: StopFlag) -> int:
    """Phase 5: a stopped run ends stopped (its checkpoints kept for a resume); a finished one saves its adapter
    with what inference needs (the chat template training used, the end-of-turn tokens, a model card)."""
    import torch

    from engine.train.distributed import is_main

    stop.check_place()   # the adapter is saved by path: not into a folder made again where the run was
    trainer, callback = assembled.trainer, assembled.callback
    step = trainer.state.global_step
    # A stop request that lands on the final step finds the training complete: the run ends done, with its
    # adapter. Left "stopped", a resume trained one step past max_steps (transformers' resume loop checks the
    # limit only after a step). A diagnostics stop still counts there: its last weights are suspect.
    if callback.stop_reason or (stop.is_set() and step < trainer.args.max_steps):
        reason = callback.stop_reason or "stop requested"
        log(f"stopped at step {step}: {reason}")
        callback.event("stopped", step, f"stopped: {reason}")
        status(run_dir, state="stopped", step=step, stop_reason=reason)
        return EXIT_OK
    status(run_dir, state="saving", step=step)
    adapter_dir = run_dir / ADAPTER_DIR
    if built.sharding:  # every rank takes part in gathering the sharded adapter; rank 0 writes it
        trainer.save_model(str(adapter_dir))
    if is_main():
        if not built.sharding:
            built.model.save_pretrained(str(adapter_dir))
        from engine.data.prompt import save_for_inference
        # with the chat template training used, and the base model's generation config stopping where training did
        save_for_inference(inputs.tokenizer, assembled.style, adapter_dir, getattr(built.model, "generation_config", None))
    callback.event("adapter_saved", step, "adapter saved", path=str(adapter_dir))
    if is_main():
        _write_model_card(run_dir)
    if inputs.n_ranks > 1 and torch.distributed.is_initialized():
        # NCCL collectives are queued, not awaited: a rank that had queued its part of gathering the adapter could
        # exit while rank 0 was still copying its share to the CPU, and rank 0 then waited forever in the save
        # (Qwen2.5-14B on 2 x H200; benchmarks/results/multi_gpu-h200x2-2026-11-23b.md). Every rank leaves together.
        torch.distributed.barrier()
    status(run_dir, state="done", step=step, **_peak_memory())
    log(f"done: adapter in {adapter_dir}")
    return EXIT_OK


def _tokens_at(run_dir: Path, ckpt: str | None) -> int:
    """tokens_seen at the checkpoint's step (0 without one): where a resumed run's count continues. Where the last
    train record at or before that step holds no count (garbled, edited by hand, a run older than the count; the
    readers' rule, engine.rundir.finite_number), the count continues from the last one that does, else from 0, and
    train.log says so: the count then leaves out the tokens trained between."""
    if not ckpt:
        return 0
    from engine.rundir import checkpoint_step, finite_number, read_metrics

    step = checkpoint_step(ckpt)
    train = [r for r in read_metrics(run_dir) if r["kind"] == "train" and r["step"] <= step]
    counts = [(r["step"], int(n)) for r in train if (n := finite_number(r.get("tokens_seen"))) is not None and n >= 0]
    if train and counts and counts[-1][0] == train[-1]["step"]:
        return counts[-1][1]
    at = train[-1]["step"] if train else step
    since, seen = counts[-1] if counts else (None, 0)
    log(f"tokens_seen: metrics.jsonl holds no readable count at step {at}, where this resume continues; the count "
        + (f"continues from {seen:,} (step {since}) and leaves out the tokens of the steps after it" if since is not None
           else "starts again from 0 and leaves out the tokens of the steps before"))
    return seen


def refuse_what_the_plan_turns_off(cfg: Config, run_plan: RunPlan, config_path: Path) -> None:
    """The config's refusal of a setting the plan makes do nothing here (sample_prompts while parallelism auto shards
    the model), as the validator refuses it where the config alone says so (parallelism fsdp)."""
    from engine.errors import ConfigError
    from engine.plan import sample_prompts_problem

    if problem := sample_prompts_problem(cfg, run_plan.samples_off):
        raise ConfigError(f"{config_path}: 1 problem in the config", problems=[problem])


def _plan(cfg: Config, data: PreparedData, hw: Hardware, n_ranks: int,
          resumed: Resumed | None = None) -> RunPlan:
    """The run's plan (engine.plan): the same function `lorapilot estimate` and the wizard ask, on this machine,
    with the training examples' real lengths. auto settings ask the estimate of the model's config.json."""
    from engine.plan import Machine, plan_run

    info, model_config = None, None
    try:
        from engine.estimate.model_config import find_config_json
        found = find_config_json(cfg.model)
        model_config = found.config   # what packing needs even where the shapes cannot be read (Mamba)
        info = found.info()
    except UserError as e:  # no config to estimate from: the fast path, and the OOM hint if it does not fit
        log(f"plan: no estimate ({e})")
    from engine.estimate.multimodal import decoder_alone_note

    if info is not None and (note := decoder_alone_note(info.config)):
        log(f"model: {note}")   # what the estimate says of it too
    plan = plan_run(cfg, Machine.for_hardware(hw, n_ranks), lengths=[len(e) for e in data.train],
                    val_lengths=[len(e) for e in data.validation] or None, info=info,
                    resumed=resumed, model_config=model_config)
    for line in plan.lines:
        log(line)
    return plan


def _peak_memory() -> dict:
    """The trainer's own allocator peak over the whole run (training and evaluation), for status.json."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)}


def _report_to(requested: list[str]) -> list[str] | str:
    """training.report_to in transformers' words: `all` as it is (transformers takes every integration installed),
    each named one where transformers finds it installed (its names are not the modules': azure_ml is azureml), the
    others skipped with a line in train.log."""
    from transformers.integrations import integration_utils

    if "all" in requested:
        return "all"
    installed = set(integration_utils.get_available_reporting_integrations())
    if integration_utils.is_flytekit_available():   # an integration transformers' "all" leaves out
        installed.add("flyte")
    ok = [r for r in requested if r in installed]
    for r in sorted(set(requested) - set(ok) - {"none"}):
        log(f"report_to: {r} is not installed; skipped")
    return ok or "none"


def _write_model_card(run_dir: Path) -> None:
    """A real model card in adapter/ instead of peft's empty template. The adapter is saved by now: a card that
    cannot be written is logged, never a reason to fail the run."""
    from engine.export.card import write_run_card

    try:
        write_run_card(run_dir)
    except Exception as e:  # noqa: BLE001 - see the docstring
        log(f"model card not written: {type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.run")
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--trust-remote-code", action="store_true",
                    help="honour trust_remote_code from the run's config.yaml (the user said so)")
    a = ap.parse_args(argv)
    run_dir = Path(a.run_dir).resolve()
    # First thing: a stop from now on ends the run gracefully (the launcher blocked these signals until now).
    stop = StopFlag(run_dir)
    stop.install()
    from engine.rundir import RunPlace
    try:
        place = stop.place = RunPlace(run_dir)
    except OSError as e:  # gone before the trainer started: nowhere to record anything but here (train.log)
        print(log_text(f"error: the run directory {run_dir} cannot be opened ({e.strerror}): nothing trained"),
              flush=True)
        return EXIT_RUN_FAILED
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # train.log line by line, whatever the environment says

    from engine.config import load_config
    from engine.rundir import (
        SPACE_RESERVE_FILE,
        RunLock,
        check_remote_code,
        disk_full_path,
        keep_space_reserve,
        process_start,
        read_status,
        release_space_reserve,
    )
    from engine.train.distributed import world

    _, _, n_ranks = world()
    lock = None
    if n_ranks == 1:  # with several ranks torchrun's agent holds the lock the launcher handed it
        try:
            lock = RunLock.inherited(run_dir) or RunLock.acquire(run_dir)
        except UserError as e:  # another trainer owns this directory: leave its status alone
            print(log_text(f"error: {e}"), flush=True)
            return EXIT_BAD_INPUT
        except OSError:
            if (moved := place.moved()) is None:
                raise
            return _moved(moved)   # in its first second: said where it went, as later
    # With several ranks the launcher's torchrun agent keeps `pid`: it lives exactly as long as the run.
    me = {"pid": os.getpid(), "pid_start": process_start(os.getpid())} if n_ranks == 1 else \
        {"rank0_pid": os.getpid()}
    # launched: what the run's elapsed time counts from (engine.run_clock); a resume keeps the first life's as
    # first_launched
    cfg = None
    try:
        # Inside: a move in the trainer's first second is said like one later (no traceback, no status.json made
        # in a folder made again at the old path).
        stop.check_place()
        before = (read_status(run_dir) or {}) if a.resume else {}
        first = before.get("first_launched", before.get("launched"))
        status(run_dir, state="starting", error=None, hint=None, user_error=None, world_size=n_ranks, launched=time.time(),
               **({"first_launched": first} if first is not None else {}), **me)
        # Inside: a disk too full for the reserve itself fails the run with its reason, the part written freed.
        keep_space_reserve(run_dir)
        # Read as the launcher read it for its checks (load_config: a relative path against config.yaml's folder first),
        # not against this process's working folder: the checks and the training read the same files.
        cfg = load_config(run_dir / CONFIG_FILE)
        cfg.trust_remote_code = check_remote_code(cfg, run_dir, a.trust_remote_code,
                                                  f"train --resume {shell_word(run_dir)}")
        return train(cfg, run_dir, resume=a.resume, stop=stop)
    except UserError as e:
        if moved := place.moved():
            return _moved(moved)
        log(f"error: {e}")
        # the fix apart, once: `train` and the monitor show the error, then the hint; user_error: the end report's
        # exit 2 where the code is not this process's (torchrun's 1 on several GPUs)
        status(run_dir, state="failed", error=e.without_fix(), hint=e.fix, user_error=True)
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - any failure of the run: record why in status.json, traceback in train.log
        moved = e if isinstance(e, RunDirMoved) else place.moved()
        if moved is not None:   # its writes failed there, or would have made the folder again
            return _moved(moved)
        full = disk_full_path(e, run_dir / CHECKPOINTS_DIR)
        if full:
            release_space_reserve(run_dir)  # room for the status and the log lines below
            if Path(full).name == SPACE_RESERVE_FILE:   # lorapilot's own file: the user's is the run's folder
                full = str(run_dir)
        traceback.print_exc()
        text = f"no space left on device: {full}" if full else f"{type(e).__name__}: {e}".splitlines()[0]
        from engine.rundir import read_status
        st = read_status(run_dir) or {}
        packed = (st.get("plan") or {}).get("packing")
        hint = (oom_hint(cfg, st.get("memory"), run_dir, packed if isinstance(packed, bool) else None)
                if cfg is not None and "out of memory" in str(e).lower() else None)
        if full:
            hint = disk_full_hint(run_dir, full)
        status(run_dir, state="failed", error=text, hint=hint)
        log(f"failed: {text}" + (f"\nhint: {hint}" if hint else ""))
        print(f"lorapilot: {text}", file=sys.stderr, flush=True)
        return EXIT_RUN_FAILED
    finally:
        if place.moved() is None:
            release_space_reserve(run_dir)
        elif (now := place.where()) is not None:  # the run's own where it went: never one at its old path
            release_space_reserve(now)
        if lock is not None:
            lock.release()


def disk_full_hint(run_dir: Path, full: str) -> str:
    """What to do after the disk filled (`full`: the path a write failed on). With a checkpoint whose files read whole,
    fewer kept (training.save_total_limit) and a resume from it; with none (the first save failed, or the disk was full
    from the start) nothing continues: its resume trains again from step 0."""
    from engine.rundir import complete_checkpoints, usable_checkpoint

    resume = f"lorapilot train --resume {shell_word(run_dir)}"
    # The checkpoint the resume would take, by its rule. A state file that is no regular file is read by nothing
    # here (a test's /dev/full answers reads without end): such a save failed, and no checkpoint is offered.
    regular = all((c / CHECKPOINT_STATE_FILE).is_file() for c in complete_checkpoints(run_dir))
    if regular and usable_checkpoint(run_dir)[0] is not None:
        return (f"free space on {full}'s disk (or lower training.save_total_limit), then continue from the last "
                f"checkpoint: {resume}")
    return f"free space on {full}'s disk, then train it again from step 0 (no checkpoint was saved): {resume}"


def _moved(moved: RunDirMoved) -> int:
    """The trainer stops where its run directory was moved or deleted while it trained: said in the moved folder's
    status.json (and train.log, an open file that moved with it), with how to go on from its last checkpoint."""
    log(f"failed: {moved}")
    print(f"lorapilot: {moved}", file=sys.stderr, flush=True)
    if moved.now is not None:   # a sweep's trial moved with its sweep goes on with the sweep's resume
        from engine.sweep.sweepdir import resume_command

        status(moved.now, state="failed", error=str(moved),
               hint=f"continue from its last checkpoint where it is now: {resume_command(moved.now)}")
    return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
