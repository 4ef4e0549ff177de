"""`lorapilot estimate CONFIG`: the estimate as a table, or as one JSON object."""

from __future__ import annotations

import argparse
import sys

from typing import TYPE_CHECKING

from engine.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError, DataError, UserError
from engine.plan import RunPlan, attention_label, sample_prompts_problem
from engine.settings import user_path

if TYPE_CHECKING:   # the CLI imports the estimate lazily (start-up time)
    from engine.config import Config
    from engine.estimate.estimator import Estimate
    from engine.estimate.gpus import GpuSpec
    from engine.estimate.model_config import ModelInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=user_path,
                        help="a YAML config (model may be a hub id, a preset or a directory with config.json)")
    parser.add_argument("--gpu", default=None,
                        help="GPU preset to fit against (t4, a10, rtx4090, a100-80, h100-80, ...); "
                             "default: the GPU present, if any")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--examples", type=int, default=None,
                        help="number of training examples (default: counted from a local dataset file)")
    parser.add_argument("--price-per-hour", type=float, default=None, help="GPU price per hour, for the cost")
    parser.epilog = model_presets_line()


def model_presets_line() -> str:
    """The model presets, by the names `model:` takes: a model's refusal sends the user to this list."""
    from engine.demo.model import DEMO_MODEL_ID
    from engine.estimate.presets import list_model_presets

    names = [DEMO_MODEL_ID, *(entry["id"] for entry in list_model_presets())]
    return ("model presets (a hub id, or its name without the owner; their shapes come with lorapilot, so the "
            "estimate needs no download): " + ", ".join(names))


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.estimate import detect_gpu, get_gpu, read_model_config
    from engine.estimate.dataset_size import token_lengths, unreadable
    from engine.estimate.params import check_expert_dropout

    _check_flags(args)
    cfg = load_config(args.config)
    info = read_model_config(cfg.model)
    # A config the trainer would refuse once the model loaded (minutes in) is refused here, as `train` refuses it
    check_expert_dropout(info.arch, cfg.lora)
    gpu = get_gpu(args.gpu) if args.gpu else detect_gpu()
    lengths = val_lengths = None
    why = data_error = None
    if args.examples is None:
        # The examples as the trainer will tokenise and pack them: its plan's micro-batches, not max_seq_length.
        lengths, val_lengths, why = token_lengths(cfg)
        if not lengths:   # not tokenized here: counted only if the reader reads it (the wizard's rule)
            data_error = unreadable(cfg)
    est, n_examples = estimate_for(cfg, info, gpu, lengths=lengths or None, val_lengths=val_lengths or None,
                                   n_examples=args.examples, price_per_hour=args.price_per_hour,
                                   data_error=data_error)
    if args.examples is None:  # after the config's own errors; with --examples the data may be
        # elsewhere (on the pod): the estimate needs no rows
        from engine.data.formats import check_dataset_found

        try:
            check_dataset_found(cfg.dataset)   # a typo in the path estimated 'steps unknown: not a local file'
        except DataError as e:
            e.fix = f"{e.fix + '; or' if e.fix else ''} pass --examples N to estimate without the data"
            raise
    # what the trainer's plan phase refuses (engine.train.run.refuse_what_the_plan_turns_off), refused here
    if est.plan is not None and (problem := sample_prompts_problem(cfg, est.plan.samples_off)):
        raise ConfigError(f"{args.config}: 1 problem in the config", problems=[problem])
    if why and not data_error:   # the data's own error is said once, by the steps line
        est.notes.append(f"dataset not tokenized here ({why})")
    if args.json:
        out = est.to_dict()
        out["model"] = info.to_dict()
        out["n_examples"] = n_examples
        if data_error:
            out["data_error"] = data_error   # why total_steps is null
        from engine.wrap import json_for_scripts

        print(json_for_scripts(out, indent=2))
    else:
        from engine.wrap import fit

        print(fit(render(est, info, n_examples, bool(lengths), cfg.training.memory, data_error)))
    return EXIT_OK


def _check_flags(args: argparse.Namespace) -> None:
    """--examples as dataset.max_examples is checked; --price-per-hour a finite amount, 0 or more."""
    import math

    from engine.config import check_override
    from engine.errors import UserError

    if args.examples is not None:
        check_override("dataset.max_examples", args.examples, flag="--examples")
    if args.price_per_hour is not None and not (math.isfinite(args.price_per_hour) and args.price_per_hour >= 0):
        raise UserError(f"--price-per-hour {args.price_per_hour:g}: expected an amount of 0 or more")


def estimate_for(cfg: Config, info: ModelInfo, gpu: GpuSpec | None, *, lengths: list[int] | None = None,
                 val_lengths: list[int] | None = None, n_examples: int | None = None,
                 price_per_hour: float | None = None, num_gpus: int | None = None,
                 n_val: int | None = None, data_error: str | None = None) -> tuple[Estimate, int | None]:
    """The estimate every face shows for a config (this command, the wizard's review, the sweep's trial time): the
    run as engine.plan plans it on `gpu` (None: this machine's CPU), from the examples' token lengths where known,
    else from the counted examples with every one assumed to fill max_seq_length; its steps, and its time at the
    speed table's rate, with the evaluations and saves it will run. num_gpus: processes (default: planned_processes;
    the sweep's trials run one per GPU). n_val: validation examples (default: val_lengths' where lengths are given,
    else counted from a local dataset). data_error: why the dataset cannot be read (dataset_size.unreadable, the
    wizard's row count): its examples are not counted, so the steps and the time are unknown unless given
    (max_steps, n_examples). Returns (estimate, training examples)."""
    from engine.estimate import estimate
    from engine.estimate.dataset_size import dataset_sizes

    if lengths is None and (n_examples is None or n_val is None) and data_error is None:
        n_train, counted_val = dataset_sizes(cfg)
        n_examples = n_train if n_examples is None else n_examples
        n_val = counted_val if n_val is None else n_val
    elif n_val is None:   # the lengths came with the validation examples' (none: no validation examples)
        n_val = len(val_lengths or [])
    est = estimate(cfg, info, gpu, n_examples=n_examples,
                   num_gpus=num_gpus if num_gpus is not None else planned_processes(cfg, gpu),
                   lengths=lengths, val_lengths=val_lengths, n_val=n_val, price_per_hour=price_per_hour)
    est.download_bytes = download_bytes(info)
    if num_gpus is None and cfg.training.num_gpus is None and gpu is not None and not gpu.detected:
        # planned_processes' one card: the pod the config goes to may have more, and the run takes them all
        est.notes.append(f"training.num_gpus is empty (every visible GPU): planned on one {gpu.name}; on a machine "
                         "with more the run trains on all of them, more examples per step and fewer steps; set "
                         "num_gpus to the count it will have")
    return est, (len(lengths) if lengths else n_examples)


def download_bytes(info: ModelInfo) -> int:
    """The base checkpoint a first run downloads before it starts (its size by the start-up's rule,
    engine.estimate.timing.checkpoint_bytes), 0 for a local directory or a model whose weights are in the local
    Hugging Face cache (looked up on disk, never on the network)."""
    from engine.estimate.hub_cache import needs_download
    from engine.estimate.timing import checkpoint_bytes

    return checkpoint_bytes(info.param_count, info.dtype) if needs_download(info.source, info.name) else 0


def planned_processes(cfg: Config, gpu: GpuSpec | None) -> int:
    """Processes the run will start: on the card present, what a launch here would use (training.num_gpus; empty:
    every visible GPU); on a named card, training.num_gpus or one; on the CPU, one."""
    if gpu is None:
        return 1
    if gpu.detected:
        from engine.train.distributed import planned_processes as on_this_machine

        return on_this_machine(cfg.training.num_gpus)
    return cfg.training.num_gpus or 1


def _duration(seconds: float) -> str:
    from engine.estimate.timing import duration_text
    return duration_text(seconds)


def plan_words(p: RunPlan) -> str:
    """What the trainer will run, in words: micro-batches, attention, loss, the optimizer the plan's rules chose,
    offloading, compiled layers, evaluation batch, samples turned off. `lorapilot estimate` and the wizard's review
    both say it so."""
    micro, per_eval = p.micro_batches_per_step, p.eval_batch_size
    return (f"{micro} micro-batch{'es' if micro != 1 else ''} per step"
            + (f" packed up to {p.token_budget:,} tokens" if p.token_budget else " padded")
            + (f" (not packed: {p.packing_off})" if p.packing_off else "")
            + f", {attention_label(p.attention)}, {'Liger fused loss' if p.fused_loss else 'plain loss'}, {p.optimizer}"
            + (", activations offloaded" if p.offload else "")
            + (", decoder layers compiled" if p.compile_layers else "")
            + f", eval {per_eval} example{'s' if per_eval != 1 else ''} a batch"
            + (f", samples off ({p.samples_off})" if p.samples_off else ""))


def render(est: Estimate, info: ModelInfo, n_examples: int | None, counted: bool, memory_setting: str = "auto",
           data_error: str | None = None) -> str:
    """The human table: components, totals, fit, steps, time, learning rate, suggestions. data_error: why the
    dataset cannot be read (its steps are unknown)."""
    # A tiny model (the demo's 0.9 M) read "0.00 B parameters": millions below a billion.
    _count = lambda n: f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"  # noqa: E731
    mode = f"memory {est.memory_mode}"
    if memory_setting == "auto":
        mode += " (auto: the fast path does not fit)" if est.memory_mode == "lean" else " (auto)"
    if est.parallelism == "fsdp":
        mode += f", model sharded over {est.num_gpus} GPUs (fsdp)"
    lines = [f"model  {info.name} ({info.source}, {info.architecture}, {_count(info.param_count)} parameters"
             f"{'' if info.exact else ', approximate'})",
             f"batch  {est.tokens_per_microbatch:,} tokens in the largest micro-batch, {est.precision}, {mode}, "
             f"{est.params_trainable:,} trainable LoRA parameters"]
    p = est.plan
    if p is not None:
        lines.append(f"plan   {plan_words(p)}; lengths: {p.lengths_from}")
    lines.append("")
    width = max(len(c.name) for c in est.components)
    for c in est.components:
        lines.append(f" {c.mark} {c.name:<{width}}  {c.gib:7.2f} GiB  {c.note}")
    if est.on_cpu:   # no CUDA context, no caching allocator: the peak is the tensors' in RAM
        lines += ["",
                  f"  peak memory of the training process (tensors)    {est.peak_allocated_gib:7.2f} GiB",
                  f"  while loading the model                          {est.load_peak_gib:7.2f} GiB",
                  "  (~: another moment than the peak, not added; Python and its libraries use RAM on top)"]
    else:
        lines += ["",
                  f"  peak allocated (torch.cuda.max_memory_allocated)  {est.peak_allocated_gib:7.2f} GiB",
                  f"  on the device (nvidia-smi)                       {est.device_total_gib:7.2f} GiB",
                  f"  while loading the model                          {est.load_peak_gib:7.2f} GiB",
                  "  (~: another moment than the peak, not added; +: added for nvidia-smi)"]
    if est.gpu is None:
        lines.append("  GPU: none detected: the run would train on this machine's CPU; pass --gpu NAME to plan "
                     "for a GPU")
    else:
        verdict = "fits" if est.fits else "does NOT fit"
        lines.append(f"  {est.gpu.name} ({est.gpu.memory_gib:.1f} GiB): {verdict} under "
                     f"{est.fit_fraction:.0%}, headroom {est.headroom_gib:+.1f} GiB")
    lines.append("")
    if est.total_steps is None:
        why = f"the dataset cannot be read ({data_error})" if data_error else "the dataset is not a local file"
        lines.append(f"steps  unknown: {why}; pass --examples N")
    else:
        source = "tokenized" if counted else "given or counted"
        epoch = f"{est.steps_per_epoch} per epoch, " if est.steps_per_epoch else ""
        lines.append(f"steps  {epoch}{est.total_steps} in total ({n_examples} training examples, {source})"
                     if n_examples is not None else f"steps  {est.total_steps} (max_steps)")
    if est.time_s is not None:
        cost = f", about {est.cost:.2f} at the given price" if est.cost is not None else ""
        where = f"{est.num_gpus} x {est.gpu.name}" if est.gpu is not None else "this machine's CPU"
        lines.append(f"time   {_duration(est.time_s)} on {where}, {est.includes}{cost}")
    if est.download:   # on top of the time (or of no time): what a first run fetches before it starts
        lines.append(f"{'       ' if est.time_s is not None else 'time   '}{est.download}")
    if est.time_s is not None:
        lines.append(f"       speed {est.time_basis}: {'; '.join(filter(None, (est.time_basis_detail, est.time_caveat)))}")
    lines.append(f"lr     {est.lr_hint['text']}")
    for note in est.notes:
        lines.append(f"note   {note}")
    if est.suggestions:
        lines += ["", "to make it fit:"] + [f"  - {s}" for s in est.suggestions]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lorapilot estimate", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
