"""The Trainer callback: a thin adapter that writes the run directory.

It turns the Trainer's logs into metrics.jsonl records, keeps status.json
current, runs the live diagnostics on each record, and turns a stop request
(SIGTERM, `lorapilot stop`) or a stopping finding into "checkpoint, then stop".
It never synchronises the GPU beyond what the Trainer's own logging already does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from transformers import TrainerCallback

from engine.diagnose.live import LogNews
from engine.rundir import (CHECKPOINT_RUN_FILE, FAST_DECODE_COMPILE, LaunchStart, MetricsWriter, format_record,
                           write_status)
from engine.settings import GIB
from engine.train.sample_budget import SAMPLE_TIME_SHARE, SampleBudget

if TYPE_CHECKING:
    from torch import nn
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler
    from transformers import PreTrainedTokenizerBase, TrainerControl, TrainerState, TrainingArguments

    from engine.data.packing import Collator
    from engine.diagnose.live import LiveDiagnostics
    from engine.samples import SamplePrompt
    from engine.train.signals import StopFlag

# Per-step work kept well under 1 % of a step: on an H100 NVML's queries and the status file took
# ~15 ms a step (1.7 % of a 0.87 s step; benchmarks/results/sample_cost-h100-2026-11-23.md), so both
# are refreshed at most this often. Records in between repeat the last GPU sample.
REFRESH_S = 2.0


def _gpu_fields() -> dict:
    """Every GPU's memory and utilisation as nvidia-smi sees it (NVML), and our own allocator peak.

    NVML, not torch.cuda.mem_get_info: asking torch about another device would create a CUDA
    context there (hundreds of MiB on each GPU of a data-parallel run).
    """
    import torch

    if not torch.cuda.is_available():
        return {}
    out = {"gpu_peak_alloc_gib": [round(torch.cuda.max_memory_allocated() / GIB, 3)]}
    try:
        from engine.gpu import sample_gpus
        samples = sample_gpus()
    except Exception:  # noqa: BLE001 - NVML is optional telemetry; training must not die for it
        samples = []
    if samples:
        out["gpu_mem_gib"] = [round(g.mem_used_gib, 3) for g in samples]
        out["gpu_mem_total_gib"] = [round(g.mem_total_gib, 3) for g in samples]
        if all(g.util_pct is not None for g in samples):
            out["gpu_util"] = [int(g.util_pct or 0) for g in samples]  # all known (the test above)
    else:
        free, total = torch.cuda.mem_get_info()
        out["gpu_mem_gib"] = [round((total - free) / GIB, 3)]
        out["gpu_mem_total_gib"] = [round(total / GIB, 3)]
    return out


def fast_decode_room(model: nn.Module, prompts: list[SamplePrompt], max_new_tokens: int) -> bool:
    """Whether fast decode's KV cache and graphs for these prompts (engine.samples.SamplePrompt) fit on this GPU
    beside training's peak so far."""
    import torch

    from engine.gpu import gpu_memory_cap
    from engine.train.sample_budget import fast_decode_fits, kv_cache_bytes

    if not torch.cuda.is_available() or not prompts:
        return False
    try:
        longest = max(len(p.ids) for p in prompts)
        limit: float = torch.cuda.mem_get_info()[1]
        cap = gpu_memory_cap()
        if cap:
            limit = min(limit, cap * GIB)
        cache = kv_cache_bytes(model.config, len(prompts), longest + max_new_tokens)
    except Exception:  # noqa: BLE001 - an architecture without these config fields: samples must never stop a run
        return False
    return fast_decode_fits(torch.cuda.max_memory_allocated(), limit, cache)


class RunDirCallback(TrainerCallback):
    def __init__(self, run_dir: Path, *, collator: Collator, steps_per_epoch: int, stop_flag: StopFlag,
                 stop_on: list[str], diagnostics: LiveDiagnostics | None = None, is_main: bool = True,
                 world_size: int = 1, tokenizer: PreTrainedTokenizerBase | None = None,
                 sample_prompts: Iterable[SamplePrompt] = (), sample_max_new_tokens: int = 128,
                 tokens_offset: int = 0, fast_decode_ok: bool = False,
                 run_record: dict | None = None, learning_rate: float | None = None) -> None:
        self.run_dir = run_dir
        self.collator = collator
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.stop_flag = stop_flag          # engine.train.signals.StopFlag
        self.stop_on = set(stop_on)
        self.diagnostics = diagnostics
        self.is_main = is_main
        self.world_size = world_size
        # A resumed run continues the count of the checkpoint's step: its collator starts again at 0.
        self._offset = float(tokens_offset)
        self._tokens = self._offset  # all ranks together, updated each step
        self._trained = 0.0
        self.writer = MetricsWriter(run_dir) if is_main else None
        self._last_t: float | None = None
        self._last_tokens: float = 0
        self._last_trained: float = 0
        self.stop_reason: str | None = None
        self.tokenizer = tokenizer
        self.sample_prompts = list(sample_prompts)
        self.sample_max_new_tokens = sample_max_new_tokens
        self._last_eval_loss: float | None = None
        # Seconds spent in this callback's per-step work (status, stop agreement, records, NVML), reported
        # in each train record as callback_s so its share of the step time can be read off any run.
        self.overhead_s = 0.0
        self._status_t = 0.0
        self._status_step = 0
        self._eval_status_t = 0.0   # when an evaluation batch last refreshed status.json
        self._gpu: tuple[dict, float] = ({}, 0.0)  # the last GPU sample and when it was taken
        self._t0 = time.monotonic()
        from engine.samples import forced_decoder
        # fast_decode_ok: the trainer may pick fast decode itself (a GPU, the fast memory path, one process)
        self._samples = SampleBudget(fast_allowed=fast_decode_ok, forced=forced_decoder())
        self._step_s: float | None = None  # the latest pace, seconds a step
        # When the pause after a step began (its end, then the end of its evaluation and samples): evaluation
        # and checkpoint records carry it as `began`, so their cost is measured at steps without a train record
        # (eval_steps or save_steps not a multiple of logging_steps), not left out of the monitor's ETA.
        self._pause_began = time.time()
        # Seconds of evaluation, samples and checkpoint saves since the last train record: its tokens/s leaves
        # them out (the monitor shows it as the run's speed, the sweep compares trials by it).
        self._paused = 0.0
        self._start_step = 0
        self._told_skip = False
        self.run_record = run_record  # the config and data fingerprint, saved into each checkpoint
        # A resumed run's configured learning rate: the restored optimizer and schedule carry the old one.
        self.learning_rate = learning_rate
        self._log_news = LogNews()   # metrics.jsonl keeps every verdict; train.log says one when it changes
        self._launch = LaunchStart()  # this launch's first train record: its tokens/s holds the warm-up

    # ---- helpers
    def _status(self, **fields: Any) -> None:
        if self.is_main:
            write_status(self.run_dir, **fields)

    def _write(self, kind: str, step: int, **fields: Any) -> dict | None:
        if self.writer is None:  # not the main rank
            return None
        rec = self.writer.write(kind, step, **fields)
        _echo(rec, self._launch.first(rec))
        if self.diagnostics is not None:
            for finding in self.diagnostics.update([rec]):
                at = finding.step if finding.step is not None else step  # live findings always name their step
                written = self.writer.write("finding", at, **{k: v for k, v in finding.to_record().items()
                                                              if k not in ("kind", "step", "time")})
                if self._log_news.worth_saying(finding):
                    _echo(written)
                # Warnings (one skipped fp16 step, a single spike) are advice; only errors stop a run.
                if finding.code in self.stop_on and finding.severity == "error" and self.stop_reason is None:
                    self.stop_reason = f"{finding.code}: {finding.message}"
        return rec

    def event(self, code: str, step: int, message: str, **fields: Any) -> dict | None:
        """An event record: `code` for programs (the monitor matches on it), `message` for people."""
        return self._write("event", step, code=code, message=message, **fields)

    def _apply_learning_rate(self, learning_rate: float, optimizer: Optimizer | None, scheduler: LRScheduler | None,
                             step: int) -> None:
        """Puts the restored optimizer on this run's schedule at the configured peak learning rate.

        The optimizer state restores the learning rate the checkpoint was last stepped with and the schedule
        state restores the old peak: an edited learning_rate would be ignored, and after a raised max_steps the
        first resumed step trained at the old schedule's end (0 for a cosine ending there). The schedule's
        function is this run's (rebuilt from max_steps), so the rate here is the new peak times it at this step.
        """
        base = list(getattr(scheduler, "base_lrs", None) or [])
        if not base or optimizer is None or scheduler is None or not base[0]:
            return
        ratio = learning_rate / base[0]
        scheduler.base_lrs = [b * ratio for b in base]
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas and len(lambdas) == len(optimizer.param_groups):
            lrs = [b * f(scheduler.last_epoch) for b, f in zip(scheduler.base_lrs, lambdas)]
        else:
            lrs = [group["lr"] * ratio for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
            if "initial_lr" in group:
                group["initial_lr"] *= ratio
        scheduler._last_lr = list(lrs)  # what the Trainer logs as the learning rate
        if ratio != 1:
            self.event("learning_rate_applied", step,
                       f"learning rate {base[0]:g} -> {learning_rate:g} (from config.yaml), schedule kept")

    # ---- Trainer events
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kw: Any) -> None:
        if self.learning_rate is not None:
            self._apply_learning_rate(self.learning_rate, kw.get("optimizer"), kw.get("lr_scheduler"),
                                      state.global_step)
        self._t0 = time.monotonic()
        self._start_step = state.global_step
        self._last_t = time.time()
        self._paused = 0.0
        self._last_tokens = self._tokens
        self._last_trained = self._trained
        self._status(state="training", phase=None, step=state.global_step, max_steps=state.max_steps,
                     steps_per_epoch=self.steps_per_epoch)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kw: Any) -> None:
        t0 = time.perf_counter()
        self._step_end(state, control)
        self.overhead_s += time.perf_counter() - t0

    def _step_end(self, state: TrainerState, control: TrainerControl) -> None:
        # Before this step's records, and the checkpoint the Trainer may save after it: not at a path that is gone.
        self.stop_flag.check_place()
        self._pause_began = time.time()
        now = time.monotonic()
        if now - self._status_t >= REFRESH_S or state.global_step >= state.max_steps:
            # step_s: how long a step takes lately, so that whoever reads status.json alone (the monitor,
            # `lorapilot runs`, `diagnose`) can tell a slow run from a stalled one (engine.diagnose.stall)
            pace: dict[str, float] = {}
            if self._status_t and state.global_step > self._status_step:
                self._step_s = round((now - self._status_t) / (state.global_step - self._status_step), 3)
                pace["step_s"] = self._step_s
            self._status_t, self._status_step = now, state.global_step
            self._status(state="training", step=state.global_step, max_steps=state.max_steps,
                         epoch=round(state.global_step / self.steps_per_epoch, 4), **pace)
        local_stop = 1.0 if (self.stop_flag.is_set() or self.stop_reason) else 0.0
        if self.world_size > 1:
            from engine.train.distributed import all_reduce_sum

            # Every rank must stop at the same step; the token counts come along for free.
            stop, self._tokens, self._trained = all_reduce_sum(
                [local_stop, float(self.collator.tokens_seen), float(self.collator.trained_tokens_seen)])
            self._tokens += self._offset
        else:
            stop, self._tokens, self._trained = local_stop, self._offset + self.collator.tokens_seen, \
                self.collator.trained_tokens_seen
        if stop:
            control.should_save = True
            control.should_training_stop = True

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                           **kw: Any) -> None:
        """Each evaluation batch: status.json says the run evaluates, refreshed at most every REFRESH_S. An evaluation
        writes no step, and a long one (a large validation split on a slow card) read as a stalled run; one whose
        batches stop still does (engine.diagnose.stall)."""
        now = time.monotonic()
        if now - self._eval_status_t >= REFRESH_S:
            self._eval_status_t = now
            self._status(state="evaluating", phase="eval")

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kw: Any) -> None:
        t0 = time.perf_counter()
        self._log(state, control, logs)
        self.overhead_s += time.perf_counter() - t0

    def _log(self, state: TrainerState, control: TrainerControl, logs: dict[str, float] | None) -> None:
        t_log = time.perf_counter()
        logs = dict(logs or {})
        step = state.global_step
        epoch = round(step / self.steps_per_epoch, 4)
        if "eval_loss" in logs:
            self._last_eval_loss = logs["eval_loss"]
            self._write("eval", step, eval_loss=logs["eval_loss"], epoch=epoch, began=self._pause_began)
            return
        if "loss" not in logs:
            return  # the end-of-training summary: our own records already cover it
        now = time.time()
        dt = max(1e-9, now - (self._last_t or now) - self._paused)
        self._paused = 0.0
        tokens = self._tokens - self._last_tokens
        trained = self._trained - self._last_trained
        self._last_t, self._last_tokens, self._last_trained = now, self._tokens, self._trained
        rec = {"epoch": epoch, "loss": _num(logs.get("loss")), "learning_rate": _num(logs.get("learning_rate")),
               "grad_norm": _num(logs.get("grad_norm")), "tokens_per_s": round(tokens / dt, 1),
               "trained_tokens_per_s": round(trained / dt, 1), "tokens_seen": int(self._tokens)}
        rec.update(self._gpu_sample())
        rec["callback_s"] = round(self.overhead_s + time.perf_counter() - t_log, 4)
        self._write("train", step, **{k: v for k, v in rec.items() if v is not None})
        if self.stop_reason and self.world_size == 1:  # several ranks stop together at the next step end
            control.should_save = True
            control.should_training_stop = True

    def _gpu_sample(self) -> dict:
        fields, taken = self._gpu
        if not fields or time.monotonic() - taken >= REFRESH_S:
            self._gpu = fields, taken = _gpu_fields(), time.monotonic()
        return fields

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: nn.Module | None = None, **kw: Any) -> None:
        if self.is_main and self.sample_prompts and model is not None:
            fits = self._samples.batches == 0 and self._samples.fast_allowed and fast_decode_room(
                model, self.sample_prompts, self.sample_max_new_tokens)
            way = self._samples.next_batch(time.monotonic() - self._t0, self._remaining_s(state), fast_fits=fits)
            if way:
                self._sample(model, state.global_step, way)
            elif not self._told_skip:
                self._told_skip = True
                budget = self._samples
                if budget.way == "compile" and budget.batches == 1:
                    why = (f"fast decode's first batch took {budget.last_cost:.0f} s (its compile, once); samples "
                           f"resume when the run's time covers it")
                else:
                    why = f"one batch takes {budget.last_cost:.1f} s"
                self.event("samples_skipped", state.global_step, (
                    f"samples skipped at some evaluations: {why}, and samples are kept under "
                    f"{SAMPLE_TIME_SHARE:.0%} of the run's time"))
        self._pause_ended()  # a checkpoint at this step starts after the samples
        self._status(state="training", phase=None)

    def _pause_ended(self) -> None:
        """A pause (an evaluation with its samples, a save) ends now: its seconds since it began, or since the last
        train record where that came later (logged at the same step), are no training time."""
        now = time.time()
        self._paused += max(0.0, now - max(self._pause_began, self._last_t or self._pause_began))
        self._pause_began = now

    def _remaining_s(self, state: TrainerState) -> float:
        done = state.global_step - self._start_step
        step_s = self._step_s or ((time.monotonic() - self._t0) / done if done > 0 else 0.0)
        return max(0, state.max_steps - state.global_step) * step_s

    def _sample(self, model: nn.Module, step: int, way: str) -> None:
        from engine.samples import fast_decode_broken, sample_all
        from engine.train.compiled_layers import eager_decoding

        if way == "compile" and self._samples.batches == 0:
            self.event(FAST_DECODE_COMPILE, step, "samples: fast decode (CUDA graphs); its first batch compiles "
                                                    "it, about a minute once")
        self._status(state="evaluating", phase="samples")
        t0 = time.monotonic()
        with eager_decoding(model):  # the compiled decoder layers, if the plan compiled them, decode eagerly
            bodies = sample_all(model, self.tokenizer, self.sample_prompts, self.sample_max_new_tokens, way=way)
        self._samples.record(time.monotonic() - t0, fell_back=way != "generate" and fast_decode_broken())
        for body in bodies:
            self._write("sample", step, eval_loss=self._last_eval_loss, **body)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        path = f"{args.output_dir}/checkpoint-{state.global_step}"
        if self.is_main and self.run_record is not None and Path(path).is_dir():
            # What this checkpoint was trained with: a resume compares the edited config with it.
            (Path(path) / CHECKPOINT_RUN_FILE).write_text(json.dumps(self.run_record), encoding="utf-8")
        self.event("checkpoint_saved", state.global_step, "checkpoint saved", path=path, began=self._pause_began)
        self._pause_ended()
        self._status(last_checkpoint=path)


def _echo(rec: dict, warming_up: bool = False) -> None:
    """The record as one line of train.log (the trainer's stdout), as `lorapilot train` prints it: the Trainer's
    own printer, whose dicts repeated every metric in Python syntax, is removed (engine.train.run)."""
    line = format_record(rec, warming_up)
    if line:
        print(line, flush=True)


def _num(x: float | None) -> float | None:
    """A logged value as a float; None when absent or not a number (the Trainer's logs are loosely typed)."""
    if x is None:
        return None
    try:
        return float(x)  # NaN/inf are kept as they are: diagnostics need them
    except (TypeError, ValueError):
        return None
