# Put on PYTHONPATH with BENCH_LEVERS="name=value,..." to switch engine.train.speed.LEVERS in every process started
# with it: the trainer that `lorapilot train` spawns too, which a benchmark cannot reach otherwise
# (benchmarks/user_path.py's lever sides). benchmarks/profile_step.py calls switch_levers in its own process.
import os
import sys


def switch_levers(spec: str) -> None:
    from engine.train import speed

    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        default = getattr(speed.LEVERS, name)  # an unknown lever fails loudly, not silently measured as the default
        if isinstance(default, bool):
            setattr(speed.LEVERS, name, value.lower() in ("1", "true", "on"))
        else:
            setattr(speed.LEVERS, name, int(value) if default is None else type(default)(value))


if os.environ.get("BENCH_LEVERS"):
    switch_levers(os.environ["BENCH_LEVERS"])


def record_memory_history(folder: str) -> None:
    """The trainer's CUDA allocations recorded with their Python stacks, dumped as a snapshot when it exits
    (benchmarks/memory_peak.py reads it): user_path's _mem sides set BENCH_MEMORY_HISTORY to a folder."""
    import atexit
    from pathlib import Path

    import torch

    if not torch.cuda.is_available():
        return
    # Recording from the start broke the first compiled step (s14: "SystemError: <built-in method apply of
    # FunctionMeta object> returned NULL", so the compiled layers fell back to eager): recording starts after
    # BENCH_MEMORY_FROM_STEP optimizer steps (3: past the compile), counted by a global optimizer-step hook.
    from_step = int(os.environ.get("BENCH_MEMORY_FROM_STEP", "3"))
    steps = [0]

    def record() -> None:
        torch.cuda.memory._record_memory_history(max_entries=int(os.environ.get("BENCH_MEMORY_ENTRIES", "1000000")),
                                                 stacks="python")

    def count_step(*_args) -> None:
        steps[0] += 1
        if steps[0] == from_step:
            record()

    if from_step <= 0:
        record()
    else:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(count_step)
    path = Path(folder) / f"trainer-{os.getpid()}.pickle"

    def dump() -> None:  # under another name first: a reader waiting for *.pickle never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._dump_snapshot(str(path.with_suffix(".part")))
        os.replace(path.with_suffix(".part"), path)
    atexit.register(dump)


# Only in the trainer (`python -m engine.train.run`), not in the CLI that starts it.
if os.environ.get("BENCH_MEMORY_HISTORY") and "engine.train.run" in getattr(sys, "orig_argv", []):
    record_memory_history(os.environ["BENCH_MEMORY_HISTORY"])
