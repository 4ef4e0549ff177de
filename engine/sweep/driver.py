"""The sweep driver: `python -m engine.sweep.driver SWEEP_DIR`, a detached process like the trainer.

It starts each trial as an ordinary run (engine.train.launch.start_run) in SWEEP_DIR/<trial id>/,
`lanes` at a time (one per visible GPU, each trial seeing only its GPU through CUDA_VISIBLE_DEVICES),
follows their metrics.jsonl, stops the hopeless ones (engine.sweep.plan's rule), keeps to the budget,
and rewrites sweep.json as it goes. It dies with nothing: a trial is its own process and session, and
sweep.json always holds the last known picture. SIGTERM or SWEEP_DIR/stop.request stops every running
trial gracefully (checkpoint, then exit) and starts no more.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from engine.detached import spawn_detached
from engine.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, UserError, shell_word
from engine.rundir import (CONFIG_FILE, FINAL_STATES, METRICS_FILE, MetricsTail, RunPlace, finite, loss_text,
                           pid_alive, read_metrics, read_status, record_number, safe_text)
from engine.sweep.plan import Trial, halving_should_stop, trial_config, trial_wall_s
from engine.sweep.report import RESULT_KEYS, choose_winner, table_rows, trial_metrics
from engine.sweep.sweepdir import (SWEEP_FILE, SWEEP_LOG, SWEEP_STOP_FILE, TRIAL_PENDING, TRIAL_SKIPPED,
                                   elapsed_s, predicted_trial_s, read_sweep, write_sweep)

POLL_S = 0.5


def log(msg: str) -> None:
    print(f"[sweep] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def spawn_driver(sweep_dir: Path, lock=None) -> subprocess.Popen:
    """Starts the driver in its own session (an SSH drop or closing the app never reaches it); lock: the sweep
    folder's SweepLock, handed down so the driver holds it for its life (the caller releases its own copy)."""
    proc = spawn_detached([sys.executable, "-u", "-m", "engine.sweep.driver", str(sweep_dir)],
                          sweep_dir / SWEEP_LOG, pass_fds=(lock.fd,) if lock else (), PYTHONUNBUFFERED="1")
    if lock:
        lock.record_holder(proc.pid)
    return proc


@contextlib.contextmanager
def _visible_device(device: str | None):
    """The trial's process inherits this environment: it sees only its own GPU."""
    if device is None:
        yield
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


class Driver:
    def __init__(self, sweep_dir: str | Path):
        from engine.config import config_from_dict

        self.dir = Path(sweep_dir).resolve()
        self.place = RunPlace(self.dir)   # held open: a sweep directory moved while it runs is followed (_follow_move)
        self.sweep = read_sweep(self.dir)
        self.base = config_from_dict(self.sweep["base_config"], source=str(self.dir / SWEEP_FILE))
        self.trials = {t["id"]: t for t in self.sweep["trials"]}
        self.handles: dict = {}       # trial id -> RunHandle
        self.tails: dict = {}         # trial id -> MetricsTail
        self.lane_of: dict = {}       # trial id -> lane index
        self.stopping: str | None = None  # why no more trials start: "user" | "budget" | "failed"
        self.abort_reason: str | None = None
        self.rung_losses: dict = self.sweep.setdefault("rung_losses", {str(r): {} for r in self.sweep["rungs"]})

    # ------------------------------------------------------------ the loop
    def run(self) -> int:
        s = self.sweep
        s.update(state="running", driver_pid=os.getpid(), started=s.get("started") or time.time(),
                 run_started=time.time())
        for t in s["trials"]:
            if t.pop("adopt", False):   # a resume found its trainer still running: followed, not started again
                self._adopt(t)
        self._save()
        signal.signal(signal.SIGTERM, lambda *_: self._ask_stop("user", "stop requested"))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log(f"{len(s['trials'])} trials of {s['steps']} steps, {s['lanes']} at a time; rungs {s['rungs']}")
        while True:
            if not self._follow_move():
                return EXIT_RUN_FAILED
            if (self.dir / SWEEP_STOP_FILE).exists():
                self._ask_stop("user", "stop requested")
            self._check_budget_running()
            self._poll()
            if self.stopping is None:
                self._start_more()
            if not self.handles and (self.stopping or not self._pending()):
                break
            self._save()
            time.sleep(POLL_S)
        return self._finish()

    def _save(self) -> None:
        """sweep.json where the sweep directory is now: followed if it moved, nothing written if it was deleted."""
        if self._follow_move():
            write_sweep(self.dir, self.sweep)

    def _follow_move(self) -> bool:
        """The sweep directory moved (mv runs/sweep-a runs/sweep-b) while the driver runs: sweep.json was written at
        the old path and a trial started there, making the folder again. Its running trials' trainers stop at their
        next step on finding their own folders moved; the driver follows them there to their end, starts no more,
        and sweep.json says where the sweep went and how to go on. False when it was deleted: nothing to write."""
        moved = self.place.moved()
        if moved is None:
            return True
        what = safe_text(f"the sweep directory {self.dir} was "
                         + (f"moved to {moved.now}" if moved.now else "deleted") + " while it ran", one_line=True)
        log(what)
        self.stopping = "failed"
        if moved.now is None:
            self.abort_reason = what
            return False
        self.abort_reason = (f"{what}: its running trials stopped; go on where it is now: "
                             f"lorapilot sweep --resume {shell_word(moved.now)}")
        self.dir = self.place.run_dir = moved.now
        self.sweep["sweep_dir"] = str(self.dir)
        for tid, handle in self.handles.items():
            handle.run_dir = self.dir / tid
            self.tails[tid].path = handle.run_dir / METRICS_FILE
        return True

    def _pending(self) -> list[dict]:
        return [t for t in self.sweep["trials"] if t["state"] == TRIAL_PENDING]

    def _ask_stop(self, why: str, reason: str) -> None:
        if self.stopping is None:
            self.stopping = why
            log(f"stopping the sweep: {reason}")
        from engine.train.launch import request_stop

        for tid, handle in self.handles.items():
            t = self.trials[tid]
            if not t.get("stopped_by"):
                t.update(stopped_by=why, stop_reason=reason)
                request_stop(handle.run_dir)

    # ------------------------------------------------------------ starting trials
    def _predicted_trial_s(self) -> float | None:
        return predicted_trial_s(self.sweep["plan"])

    def _start_more(self) -> None:
        lanes = self.sweep["lanes"]
        budget = self.sweep["plan"].get("budget_s")
        for t in self._pending():
            if len(self.handles) >= lanes:
                return
            predicted = self._predicted_trial_s()
            if predicted and not self.sweep["plan"].get("measured_trial_s"):
                # the estimate times a trial alone: trials sharing a device take as long as one after another
                at_once = min(lanes, len(self.handles) + len(self._pending()))
                predicted = trial_wall_s(predicted, at_once, self.sweep.get("devices") or [])
            elapsed = elapsed_s(self.sweep, time.time())
            if budget and predicted and elapsed + predicted > budget:
                for rest in self._pending():
                    rest.update(state=TRIAL_SKIPPED, stopped_by="budget",
                                stop_reason=f"not started: {elapsed / 60:.1f} min spent, a trial takes about "
                                            f"{predicted / 60:.1f} min, the budget is {budget / 60:g} min")
                log("budget reached: the remaining trials are skipped")
                return
            self._start(t)

    def _start(self, t: dict) -> None:
        from engine.train.launch import resume_run, start_run

        changed, what = self._data_changed(), "data"
        if not changed:
            changed, what = self._token_makers_changed(), "way its tokens are made"
        if changed:   # the trials that ran trained on the data as it was: no later one trains on other data
            self.abort_reason = (f"the {what} changed since the sweep started, so {t['id']} and the trials after it "
                                 f"were not started: {'; '.join(changed)}")
            self.stopping = "failed"
            log(self.abort_reason)
            return
        lane = min(set(range(self.sweep["lanes"])) - set(self.lane_of.values()))
        devices = self.sweep.get("devices") or []
        device = devices[lane % len(devices)] if devices else None
        cfg = trial_config(self.base, Trial(t["learning_rate"], t["r"]), self.sweep["steps"])
        run_dir = self.dir / t["id"]
        again = (run_dir / CONFIG_FILE).is_file()   # `sweep --resume`: a trial cut short goes on in its own folder
        try:
            with _visible_device(device):
                if again:   # from its last checkpoint, else from the start (`train --resume`'s rules)
                    handle = resume_run(run_dir, trust_remote_code=self.base.trust_remote_code)
                else:
                    handle = start_run(cfg, run_dir=run_dir, check=False, sweep_trial=True)
        except UserError as e:
            t.update(state="failed", error=str(e).splitlines()[0], ended=time.time())
            if again:   # this trial's folder, not the sweep's input: the others go on
                log(f"trial {t['id']} could not resume: {e.message}")
                return
            self.abort_reason = f"trial {t['id']} could not start: {e.message}"
            self.stopping = "failed"
            log(self.abort_reason)
            return
        self._follow(t, handle, lane)
        t.update(state="starting", run_dir=str(run_dir), gpu=device, started=time.time(), pid=handle.pid)
        if self._base_not_cached():
            t["fetches_base"] = True   # its wall time holds the download: not a trial's time (_measured)
        log(f"{'resumed' if again else 'started'} {t['id']} (lr {t['learning_rate']:g}, r {t['r']}) pid {handle.pid}"
            + (f" on GPU {device}" if device is not None else ""))

    def _data_changed(self) -> list[str]:
        """The data files not as the sweep recorded them (engine.data.fingerprint), before a trial reads them: an
        edit while the sweep runs would rank trials on two datasets together. A stat a file, a hash only where its
        modification time moved; a hub dataset is loaded as the trial loads it, to see which revision it reads."""
        from engine.data.fingerprint import data_changes

        return data_changes(self.sweep["data"], self.base.dataset) if self.sweep.get("data") else []

    def _token_makers_changed(self) -> list[str]:
        """What makes the trials' tokens (the tokenizer and chat template at the model's path, lorapilot's data rules,
        the libraries) not as the sweep recorded them (sweep.json's "tokens"), before a trial tokenizes: an edit
        while the sweep runs would rank trials on two sets of tokens together. The tokenizer loaded, no row tokenized
        (a resume compares the tokens themselves: engine.sweep.resume.check_same_tokens)."""
        saved = self.sweep.get("tokens")
        if not isinstance(saved, dict):
            return []
        from engine.data.fingerprint import token_makers
        from engine.model import load_tokenizer
        from engine.train.resume_check import maker_changes

        try:
            tokenizer = load_tokenizer(self.base.model, self.base.trust_remote_code)
        except UserError:
            return []   # the trial's own load says why
        return maker_changes(saved, token_makers(tokenizer), self.base.model, "when the sweep started")

    def _follow(self, t: dict, handle, lane: int) -> None:
        self.handles[t["id"]] = handle
        self.tails[t["id"]] = MetricsTail(handle.run_dir)
        self.lane_of[t["id"]] = lane

    def _adopt(self, t: dict) -> None:
        """A trial whose trainer outlived the driver: followed from its records, on the lane of its GPU."""
        from engine.rundir import trainer_pid
        from engine.train.launch import RunHandle

        run_dir = self.dir / t["id"]
        pid = trainer_pid(run_dir, read_status(run_dir))
        if pid is None:   # it ended between the resume's look and now: its end is read as any trial's
            pid = 0
        devices = self.sweep.get("devices") or []
        free = sorted(set(range(self.sweep["lanes"])) - set(self.lane_of.values()))
        lane = devices.index(t["gpu"]) if t.get("gpu") in devices[:self.sweep["lanes"]] else (
            free[0] if free else len(self.lane_of))
        self._follow(t, RunHandle(run_dir, pid), lane)
        log(f"following {t['id']}, still running (pid {pid})")

    # ------------------------------------------------------------ following trials
    def _poll(self) -> None:
        for tid in list(self.handles):
            t, handle = self.trials[tid], self.handles[tid]
            for rec in self.tails[tid].read_new():
                if rec.get("kind") == "eval":
                    self._on_eval(t, handle, rec)
                elif rec.get("kind") == "train":
                    t["loss"] = rec.get("loss")
            status = read_status(handle.run_dir) or {}
            t["step"], t["max_steps"] = status.get("step", t.get("step", 0)), status.get("max_steps")
            if status.get("state") and status["state"] not in FINAL_STATES:
                t["state"] = status["state"]
            rc = handle.process.poll() if handle.process else (None if pid_alive(handle.pid) else 0)
            if rc is not None:
                self._on_exit(t, handle, rc)

    def _on_eval(self, t: dict, handle, rec: dict) -> None:
        step, loss = int(rec.get("step") or 0), record_number(rec, "eval_loss")   # None: no number (hand-edited)
        # A resumed trial's records are read again from the start, and a step re-run after its checkpoint evaluates
        # again: the newest evaluation of a step replaces the one before (engine.rundir.drop_superseded's rule).
        t["evals"] = [e for e in t.get("evals") or [] if e[0] < step] + [[step, loss]]
        t["eval_loss"] = loss
        key = str(step)
        if key not in self.rung_losses or loss is None:
            return
        others = [v for k, v in self.rung_losses[key].items() if k != t["id"]]
        judged = t["id"] in self.rung_losses[key]   # a trial that went on at a rung is not judged there again
        self.rung_losses[key][t["id"]] = loss
        if judged:
            return
        if not self.sweep.get("halving") or t.get("stopped_by"):
            return
        if halving_should_stop(loss, others):
            from engine.train.launch import request_stop

            better = sum(1 for x in others if isinstance(x, (int, float)) and x < loss)
            t.update(stopped_by="halving",
                     stop_reason=f"eval loss {loss_text(loss)} at step {step} is in the worse half of the "
                                 f"{len(others) + 1} trials at this rung ({better} better)")
            log(f"halving stops {t['id']}: {t['stop_reason']}")
            request_stop(handle.run_dir)

    def _on_exit(self, t: dict, handle, rc: int) -> None:
        from engine.diagnose.codes import STOPPABLE

        status = read_status(handle.run_dir) or {}
        state = status.get("state") if status.get("state") in FINAL_STATES else "failed"
        t.update(state=state, step=status.get("step", t.get("step")), ended=time.time(), pid=None)
        t["seconds"] = round(t["ended"] - t["started"], 1)
        if state == "done" and t.get("stopped_by"):
            # Asked to stop (halving, the user, the budget) but it reached its last step first: a finished trial,
            # ranked and shown as one, not as "stopped early".
            log(f"{t['id']} finished before its stop ({t['stopped_by']}) took effect")
            t.update(stopped_by=None, stop_reason=None)
        if state == "stopped" and not t.get("stopped_by"):
            reason = status.get("stop_reason") or ""
            code = reason.split(":", 1)[0]
            t.update(stopped_by=code if code in STOPPABLE else "user", stop_reason=reason)
        if state == "failed":
            t["error"] = status.get("error") or f"the trainer exited with code {rc}"
            if rc == EXIT_BAD_INPUT:  # the base config or the data: every other trial would fail alike
                self.abort_reason = f"trial {t['id']} failed on its input: {t['error']}"
                self.stopping = self.stopping or "failed"
        metrics = trial_metrics(read_metrics(handle.run_dir))
        t.update({k: metrics[k] for k in RESULT_KEYS})
        if state == "done" and t.get("max_steps"):
            self._measured(t)
        del self.handles[t["id"]], self.tails[t["id"]], self.lane_of[t["id"]]
        log(f"{t['id']} {state}" + (f" ({t['stopped_by']}: {t.get('stop_reason')})" if t.get("stopped_by") else "")
            + (f": {t.get('error')}" if state == "failed" else "")
            + (f", eval loss {loss_text(t['eval_loss'])}" if finite(t.get("eval_loss")) else ""))

    def _base_not_cached(self) -> bool:
        """The sweep's plan found the base model's weights missing from the local Hugging Face cache, and they are
        still missing: a trial starting now downloads them (or waits on the one that does)."""
        if not self.sweep["plan"].get("download_bytes"):
            return False
        from engine.estimate.hub_cache import weights_cached
        from engine.model import resolve_model_path

        return not weights_cached(resolve_model_path(self.base.model))

    def _measured(self, t: dict) -> None:
        """A finished trial's wall time replaces the estimate (the budget check and the monitor's ETA use it). Trials
        that started before the base model was in the cache are left out: their time holds a download the later
        trials never make, and would have them predicted minutes too long (skipped under a budget)."""
        plan = self.sweep["plan"]
        done = [x["seconds"] for x in self.sweep["trials"]   # a resumed trial's time is only its last part's
                if x["state"] == "done" and x.get("seconds") and not x.get("fetches_base") and not x.get("resumed")]
        if not done:
            return
        plan["measured_trial_s"] = round(sum(done) / len(done), 1)   # the time left: summary.remaining_seconds

    def _check_budget_running(self) -> None:
        budget = self.sweep["plan"].get("budget_s")
        if budget and self.handles and elapsed_s(self.sweep, time.time()) > budget and self.stopping is None:
            self._ask_stop("budget", f"the budget of {budget / 60:g} min is spent")

    # ------------------------------------------------------------ the end
    def _finish(self) -> int:
        s = self.sweep
        for t in self._pending():
            why = self.stopping or "user"
            t.update(state=TRIAL_SKIPPED, stopped_by=why,
                     stop_reason=self.abort_reason if why == "failed" else f"not started ({why})")
        s["winner"] = choose_winner(s["trials"])
        s["table"] = table_rows(s)
        if self.abort_reason or not any(t["state"] in ("done", "stopped") for t in s["trials"]):
            s["state"], s["error"] = "failed", self.abort_reason or "every trial failed"
        else:
            s["state"] = "stopped" if self.stopping == "user" else "done"
        s["ended"] = time.time()
        if s.get("apply_path") and s["winner"]:
            from engine.sweep.report import apply_winner

            try:
                s["applied"] = str(apply_winner(s, s["apply_path"], replace=bool(s.get("apply_replace"))))
                log(f"winner's config written to {s['applied']}")
            except UserError as e:
                s["apply_error"] = str(e)
        self._save()
        w = s["winner"]
        log(f"sweep {s['state']}" + (f"; winner {w['id']} eval loss {loss_text(w['eval_loss'])}" if w else ""))
        return EXIT_OK if s["state"] != "failed" else EXIT_RUN_FAILED


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.sweep.driver")
    ap.add_argument("sweep_dir")
    a = ap.parse_args(argv)
    driver = None
    try:
        driver = Driver(a.sweep_dir)
        return driver.run()
    except Exception as e:  # noqa: BLE001 - traceback printed to the log and the state recorded for the reader; the trials themselves keep running or are done
        traceback.print_exc()
        if driver is not None:
            driver.sweep.update(state="failed", error=f"sweep driver: {type(e).__name__}: {e}")
            driver._save()
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
