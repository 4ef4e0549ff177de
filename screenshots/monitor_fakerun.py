"""A synthetic but realistic run directory for the monitor's screenshots, tests and CPU benchmark.

The curves follow what a QLoRA run on a 7B model with the default recipe
looks like (loss falling from ~2.2 towards ~1.0, cosine learning rate with
warm-up, grad norm around 0.4 with one spike, eval loss turning up late),
with the record shapes of DESIGN.md, so the monitor is exercised on the same
fields a real trainer writes.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Iterator

LR, WARMUP = 2e-4, 0.03


def lr_at(step: int, max_steps: int) -> float:
    warm = max(1, int(max_steps * WARMUP))
    if step < warm:
        return LR * step / warm
    p = (step - warm) / max(1, max_steps - warm)
    return LR * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def train_record(step: int, t: float, max_steps: int, rng: random.Random, steps_per_epoch: int = 400) -> dict:
    base = 0.95 + 1.25 * math.exp(-step / 180)
    gn = 0.35 + 0.15 * math.exp(-step / 300) + rng.gauss(0, 0.04)
    if 425 <= step <= 435:
        gn = 4.8   # one grad-norm spike, for the diagnostics panel to explain
    return {"kind": "train", "step": step, "time": round(t, 3), "epoch": round(step / steps_per_epoch, 3),
            "loss": round(base + rng.gauss(0, 0.06), 4), "learning_rate": lr_at(step, max_steps),
            "grad_norm": round(abs(gn), 4), "tokens_per_s": round(3650 + rng.gauss(0, 60), 1),
            "gpu_mem_gib": [round(17.2 + rng.random() * 0.3, 2)], "gpu_mem_total_gib": [79.6],
            "gpu_util": [97 + rng.randint(0, 2)], "gpu_peak_alloc_gib": [18.4]}


def eval_record(step: int, t: float) -> dict:
    # Falls, then turns up after step ~700: the overfitting the diagnostics flag.
    v = 1.12 + 0.9 * math.exp(-step / 200) + max(0, step - 700) * 0.0004
    return {"kind": "eval", "step": step, "time": round(t, 3), "eval_loss": round(v, 4)}


FINDINGS = {
    430: {"code": "grad_norm_spike", "severity": "warning",
          "message": "The gradient norm jumped to 4.8, about 10x its recent level.",
          "evidence": "grad_norm 4.80 at step 430; median of the previous 40 logged steps 0.42",
          "fix": "One spike is harmless (max_grad_norm 0.3 clips it). If it repeats, lower learning_rate "
                 "from 2e-4 to 1e-4."},
    850: {"code": "overfitting", "severity": "error",
          "message": "Eval loss has risen for 3 evaluations in a row while train loss keeps falling: "
                     "the adapter is memorising the training set.",
          "evidence": "eval_loss 1.150 -> 1.170 -> 1.190 at steps 750-850; train loss 1.02 -> 0.97",
          "fix": "Use the checkpoint from step 700 (the lowest eval loss), or train fewer epochs "
                 "(num_epochs 3 -> 2), or add data."},
    200: {"code": "learning_curve", "severity": "info",
          "message": "Loss is falling steadily; warm-up is over and the learning rate is at its peak.",
          "evidence": "train loss 2.19 -> 1.52 over steps 10-200", "fix": ""},
}


def records(first: int, last: int, max_steps: int, *, t0: float, s_per_step: float = 1.6,
            logging_steps: int = 10, eval_steps: int = 50, save_steps: int = 100,
            seed: int = 0) -> Iterator[dict]:
    rng = random.Random(seed)
    for step in range(max(1, first), last + 1):
        t = t0 + step * s_per_step
        if step % logging_steps == 0:
            yield train_record(step, t, max_steps, rng)
        if step % eval_steps == 0:
            yield eval_record(step, t + 0.5)
        if step % save_steps == 0:
            yield {"kind": "event", "step": step, "time": round(t + 1.0, 3), "code": "checkpoint_saved",
                   "message": "checkpoint saved",
                   "path": f"checkpoints/checkpoint-{step}"}
        if step in FINDINGS:
            yield {"kind": "finding", "step": step, "time": round(t + 0.2, 3), **FINDINGS[step]}
        if step % 300 == 0:
            yield {"kind": "sample", "step": step, "time": round(t + 2.0, 3),
                   "eval_loss": eval_record(step, t)["eval_loss"],  # the trainer copies it into each sample
                   "prompt": "Give three tips for staying healthy.",
                   "output": "1. Eat a balanced diet with plenty of fruit and vegetables. 2. Exercise "
                             "regularly. 3. Get enough sleep." if step >= 600 else "Eat. Eat well. Eat well eat."}


def log_lines(first: int, last: int, logging_steps: int = 10) -> Iterator[str]:
    for step in range(max(1, first), last + 1):
        if step % logging_steps == 0:
            yield f"[step {step}] loss logged; {step * 4 * 4 * 512:,} tokens seen"
        if step % 100 == 0:
            yield f"Saving model checkpoint to checkpoints/checkpoint-{step}"


# The run locks this process holds as the trainer of fake runs (hold_run_lock); released by release_run_locks.
_HELD: list = []


def hold_run_lock(run_dir: Path) -> Path:
    """This process holds the run's trainer.lock, as a real trainer does for its whole life: a fake live run whose
    status.json names this process is then this run's trainer, not the original's of a copied directory (which
    `runs` and the monitor show as not training). Held until release_run_locks (the tests' autouse fixture) or
    this process ends."""
    from engine.rundir import RunLock

    if not any(lock.run_dir == Path(run_dir) for lock in _HELD):
        _HELD.append(RunLock.acquire(run_dir))
    return run_dir


def release_run_locks() -> None:
    while _HELD:
        _HELD.pop().release()


def make_run(run_dir: Path, *, steps_done: int = 900, max_steps: int = 1200, state: str = "training",
             pid: int | None = None, now: float | None = None, s_per_step: float = 1.6,
             error: str | None = None) -> Path:
    """A run directory whose last step was just logged (or, with a final state, finished earlier). With this
    process's pid, this process is its trainer: it holds the run's lock (hold_run_lock)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    t0 = now - steps_done * s_per_step - 2
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as f:
        for rec in records(1, steps_done, max_steps, t0=t0, s_per_step=s_per_step):
            f.write(json.dumps(rec) + "\n")
    head = ["lorapilot 0.1.0: model meta-llama/Llama-2-7b-hf, dataset data/train.jsonl (9,412 rows)",
            "Loading checkpoint shards: 100%|##########| 2/2 [00:04<00:00,  2.1s/it]",
            "trainable params: 39,976,960 || all params: 6,778,392,576 || trainable%: 0.5898"]
    (run_dir / "train.log").write_text("\n".join(head + list(log_lines(1, steps_done))) + "\n", encoding="utf-8")
    (run_dir / "config.yaml").write_text("model: meta-llama/Llama-2-7b-hf\ndataset:\n  path: data/train.jsonl\n",
                                         encoding="utf-8")
    from engine.rundir import process_start

    # pid_start: how `stop` and the monitor tell this run's process from another that reused its pid
    status = {"state": state, "pid": pid, "pid_start": process_start(pid) if pid else None, "step": steps_done,
              "max_steps": max_steps, "error": error, "memory": "fast",
              "started": t0, "updated": now}
    (run_dir / "status.json").write_text(json.dumps(status, indent=1), encoding="utf-8")
    if pid == os.getpid():
        hold_run_lock(run_dir)
    return run_dir
