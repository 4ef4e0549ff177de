"""Starting, resuming and stopping runs.

The trainer always runs as its own process in its own session, writing only
to its run directory: closing the terminal, an SSH drop or quitting the app
never kills it. In the foreground the launcher follows metrics.jsonl and
turns Ctrl-C into a graceful stop; with --detach it returns once the trainer is past its data checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Config, check_override, config_from_dict, save_config
from engine.detached import spawn_detached
from engine.errors import EXIT_OK, EXIT_RUN_FAILED, DataError, UserError, shell_word
from engine.rundir import (ADAPTER_DIR, ADAPTER_FILES, CHECKPOINTS_DIR, CONFIG_FILE, FINAL_STATES, LOCK_FILE,
                           LOG_FILE, METRICS_FILE, STATUS_FILE, STATUS_LOCK_FILE, STOP_REQUEST_FILE, MetricsTail,
                           LaunchStart, RunLock, adapter_problem, check_remote_code, checkpoint_lookalikes, checkpoint_step,
                           create_request_file, disk_full_path, format_record, load_status, lock_held, pid_alive,
                           planned_steps, process_start, read_status, require_run_dir, trainer_pid, write_status)
from engine.settings import RUNS_ENV, runs_root
from engine.train.signals import STOP_SIGNALS
from engine.wrap import fit

if TYPE_CHECKING:
    from engine.estimate.model_config import ConfigJson
    from engine.train.resume_check import TokensMade


@dataclass
class RunHandle:
    run_dir: Path
    pid: int
    process: subprocess.Popen | None = None
    notes: list[str] = field(default_factory=list)  # what a resume changed or skipped, for the user


def check_inputs(cfg: Config, *, read_data: bool = True) -> dict[str, str]:
    """Fails fast, in the launching process, on a bad model path or unreadable data. Returns the revision of each hub
    dataset read ({id: revision}, check_data's). read_data False: every row is left to a caller that reads them
    itself, as the trainer does (a sweep's start makes its examples' tokens: one read of a hub dataset); {}."""
    from engine.data.formats import check_dataset_found
    from engine.model import check_model_reachable

    from engine.estimate.model_config import find_config_json

    check_model_reachable(cfg.model)
    found = find_config_json(cfg.model)   # read once, for both checks below
    _check_text_decoder(found)
    check_lora_for_model(cfg, found)
    check_dataset_found(cfg.dataset)  # a path not there, said with where it was looked for (beside the config too)
    return check_data(cfg) if read_data else {}


def check_data(cfg: Config, *, local_only: bool = False) -> dict[str, str]:
    """Every row of dataset.path and dataset.validation_path read as the trainer reads them: a broken line is
    refused here. local_only: a hub dataset is left for the run to read (a dry run downloads nothing). Returns the
    revision of each hub dataset read ({id: revision}, engine.hub.read_from), for a caller that records it."""
    from engine.data import read_rows
    from engine.data.formats import source_files

    revisions: dict[str, str] = {}
    for path in filter(None, (cfg.dataset.path, cfg.dataset.validation_path)):
        if source_files(path) or not local_only:
            read_rows(path, cfg.dataset.format, revisions=revisions)
    return revisions


def _check_text_decoder(found: ConfigJson) -> None:
    """A multimodal checkpoint the trainer would load with its tower is refused here, before the run starts detached
    (engine.estimate.multimodal: the rule the estimate and the trainer's load apply)."""
    from engine.estimate.multimodal import check_text_decoder

    check_text_decoder(found.config, found.where or found.name)


def check_lora_for_model(cfg: Config, found: ConfigJson) -> None:
    """The lora settings against the model's config.json (`found`): peft refuses a module name the model does not
    have, or dropout on a mixture's experts, only once the trainer has loaded the model (minutes, tens of GB),
    detached."""
    if cfg.lora.target_modules == "all-linear" and not cfg.lora.dropout:
        return
    from engine.estimate.params import check_expert_dropout, lora_targets

    try:
        arch = found.info().arch
    except UserError:
        if cfg.lora.target_modules != "all-linear":
            raise
        return   # shapes unreadable (no decoder's keys) but no names to check: the trainer's own check is left
    lora_targets(arch, cfg.lora.target_modules)
    check_expert_dropout(arch, cfg.lora)


def check_run_name(name: str) -> None:
    """run_name names one directory inside the runs root (the config's rule; a Config built in code meets it here)."""
    from engine.config import run_name_problem

    problem = run_name_problem(name)
    if problem:
        raise UserError(problem, fix="runs_dir says where runs are created")


def check_run_dir_name(rd: Path) -> None:
    """A --run-dir's folder name is the run's name (config.yaml's run_name, which the trainer re-reads): one the
    trainer refuses (a control character, too long) is refused here, before the detach."""
    from engine.config import run_name_problem

    problem = run_name_problem(rd.name)
    if problem:
        raise UserError(f"--run-dir: the folder's name is the run's name, and {problem.removeprefix('run_name: ')}",
                        fix="give --run-dir a folder of another name")


def check_outside_runs(rd: Path) -> None:
    """A --run-dir is no folder inside another run's (its checkpoints, adapter or any: its resume then counts or
    deletes the new run's files, or refuses them) nor inside a sweep's (whose readers take it for a trial)."""
    from engine.sweep.sweepdir import is_sweep_dir

    for p in rd.parents:
        if (p / CONFIG_FILE).is_file() and ((p / STATUS_FILE).is_file() or (p / LOCK_FILE).exists()):
            raise UserError(f"--run-dir {rd}: inside the run directory {p}",
                            fix=f"give --run-dir a folder outside it, such as {p.parent / (rd.name + '-run')}")
        if is_sweep_dir(p):
            raise UserError(f"--run-dir {rd}: inside the sweep directory {p}, where only its trials are made",
                            fix=f"give --run-dir a folder outside it, such as {p.parent / rd.name}")


def fitted_name(stem: str, tail: str = "") -> str:
    """A folder name made from a file's or model's name (stem) and a tail (its time), one the trainer accepts as
    run_name with room for the next free name's "-2": control characters made '-', the stem cut to fit."""
    from engine.config import MAX_RUN_NAME_BYTES

    stem = "".join("-" if unicodedata.category(c) == "Cc" or c == "/" else c for c in stem)
    room = MAX_RUN_NAME_BYTES - len(tail.encode()) - len(_NEXT_NAME_ROOM)
    return stem.encode()[:max(room, 1)].decode(errors="ignore") + tail


_NEXT_NAME_ROOM = "-99"


def check_new_run_dir(rd: Path, *, flag: str = "--run-dir", lock_file: str = LOCK_FILE) -> None:
    """A run (or sweep: flag --sweep-dir, its own lock file) starts only in a new or empty folder (a lock file left by
    a launcher aside): no user's file is mixed into a run or overwritten by one."""
    if rd.exists() and not rd.is_dir():
        raise UserError(f"{flag} {rd}: is a file, not a folder", fix=f"give {flag} a new or empty folder")
    if rd.is_dir() and any(p.name != lock_file for p in rd.iterdir()):
        raise UserError(f"{rd}: {'run' if flag == '--run-dir' else 'sweep'} directory exists and is not empty",
                        fix=f"choose another {flag}" + (", or `lorapilot train --resume` it" if flag == "--run-dir"
                                                        else ""))


def make_new_dir(rd: Path, *, flag: str = "--run-dir") -> None:
    """Creates the folder the user named (parents too); one under a file, or unwritable, is their input."""
    try:
        rd.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {rd}: cannot create it ({e.strerror})",
                        fix=f"give {flag} a new or empty folder") from None


def claim_new_dir(root: Path, base: str) -> Path:
    """A new folder named base (base-2, ...) in the runs root, made there and returned.

    mkdir is the claim: of two launchers started in the same second, the second takes the next name instead of
    failing (a check for the name before making it left a window where both saw it free). A runs root that cannot
    hold folders (under a file, unwritable) names runs_dir and $LORAPILOT_RUNS, where it came from."""
    from engine.config import MAX_RUN_NAME_BYTES

    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        # a name at the limit, made longer by its suffix, is cut instead: the trainer refuses a longer run_name
        cut = base.encode()[:MAX_RUN_NAME_BYTES - len(suffix)].decode(errors="ignore")
        path = root / (cut + suffix)
        try:
            path.mkdir(parents=True)
            return path.resolve()
        except FileExistsError:
            n += 1
        except OSError as e:
            raise UserError(f"runs root {root}: cannot create {path.name} in it ({e.strerror})",
                            fix=f"set runs_dir in the config (or ${RUNS_ENV}) to a folder you can write") from None


def new_run_dir(cfg: Config, config_name: str | None = None) -> Path:
    root = runs_root(cfg.runs_dir)
    if cfg.run_name is not None:
        check_run_name(cfg.run_name)
    base = cfg.run_name or fitted_name(config_name or Path(cfg.model.rstrip('/')).name,
                                       f"-{time.strftime('%Y%m%d-%H%M%S')}")
    return claim_new_dir(root, base)


def _spawn(run_dir: Path, resume: bool, nproc: int, lock: RunLock, trust_remote_code: bool) -> subprocess.Popen:
    """Starts the trainer, handing it the run lock; the caller releases its own copy afterwards."""
    from engine.train.distributed import launch_command

    cmd = launch_command(str(run_dir), nproc, resume) + (["--trust-remote-code"] if trust_remote_code else [])
    # The signals the trainer turns into a graceful stop stay blocked from its birth until its handlers exist, so
    # a stop in its first second waits for them instead of killing it. torchrun's agent keeps the default mask.
    proc = spawn_detached(cmd, run_dir / LOG_FILE, pass_fds=(lock.fd,),
                          blocked_signals=STOP_SIGNALS if nproc <= 1 else (),
                          PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **{RunLock.ENV: str(lock.fd)})
    lock.record_holder(proc.pid)
    return proc


def _started(rd: Path, proc: subprocess.Popen) -> None:
    """Who the trainer is: its pid and that process's start time, which `stop` checks before signalling."""
    write_status(rd, pid=proc.pid, pid_start=process_start(proc.pid))


def start_run(cfg: Config, *, run_dir: str | Path | None = None, config_name: str | None = None,
              max_steps: int | None = None, check: bool = True, sweep_trial: bool = False) -> RunHandle:
    """Writes the resolved config into a new run directory and starts the trainer there. sweep_trial: the sweep's
    driver starts a trial, whose folder is made in the sweep's."""
    if max_steps is not None:
        cfg.training.max_steps = check_override("training.max_steps", max_steps, flag="--max-steps")
    # The trainer re-reads config.yaml and refuses what the validator refuses: check it all here, before
    # anything is detached (a run that fails after `train --detach` returned 0 is an error nobody sees).
    config_from_dict(cfg.to_dict(), source=config_name or "config")
    if check:
        check_inputs(cfg)
    if run_dir:
        rd = Path(run_dir).resolve()
        check_run_dir_name(rd)
        if not sweep_trial:
            check_outside_runs(rd)
        # Refused before the lock file is made: a folder of the user's keeps no trainer.lock from a refused run.
        check_new_run_dir(rd)
        make_new_dir(rd)
    else:
        rd = new_run_dir(cfg, config_name)
    # The lock first: of two launchers racing for one directory, the second is refused before writing anything.
    lock = RunLock.acquire(rd)
    try:
        check_new_run_dir(rd)
        from engine.train.distributed import num_processes

        nproc = num_processes(cfg.training.num_gpus)
        cfg.run_name = rd.name
        try:
            save_config(cfg, rd / CONFIG_FILE)
            write_status(rd, state="starting", step=0, max_steps=0, error=None, world_size=nproc)
        except OSError as e:
            full = disk_full_path(e, rd)
            if full is None:
                raise
            # Nothing started: the folder is left as it was found (empty but for the lock), to start in again.
            for name in (CONFIG_FILE, STATUS_FILE, STATUS_LOCK_FILE):
                (rd / name).unlink(missing_ok=True)
            raise UserError(f"{rd}: no space left on device to create the run in" + (f" ({full})" if full != str(rd)
                                                                                     else ""),
                            fix="free space on that disk, then start it again (or give --run-dir on another disk)"
                            ) from None
        # The config is the user's own file here: its trust_remote_code is their word.
        proc = _spawn(rd, resume=False, nproc=nproc, lock=lock, trust_remote_code=cfg.trust_remote_code)
        _started(rd, proc)
    finally:
        lock.release()
    return RunHandle(rd, proc.pid, proc)


def resume_run(run_dir: str | Path, *, trust_remote_code: bool = False) -> RunHandle:
    """Continues a run from its newest intact checkpoint, under its lock; `trust_remote_code`: the user
    passed --trust-remote-code on this command line."""
    rd = require_run_dir(Path(run_dir).resolve())
    # Held by a live trainer even when status.json was deleted or rewritten.
    lock = RunLock.acquire(rd)
    try:
        notes = []
        try:
            status = load_status(rd) or {}
        except DataError as e:   # the resumed trainer writes a new one: this is its repair, so a note, not a refusal
            status = {}
            notes.append(f"{e.message}; the resumed run writes a new one")
        # A copy of a live run's directory names the original's trainer: not this run's, which nobody trains.
        if status.get("state") not in FINAL_STATES and trainer_pid(rd, status) is not None:
            raise UserError(f"{rd}: the run is still {status.get('state')} (pid {status.get('pid')})",
                            fix=f"stop it first: lorapilot stop {shell_word(rd)}")
        checked = check_resume(rd, status, trust_remote_code=trust_remote_code)
        notes += checked.notes
        ckpt, nproc = checked.ckpt, checked.nproc
        (rd / STOP_REQUEST_FILE).unlink(missing_ok=True)
        try:
            # The step it resumes from, not the stopped life's: the monitor shows it while the trainer loads.
            write_status(rd, state="starting", error=None, hint=None, user_error=None, world_size=nproc,
                         step=checkpoint_step(ckpt) if ckpt else 0)
        except OSError as e:
            if disk_full_path(e, rd) is None:
                raise
            raise UserError(f"{rd}: no space left on device to resume the run in",
                            fix="free space on that disk, then resume it again") from None
        proc = _spawn(rd, resume=True, nproc=nproc, lock=lock, trust_remote_code=checked.cfg.trust_remote_code)
        _started(rd, proc)
    finally:
        lock.release()
    return RunHandle(rd, proc.pid, proc, notes)


@dataclass
class ResumeCheck:
    """What check_resume found: the run's config (trust_remote_code resolved), the checkpoint the trainer continues
    from (None: it starts at step 0), its processes, and the notes for the user (what the resume changes or skips)."""
    cfg: Config
    ckpt: str | None
    nproc: int
    notes: list[str]


def check_resume(rd: Path, status: dict, *, trust_remote_code: bool = False,
                 tokens: TokensMade | None = None) -> ResumeCheck:
    """Everything `train --resume` refuses before it starts the trainer, writing nothing: the run's config against
    its checkpoint, its steps, its model and data as a start checks them (check_inputs), and what the trainer would
    refuse after its load (refuse_before_load). resume_run calls it under the run's lock; `sweep --resume` calls it
    for each trial it will resume, in the foreground. `status`: the run's status.json ({} when unreadable). tokens: the
    caller's tokens_now of a config that makes the same examples (a sweep's base, for its trials), else made here where
    the checkpoint records its tokens: the rows are read and tokenized once, not read by check_data and again by
    refuse_before_load (minutes each, on a large dataset)."""
    from engine.config import load_config
    from engine.train.distributed import num_processes
    from engine.train.resume_check import (config_changes, make_tokens, max_steps_behind, refuse_before_load,
                                           resumed_checkpoint, saved_record)

    notes: list[str] = []
    cfg = load_config(rd / CONFIG_FILE)
    cfg.trust_remote_code = check_remote_code(cfg, rd, trust_remote_code, f"train --resume {shell_word(rd)}")
    if kept := checkpoint_lookalikes(rd):
        raise UserError(f"{kept[0]}: transformers counts this folder as one of the run's checkpoints, and deletes "
                        f"the oldest of them once there are more than {cfg.training.save_total_limit} "
                        "(training.save_total_limit)",
                        fix=f"move it out of {rd / CHECKPOINTS_DIR} to keep it, then resume")
    ckpt, skipped = resumed_checkpoint(rd)   # the trainer's choice (an unsafe pickle skipped too): one for every check
    notes += [f"checkpoint skipped, its files are damaged: {why}" for why in skipped]
    nproc = num_processes(cfg.training.num_gpus)
    if ckpt and (behind := max_steps_behind(cfg.training.max_steps, ckpt, rd / CONFIG_FILE)):
        raise behind
    finished = finished_all_steps(status, cfg.training.max_steps, ckpt)
    # Killed while saving its adapter (or the adapter cut off since): the last checkpoint holds one to save.
    holds_adapter = ckpt is not None and all((Path(ckpt) / name).is_file() for name in ADAPTER_FILES)
    unsaved = adapter_problem(rd / ADAPTER_DIR) if finished and holds_adapter else None
    if unsaved and ckpt:
        notes.append(f"the run trained all its steps, but its adapter is not whole ({unsaved}): the resume "
                     f"saves it from {Path(ckpt).name}, without training")
        finished = None
    if not ckpt and not finished and (status.get("step") or 0) > 0:   # checkpoints/ deleted to free the disk
        notes.append(f"no checkpoint to continue from (the run was at step {status['step']}): "
                     "training starts again at step 0")
    if finished:
        raise UserError(f"{rd}: nothing left to train: {finished}",
                        fix=f"to train longer, raise training.max_steps in {rd / CONFIG_FILE}, then resume")
    # The model and data as a start checks them: a data file deleted or moved since was refused as data that
    # "changed", or (no checkpoint, or one without lorapilot's record) failed in the trainer after the detach.
    made = None
    if ckpt and isinstance((saved_record(ckpt) or {}).get("tokens"), dict):   # refuse_before_load compares tokens
        # one read of the rows, as the trainer's load reads them: its tokens, and the hub revisions it read
        check_inputs(cfg, read_data=False)
        try:
            made = (tokens and tokens.of(cfg)) or make_tokens(cfg)
        except UserError:
            # said as before, where the tokens came after these: a broken row, then the config changed since
            config_changes(ckpt, cfg, rd / CONFIG_FILE, nproc, check_data(cfg))
            raise
        revisions = made.revisions
    else:
        revisions = check_inputs(cfg)
    if ckpt:
        notes += [f"config change applied: {c}" for c in config_changes(ckpt, cfg, rd / CONFIG_FILE, nproc, revisions)]
        # what the trainer would refuse after its load, said here (its tokens, its adapter)
        notes += refuse_before_load(rd, cfg, ckpt, tokens=made.record if made else None)
    return ResumeCheck(cfg, ckpt, nproc, notes)


def finished_all_steps(status: dict, configured_max_steps: int, ckpt: str | None) -> str | None:
    """Why a resume from ckpt would have nothing to train, or None.

    transformers resumed from a checkpoint at max_steps trains one step past it, so this is refused before
    starting. A config edited to more steps than the run planned is a real continuation. Where status.json
    does not say (missing, corrupt), the checkpoint's own trainer_state.json does. A run that trained all its
    steps and has no checkpoint left (deleted to free the disk) would be trained again from step 0: refused too.
    """
    planned = planned_steps(status, ckpt)
    if not planned or configured_max_steps > planned:
        return None
    if not ckpt:  # its checkpoints deleted: a resume would train the finished run again from step 0
        trained = status.get("step")
        done = status.get("state") == "done" or isinstance(trained, int) and trained >= planned
        return f"it trained all {planned} steps, and has no checkpoint left to continue from" if done else None
    at = checkpoint_step(ckpt)
    return f"its last checkpoint is at step {at} of {planned}" if at >= planned else None


def request_stop(run_dir: str | Path) -> bool:
    """Asks the trainer to finish its step, checkpoint and stop. False if it is not running."""
    rd = Path(run_dir)
    status = read_status(rd)
    if status is None:
        # status.json missing or corrupt, so no pid to check: the run lock still says whether a trainer runs, and
        # every rank polls the stop file, so asking needs no pid. Before, a running trainer was "not running".
        if not lock_held(rd):
            return False
        create_request_file(rd / STOP_REQUEST_FILE)
        return True
    # Only this run's trainer: a dead run's pid may belong to anything now, a copied run's is the original's.
    pid = trainer_pid(rd, status)
    if status.get("state") in FINAL_STATES or pid is None:
        return False
    # Every rank polls the file (and agrees on the step to stop at); it also works where signals
    # cannot reach, such as another container sharing the disk.
    create_request_file(rd / STOP_REQUEST_FILE)
    if (status.get("world_size") or 1) > 1:
        return True  # SIGTERM to torchrun would kill the ranks before they checkpoint
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def train_command(config_path: str, *, detach: bool = True) -> str:
    """The command that trains this config, as a shell reads it: a path with a space is quoted (a leading ~ too:
    lorapilot expands it itself, engine.settings.user_path)."""
    return f"lorapilot train {shell_word(config_path)}" + (" --detach" if detach else "")


# How long `train --detach` waits for the trainer to read and check the data (a tokenizer to download, millions of
# rows to tokenize) before it returns anyway, the run going on.
DATA_CHECK_WAIT_S = 15 * 60
WAITING_FOR_DATA = "waiting while the trainer reads and checks the data (Ctrl-C leaves the run going)"


def past_data_checks(status: dict) -> bool:
    """The trainer has read, tokenized and checked the data (engine.train.run load: its pre-flight, nothing left to
    train): it loads the model now, or is further on. A resumed run's status keeps its last life's phase while
    'starting', so the phase counts only while loading."""
    state = status.get("state")
    if state in (None, "starting", "loading"):
        return state == "loading" and status.get("phase") == "model"
    return True


def wait_for_data_checks(handle: RunHandle, out=None, poll_s: float = 0.2,
                         limit_s: float = DATA_CHECK_WAIT_S) -> int | None:
    """`train --detach` returns once the detached trainer is past its data checks, so that data that cannot train
    (every answer of weight 0, every row too long) is said by the command the user typed, not found later in
    train.log; the data is tokenized once, by the trainer. Waits on status.json's state, not on seconds. Returns the
    trainer's exit code where it ended meanwhile (failed: its status.json says why; or done, a run that short), else
    None: past its checks, still reading after limit_s, or Ctrl-C, the run going on in the background."""
    out = out or sys.stdout   # at the call: a caller's (pytest's) stdout replaced since the import
    print(WAITING_FOR_DATA, file=out, flush=True)
    deadline = time.monotonic() + limit_s
    try:
        while True:
            rc = handle.process.poll() if handle.process else (None if pid_alive(handle.pid) else 0)
            if rc is not None:
                return rc
            st = read_status(handle.run_dir) or {}
            # It records its end (failed, or a run so short it is done), then exits: waited for, for its exit code.
            state = st.get("state")
            if past_data_checks(st) and state not in FINAL_STATES:
                return None
            if time.monotonic() > deadline:
                if state in FINAL_STATES:
                    return EXIT_RUN_FAILED if state == "failed" else EXIT_OK
                print(fit(f"still reading the data after {limit_s / 60:g} minutes: it goes on in the background"),
                      file=out, flush=True)
                return None
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"left running (pid {handle.pid}) while it checks the data: the monitor says whether it trains",
              file=out, flush=True)
        return None


# What the foreground train says on Ctrl-C; wrapped for 80 columns (a terminal cut it at 'le' / 'ave').
STOPPING = fit("stopping: finishing the current step and saving a checkpoint (Ctrl-C again to leave it running in "
               "the background)")


def follow(handle: RunHandle, out=sys.stdout, poll_s: float = 0.5, place=None) -> int:
    """Prints progress lines while the trainer runs; Ctrl-C asks for a graceful stop. `place` (rundir.RunPlace): the
    run directory held open since the start; moved while the run trains, it is followed where it went (its records,
    the stop request, the words on leaving it running), as the trainer's own end is (cli._report_end)."""
    tail = MetricsTail(handle.run_dir)
    launch = LaunchStart()
    stopping = False

    def read_new() -> None:
        moved = place.moved() if place is not None else None
        if moved is not None and moved.now is not None and moved.now != handle.run_dir:
            handle.run_dir = moved.now
            tail.path = moved.now / METRICS_FILE
        for rec in tail.read_new():
            line = format_record(rec, launch.first(rec))
            if line:   # a finding's prose wrapped at words for an 80-column terminal, not cut by it mid-word
                print(fit(line), file=out, flush=True)

    def on_int(signum, frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\n" + STOPPING, file=out, flush=True)
            request_stop(handle.run_dir)
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_int)
    try:
        while True:
            read_new()
            rc = handle.process.poll() if handle.process else (None if pid_alive(handle.pid) else 0)
            if rc is not None:
                read_new()
                return rc
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"left running: pid {handle.pid}; `lorapilot monitor {shell_word(handle.run_dir)}` to watch", file=out)
        return 0
    finally:
        signal.signal(signal.SIGINT, old)
