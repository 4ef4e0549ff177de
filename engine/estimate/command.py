"""`lorapilot estimate CONFIG`: the estimate as a table, or as one JSON object."""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import EXIT_BAD_INPUT, EXIT_OK, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML config (model may be a hub id, a preset or a directory with config.json)")
    parser.add_argument("--gpu", default=None,
                        help="GPU preset to fit against (t4, a10, rtx4090, a100-80, h100-80, ...); "
                             "default: the GPU present, if any")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--examples", type=int, default=None,
                        help="number of training examples (default: counted from a local dataset file)")
    parser.add_argument("--price-per-hour", type=float, default=None, help="GPU price per hour, for the cost")


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.estimate import (count_examples, detect_gpu, estimate, get_gpu, read_model_config,
                                 training_examples)

    cfg = load_config(args.config)
    info = read_model_config(cfg.model)
    gpu = get_gpu(args.gpu) if args.gpu else detect_gpu()
    n_examples, counted = args.examples, False
    if n_examples is None:
        total = count_examples(cfg.dataset.path)
        if total is not None:
            n_examples = training_examples(total, cfg.dataset.validation_split, bool(cfg.dataset.validation_path))
            counted = True
    num_gpus = cfg.training.num_gpus or 1
    est = estimate(cfg, info, gpu, n_examples=n_examples, num_gpus=num_gpus, price_per_hour=args.price_per_hour)
    if args.json:
        out = est.to_dict()
        out["model"] = info.to_dict()
        out["n_examples"] = n_examples
        print(json.dumps(out, indent=2))
    else:
        print(render(est, info, n_examples, counted, cfg.training.memory))
    return EXIT_OK


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def render(est, info, n_examples: int | None, counted: bool, memory_setting: str = "auto") -> str:
    """The human table: components, totals, fit, steps, time, learning rate, suggestions."""
    # A tiny model (the demo's 0.9 M) read "0.00 B parameters": millions below a billion.
    _count = lambda n: f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"  # noqa: E731
    mode = f"memory {est.memory_mode}"
    if memory_setting == "auto":
        mode += " (auto: the fast path does not fit)" if est.memory_mode == "lean" else " (auto)"
    if est.parallelism == "fsdp":
        mode += f", model sharded over {est.num_gpus} GPUs (fsdp)"
    lines = [f"model  {info.name} ({info.source}, {info.architecture}, {_count(info.param_count)} parameters"
             f"{'' if info.exact else ', approximate'})",
             f"batch  {est.tokens_per_microbatch:,} tokens per micro-batch, {est.precision}, {mode}, "
             f"{est.params_trainable:,} trainable LoRA parameters", ""]
    width = max(len(c.name) for c in est.components)
    for c in est.components:
        mark = " " if c.in_peak else "+" if c.name in ("CUDA context", "allocator slack", "paged optimizer states") \
            else "~"
        lines.append(f" {mark} {c.name:<{width}}  {c.gib:7.2f} GiB  {c.note}")
    lines += ["",
              f"  peak allocated (torch.cuda.max_memory_allocated)  {est.peak_allocated_gib:7.2f} GiB",
              f"  on the device (nvidia-smi)                       {est.device_total_gib:7.2f} GiB",
              f"  while loading the model                          {est.load_peak_gib:7.2f} GiB",
              "  (~: another moment than the peak, not added; +: added for nvidia-smi)"]
    if est.gpu is None:
        lines.append("  GPU: none detected; pass --gpu NAME to check the fit")
    else:
        verdict = "fits" if est.fits else "does NOT fit"
        lines.append(f"  {est.gpu.name} ({est.gpu.memory_gib:.1f} GiB): {verdict} under "
                     f"{est.fit_fraction:.0%}, headroom {est.headroom_gib:+.1f} GiB")
    lines.append("")
    if est.total_steps is None:
        lines.append("steps  unknown: the dataset is not a local file; pass --examples N")
    else:
        source = "counted" if counted else "given"
        epoch = f"{est.steps_per_epoch} per epoch, " if est.steps_per_epoch else ""
        lines.append(f"steps  {epoch}{est.total_steps} in total ({n_examples} training examples, {source})"
                     if n_examples is not None else f"steps  {est.total_steps} (max_steps)")
    if est.time_s is not None:
        cost = f", about {est.cost:.2f} at the given price" if est.cost is not None else ""
        lines.append(f"time   about {_duration(est.time_s)} on {est.num_gpus} x {est.gpu.name}{cost}")
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
