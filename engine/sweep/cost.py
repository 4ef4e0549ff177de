"""The sweep's time and cost before it starts, from engine.estimate (config.json alone, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.config import Config
from engine.sweep.plan import RUNG_DIVISOR, Trial, trial_config

@dataclass
class TimeModel:
    """One trial's wall time as a function of its steps; None when it cannot be estimated."""
    seconds: Callable[[int], float] | None
    gpu_name: str | None
    why_unknown: str | None = None
    time_basis: str = ""     # the estimate's: "measured on H200", "not measured on T4: assumes ..."
    time_caveat: str = ""    # the estimate's, said beside the time: a CPU time is an idle machine's
    download_bytes: int = 0  # not in the time: the base model the first trial fetches (0: local or cached)


def trial_time_model(base: Config, trials: list[Trial], gpu, *, n_train: int | None,
                     n_val: int | None, lengths: list[int] | None = None,
                     val_lengths: list[int] | None = None) -> TimeModel:
    """Seconds for one trial (the largest r, an upper bound): the estimate's time, its steps, its three evaluations
    and its saves, and its start-up (engine.estimate.timing.startup_seconds: each trial is a fresh trainer).

    lengths: the training examples' token lengths (engine.estimate.dataset_size.token_lengths), so each trial is
    timed over the micro-batches its plan packs, as `lorapilot estimate` and the wizard time a run."""
    from engine.errors import UserError
    from engine.estimate import read_model_config
    from engine.estimate.command import estimate_for

    if gpu is not None and not gpu.tflops_16bit:
        return TimeModel(None, None, f"no speed figure for {gpu.name}")
    # No GPU: the trials train on this machine's CPU, and the estimate times them there (as the wizard does).
    gpu_name = gpu.name if gpu is not None else "this machine's CPU"
    from engine.model import resolve_model_path

    try:
        info = read_model_config(resolve_model_path(base.model))
    except UserError as e:  # a hub id with no network, say: the sweep can still run, only unestimated
        return TimeModel(None, gpu_name, f"the model's size is unknown ({e.message})")
    from engine.estimate.command import download_bytes

    download = download_bytes(info)   # once: the trials after the first read the cache
    widest = max(trials, key=lambda t: t.r)
    basis = ["", ""]

    def timed(steps: int) -> float | None:
        # The trial's steps and training time as `lorapilot estimate` and the wizard show them (one function);
        # each trial runs on one GPU.
        # Its time counts the trial's three evaluations and its checkpoints, by the monitor's ETA's rule, and its
        # start-up (loading the model, tokenising the data) by the estimate's.
        est, _ = estimate_for(trial_config(base, widest, steps), info, gpu, n_examples=n_train, num_gpus=1,
                              lengths=lengths, val_lengths=val_lengths, n_val=n_val)
        basis[:] = [est.time_basis, est.time_caveat]
        if est.time_s is None:
            return None
        return est.time_s

    if timed(RUNG_DIVISOR) is None:
        return TimeModel(None, gpu_name, "the step time could not be estimated", download_bytes=download)

    def seconds(steps: int) -> float:
        s = timed(steps)
        if s is None:  # unreachable: whether a time is known depends on the GPU, model and data, not the steps
            raise RuntimeError(f"the trial time is known for {RUNG_DIVISOR} steps but not for {steps}")
        return s

    return TimeModel(seconds, gpu_name, time_basis=basis[0], time_caveat=basis[1], download_bytes=download)
