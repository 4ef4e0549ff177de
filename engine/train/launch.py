"""Starting, resuming and stopping runs.

The trainer always runs as its own process in its own session, writing only
to its run directory: closing the terminal, an SSH drop or quitting the app
never kills it. In the foreground the launcher follows metrics.jsonl and
turns Ctrl-C into a graceful stop; with --detach it returns at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import Config, check_override, config_from_dict, save_config
from engine.detached import spawn_detached
from engine.errors import UserError
from engine.rundir import (CONFIG_FILE, FINAL_STATES, LOG_FILE, STOP_REQUEST_FILE, MetricsTail, default_runs_root,
                           effective_state, pid_alive, read_status, write_status)


@dataclass
class RunHandle:
    run_dir: Path
    pid: int
    process: subprocess.Popen | None = None


def check_inputs(cfg: Config) -> None:
    """Fails fast, in the launching process, on a bad model path or unreadable data."""
    from engine.data import read_rows
    from engine.model import check_model_reachable

    check_model_reachable(cfg.model)
    if cfg.lora.target_modules != "all-linear":
        # peft refuses a module name the model does not have only once the trainer has loaded it, detached.
        from engine.estimate.model_config import read_model_config
        from engine.estimate.params import lora_targets

        lora_targets(read_model_config(cfg.model).arch, cfg.lora.target_modules)
    read_rows(cfg.dataset.path, cfg.dataset.format)
    if cfg.dataset.validation_path:
        read_rows(cfg.dataset.validation_path, cfg.dataset.format)


def new_run_dir(cfg: Config, config_name: str | None = None) -> Path:
    root = Path(cfg.runs_dir) if cfg.runs_dir != "runs" else default_runs_root()
    base = cfg.run_name or f"{config_name or Path(cfg.model.rstrip('/')).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = root / base
    n = 2
    while path.exists():
        path = root / f"{base}-{n}"
        n += 1
    path.mkdir(parents=True)
    return path.resolve()


def _spawn(run_dir: Path, resume: bool, nproc: int) -> subprocess.Popen:
    from engine.train.distributed import launch_command

    return spawn_detached(launch_command(str(run_dir), nproc, resume), run_dir / LOG_FILE,
                          PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")


def start_run(cfg: Config, *, run_dir: str | Path | None = None, config_name: str | None = None,
              max_steps: int | None = None, check: bool = True) -> RunHandle:
    """Writes the resolved config into a new run directory and starts the trainer there."""
    if max_steps is not None:
        cfg.training.max_steps = check_override("training.max_steps", max_steps, flag="--max-steps")
    # The trainer re-reads config.yaml and refuses what the validator refuses: check it all here, before
    # anything is detached (a run that fails after `train --detach` returned 0 is an error nobody sees).
    config_from_dict(cfg.to_dict(), source=config_name or "config")
    if check:
        check_inputs(cfg)
    if run_dir:
        rd = Path(run_dir).resolve()
        if rd.exists() and any(rd.iterdir()):
            raise UserError(f"{rd}: run directory exists and is not empty",
                            fix="choose another --run-dir, or `lorapilot train --resume` it")
        rd.mkdir(parents=True, exist_ok=True)
    else:
        rd = new_run_dir(cfg, config_name)
    from engine.train.distributed import num_processes

    nproc = num_processes(cfg.training.num_gpus)
    cfg.run_name = rd.name
    save_config(cfg, rd / CONFIG_FILE)
    write_status(rd, state="starting", step=0, max_steps=0, error=None, world_size=nproc)
    proc = _spawn(rd, resume=False, nproc=nproc)
    write_status(rd, pid=proc.pid)
    return RunHandle(rd, proc.pid, proc)


def resume_run(run_dir: str | Path) -> RunHandle:
    rd = Path(run_dir).resolve()
    if not (rd / CONFIG_FILE).exists():
        raise UserError(f"{rd}: not a run directory (no {CONFIG_FILE})")
    status = read_status(rd) or {}
    if effective_state(status) not in FINAL_STATES + ("lost", "unknown"):
        raise UserError(f"{rd}: the run is still {status.get('state')} (pid {status.get('pid')})",
                        fix=f"stop it first: lorapilot stop {rd}")
    from engine.config import load_config
    from engine.train.distributed import num_processes

    cfg = load_config(rd / CONFIG_FILE)
    finished = finished_all_steps(rd, status, cfg.training.max_steps)
    if finished:
        raise UserError(f"{rd}: nothing left to train: {finished}",
                        fix=f"to train longer, raise training.max_steps in {rd / CONFIG_FILE}, then resume")
    nproc = num_processes(cfg.training.num_gpus)
    (rd / STOP_REQUEST_FILE).unlink(missing_ok=True)
    write_status(rd, state="starting", error=None, hint=None, world_size=nproc)
    proc = _spawn(rd, resume=True, nproc=nproc)
    write_status(rd, pid=proc.pid)
    return RunHandle(rd, proc.pid, proc)


def finished_all_steps(rd: Path, status: dict, configured_max_steps: int) -> str | None:
    """Why a resume would have nothing to train, or None.

    transformers resumed from a checkpoint at max_steps trains one step past it, so this is refused before
    starting. A config edited to more steps than the run planned is a real continuation.
    """
    from engine.train.run import last_checkpoint

    planned = status.get("max_steps")
    ckpt = last_checkpoint(rd)
    if not planned or not ckpt or configured_max_steps > planned:
        return None
    at = int(ckpt.rsplit("-", 1)[-1])
    return f"its last checkpoint is at step {at} of {planned}" if at >= planned else None


def request_stop(run_dir: str | Path) -> bool:
    """Asks the trainer to finish its step, checkpoint and stop. False if it is not running."""
    rd = Path(run_dir)
    status = read_status(rd) or {}
    pid = status.get("pid")
    if status.get("state") in FINAL_STATES or not isinstance(pid, int) or not pid_alive(pid):
        return False
    # Every rank polls the file (and agrees on the step to stop at); it also works where signals
    # cannot reach, such as another container sharing the disk.
    (rd / STOP_REQUEST_FILE).touch()
    if (status.get("world_size") or 1) > 1:
        return True  # SIGTERM to torchrun would kill the ranks before they checkpoint
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def train_command(config_path: str, *, detach: bool = True) -> str:
    return f"lorapilot train {config_path}" + (" --detach" if detach else "")


def follow(handle: RunHandle, out=sys.stdout, poll_s: float = 0.5) -> int:
    """Prints progress lines while the trainer runs; Ctrl-C asks for a graceful stop."""
    tail = MetricsTail(handle.run_dir)
    stopping = False

    def on_int(signum, frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\nstopping: finishing the current step and saving a checkpoint "
                  "(Ctrl-C again to leave it running in the background)", file=out, flush=True)
            request_stop(handle.run_dir)
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_int)
    try:
        while True:
            for rec in tail.read_new():
                line = format_record(rec)
                if line:
                    print(line, file=out, flush=True)
            rc = handle.process.poll() if handle.process else (None if pid_alive(handle.pid) else 0)
            if rc is not None:
                for rec in tail.read_new():
                    line = format_record(rec)
                    if line:
                        print(line, file=out, flush=True)
                return rc
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"left running: pid {handle.pid}; `lorapilot monitor {handle.run_dir}` to watch", file=out)
        return 0
    finally:
        signal.signal(signal.SIGINT, old)


def format_record(rec: dict) -> str | None:
    kind, step = rec.get("kind"), rec.get("step")
    if kind == "train":
        parts = [f"step {step:>5}", f"loss {rec.get('loss', float('nan')):.4f}"]
        if rec.get("learning_rate") is not None:
            parts.append(f"lr {rec['learning_rate']:.2e}")
        if rec.get("grad_norm") is not None:
            parts.append(f"grad {rec['grad_norm']:.3f}")
        if rec.get("tokens_per_s"):
            parts.append(f"{rec['tokens_per_s']:,.0f} tok/s")
        return "  ".join(parts)
    if kind == "eval":
        return f"step {step:>5}  eval_loss {rec.get('eval_loss', float('nan')):.4f}"
    if kind == "finding":
        return f"step {step:>5}  [{rec.get('severity')}] {rec.get('code')}: {rec.get('message')}"
    if kind == "event":
        return f"step {step:>5}  {rec.get('message')}"
    return None
