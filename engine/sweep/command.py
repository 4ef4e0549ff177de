"""`lorapilot sweep CONFIG`: short trials over learning rate x LoRA r, the best one's settings kept.

    lorapilot sweep CONFIG [--lr 1e-4,2e-4,5e-4] [--r 4,8,16] [--steps 100] [--budget-minutes M]
                    [--price-per-hour P] [--parallel N] [--yes] [--detach] [--apply OUT.yaml]
    lorapilot sweep SWEEP_DIR [--apply OUT.yaml]    the result of a sweep (and the winner's config)
    lorapilot sweep --resume SWEEP_DIR              a sweep whose driver is gone goes on (engine/sweep/resume.py)
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from engine.errors import EXIT_OK, EXIT_RUN_FAILED, UserError, shell_word
from engine.overwrite import may_overwrite
from engine.rundir import loss_text
from engine.settings import runs_root, visible_device_mask
from engine.sweep.plan import DEFAULT_LRS, DEFAULT_RS, DEFAULT_STEPS, DEMO_LRS, STOP_ON, lr_text
from engine.settings import demo_config_word, user_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="CONFIG|SWEEP_DIR", type=user_path,
                        help="the base config to sweep, or a sweep directory to report on (or --apply)")
    parser.add_argument("--lr", metavar="LIST", help="learning rates, comma-separated (default: "
                        + ",".join(lr_text(x) for x in DEFAULT_LRS) + "; for the embedded demo "
                        + ",".join(lr_text(x) for x in DEMO_LRS) + ")")
    parser.add_argument("--r", metavar="LIST", help="LoRA ranks, comma-separated; alpha = 2r (default: "
                        + ",".join(str(x) for x in DEFAULT_RS) + ")")
    parser.add_argument("--steps", type=int,
                        help=f"optimizer steps per trial, rounded to a multiple of 3 (default {DEFAULT_STEPS})")
    parser.add_argument("--budget-minutes", type=float, metavar="M",
                        help="fit the sweep into M minutes: shorter trials first, then fewer")
    parser.add_argument("--price-per-hour", type=float, metavar="P", help="the machine's price per hour, for the cost")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="trials at once (default: one per visible GPU; 1 on one GPU or the CPU)")
    parser.add_argument("--gpu", metavar="NAME", help="GPU preset for the time estimate (default: the GPU present)")
    parser.add_argument("--no-halving", action="store_true",
                        help="run every trial to the end (still stopping on nan_loss / loss_explosion)")
    parser.add_argument("--sweep-dir", metavar="DIR", type=user_path,
                        help="directory to create (default: runs/sweep-<name>-<time>)")
    parser.add_argument("--yes", "-y", action="store_true", help="start without asking (scripts)")
    parser.add_argument("--detach", action="store_true", help="start the sweep in the background and return at once")
    parser.add_argument("--dry-run", action="store_true", help="show the plan and exit")
    parser.add_argument("--apply", metavar="OUT.yaml", type=user_path,
                        help="write the winner's config (base config, winning lr and r, alpha = 2r) to OUT.yaml")
    parser.add_argument("--force", action="store_true", help="replace the --apply file if it exists")
    parser.add_argument("--resume", action="store_true",
                        help="go on with a sweep whose driver is gone (preempted, stopped): `sweep --resume SWEEP_DIR`, "
                             "or the sweep's own command line with --resume (its --sweep-dir), checked against it")


def visible_devices() -> list[str]:
    """The GPUs trials may be spread over: CUDA_VISIBLE_DEVICES' entries, else every GPU NVML sees."""
    mask = visible_device_mask()
    if mask is not None:
        return mask
    from engine.gpu import gpu_count
    return [str(i) for i in range(gpu_count())]  # no NVML, no driver: none (engine.gpu's "no GPU" state)


def _check_numbers(a) -> None:
    if a.steps is None or a.steps < 3:
        raise UserError(f"--steps: {a.steps} is too few; a trial needs at least 3 steps", fix="--steps 100 is usual")
    if a.budget_minutes is not None and not a.budget_minutes > 0:
        raise UserError(f"--budget-minutes: {a.budget_minutes:g} must be more than 0")
    if a.price_per_hour is not None and not a.price_per_hour >= 0:
        raise UserError(f"--price-per-hour: {a.price_per_hour:g} must be 0 or more")
    if a.parallel is not None and a.parallel < 1:
        raise UserError(f"--parallel: {a.parallel} must be 1 or more")


def run(a: argparse.Namespace) -> int:
    if not a.target:
        raise UserError("sweep needs a CONFIG (or a SWEEP_DIR to report on)",
                        fix=f"try: lorapilot sweep {demo_config_word()} --lr 1e-3,3e-3 --r 4,8 --steps 12")
    target = Path(a.target)
    if a.resume:
        return _resume(target, a)
    if target.is_dir():
        return _existing(target, a)
    return _new(target, a)


# ---------------------------------------------------------------- an existing sweep

def _existing(sweep_dir: Path, a) -> int:
    from engine.sweep.report import applied_text, apply_winner, print_report
    from engine.sweep.summary import summarize_sweep
    from engine.sweep.sweepdir import is_sweep_dir, read_sweep

    if not is_sweep_dir(sweep_dir):
        raise UserError(f"{sweep_dir}: a directory but not a sweep directory (no sweep.json)",
                        fix="give a config file to start a sweep, or a directory made by `lorapilot sweep`")
    summary = summarize_sweep(sweep_dir)
    if summary["state"] not in ("done", "stopped", "failed"):
        if a.apply:
            raise UserError(f"{sweep_dir}: the sweep is {summary['state']}; no winner yet",
                            fix=f"resume it: lorapilot sweep --resume {shell_word(sweep_dir)}" if summary["state"] == "lost"
                            else "wait for it to finish, then run this again")
        _print_progress(summary)
        return EXIT_OK
    sweep = read_sweep(sweep_dir, complete=True)
    if a.apply:
        may_overwrite(Path(a.apply), a.force, flag="--apply", example="best.yaml")
        print(applied_text(sweep, apply_winner(sweep, a.apply, replace=True)))
        return EXIT_OK
    print_report(sweep)
    if sweep.get("state") in ("stopped", "failed") and any(
            t["state"] not in ("done", "stopped") or t.get("stopped_by") in ("user", "budget") for t in sweep["trials"]):
        from engine.wrap import fit

        print(fit(f"trials were cut short or never started: lorapilot sweep --resume {shell_word(sweep_dir)} runs them"))
    return EXIT_OK


# ---------------------------------------------------------------- a sweep resumed

def _resume(target: Path, a) -> int:
    """`sweep --resume SWEEP_DIR`, or `sweep CONFIG ... --sweep-dir DIR --resume` (the command that started it, checked
    against it): the trials without their answer go on (engine.sweep.resume), under a new driver."""
    from engine.sweep.plan import parse_lrs, parse_rs
    from engine.config import config_from_dict
    from engine.sweep.resume import (check_same_data, check_same_sweep, check_same_tokens, check_trials_resume,
                                     prepare_resume, resume_text)
    from engine.sweep.sweepdir import SWEEP_STOP_FILE, SweepLock, is_sweep_dir, read_sweep, write_sweep
    from engine.wrap import fit

    config = None if target.is_dir() else target
    if config is not None and not a.sweep_dir:
        raise UserError(f"--resume with a config ({target}) needs the sweep's folder",
                        fix="add --sweep-dir SWEEP_DIR, or resume it alone: lorapilot sweep --resume SWEEP_DIR")
    sweep_dir = (Path(a.sweep_dir) if config is not None else target).resolve()
    if config is not None and not is_sweep_dir(sweep_dir) and not (sweep_dir.is_dir() and any(sweep_dir.iterdir())):
        # A pod's start-up script runs the same command every time: the first time, there is no sweep to resume yet.
        print(f"no sweep in {sweep_dir} yet: starting it")
        return _new(config, a)
    if not is_sweep_dir(sweep_dir):
        raise UserError(f"{sweep_dir}: not a sweep directory (no sweep.json); nothing to resume",
                        fix="give the folder `lorapilot sweep` made (runs/sweep-<config>-<time>)")
    # Whether its driver lives, the sweep's lock says (a pid in sweep.json may be another process's on a new pod).
    try:
        SweepLock.acquire(sweep_dir).release()
    except UserError:
        raise UserError(f"{sweep_dir}: the sweep is running (its driver holds the folder); nothing to resume",
                        fix=f"lorapilot sweep {shell_word(sweep_dir)} shows its progress; lorapilot stop {shell_word(sweep_dir)} "
                            "stops it")
    sweep = read_sweep(sweep_dir, complete=True)
    cut = sum(t.get("stopped_by") == "budget" for t in sweep["trials"])
    if sweep.get("state") == "done" and not (cut and a.budget_minutes):
        raise UserError(f"{sweep_dir}: the sweep is done; nothing to resume",
                        fix=f"the budget cut {cut} trial{'s' * (cut != 1)} short: give it more time with "
                            f"lorapilot sweep --resume {shell_word(sweep_dir)} --budget-minutes M (the time spent counts)" if cut
                        else f"lorapilot sweep {shell_word(sweep_dir)} shows the result; a new sweep tries other settings")
    check_same_sweep(sweep, sweep_dir, config, parse_lrs(a.lr) if a.lr else None, parse_rs(a.r) if a.r else None,
                     a.steps, (not a.no_halving) if a.no_halving else None)
    check_same_data(sweep, sweep_dir)
    if config is None and sweep["base_config"].get("trust_remote_code"):
        # The config in sweep.json is a file in a folder: its trust_remote_code is honoured only on the user's word.
        raise UserError(f"{sweep_dir}: the sweep's config sets trust_remote_code: true, which lorapilot does not "
                        "honour from a sweep folder on its own",
                        fix=f"resume it with your config: lorapilot sweep YOUR.yaml --sweep-dir {shell_word(sweep_dir)} --resume")
    base = config_from_dict(sweep["base_config"], source=f"{sweep_dir}/sweep.json base_config")
    # the tokens after the files: a data file edited is said by name, above
    notes, tokens = check_same_tokens(sweep, sweep_dir, base)
    _check_numbers(argparse.Namespace(**{**vars(a), "steps": 3}))   # --budget-minutes, --parallel
    if a.budget_minutes is not None:   # a new budget for the whole sweep: the time it already ran counts
        sweep["plan"]["budget_s"] = a.budget_minutes * 60
    # This machine's GPUs (a preempted pod may come back with others), by a new sweep's rule.
    devices = visible_devices()
    lanes = a.parallel or max(1, len(devices))
    if (lanes, devices) != (sweep["lanes"], sweep.get("devices")):
        print(fit(f"runs    {lanes} at once" + (f" over GPUs {', '.join(devices)}" if devices else " on the CPU")
                  + f" (before: {sweep['lanes']}" + (f" over GPUs {', '.join(sweep['devices'])})"
                                                      if sweep.get("devices") else ")")))
    sweep.update(lanes=lanes, devices=devices)
    sweep["plan"]["lanes"] = lanes
    lock = SweepLock.acquire(sweep_dir)   # held from here to the new driver (a second resume is refused)
    try:
        lines = prepare_resume(sweep_dir, sweep, time.time())
        # what each trial resumed in its folder would refuse, said now, not as a trial failed in the background
        notes += check_trials_resume(sweep_dir, sweep, base.trust_remote_code, tokens)
        print(fit(resume_text(sweep, lines)))
        for note in notes:
            print(fit(f"note    {note}"))
        if a.dry_run:
            return EXIT_OK
        if a.apply:
            may_overwrite(Path(a.apply), a.force, flag="--apply", example="best.yaml")
            sweep.update(apply_path=str(Path(a.apply).resolve()), apply_replace=Path(a.apply).exists())
        else:
            # A file named in the sweep's folder is not one this command names: a folder from someone else (or an
            # edited sweep.json) had the driver replace any file of the user's with the winner's config.
            was = sweep.get("apply_path")
            sweep.update(apply_path=None, apply_replace=False)
            if was:
                print(fit(f"apply   the winner's config is written only where this command says: add --apply "
                          f"{shell_word(was)} to write it there"))
        if not _confirmed(a, "Resume the sweep?"):
            print("not resumed")
            return EXIT_OK
        (sweep_dir / SWEEP_STOP_FILE).unlink(missing_ok=True)   # the stop that ended it asked nothing of this run
        write_sweep(sweep_dir, sweep)
        from engine.sweep.driver import spawn_driver

        proc = spawn_driver(sweep_dir, lock)
    finally:
        lock.release()
    return _started(sweep_dir, proc, a)


def _print_progress(summary: dict) -> None:
    left = summary.get("remaining_s")
    print(f"sweep {summary['name']}: {summary['state']}, {summary['elapsed_s'] or 0:.0f} s so far"
          + (f", {_duration(left)} left at most" if left is not None else ""))
    for t in summary["trials"]:
        ev = loss_text(t["eval_loss"])
        print(f"  {t['id']:<18} {t['state']:<10} step {t['step']}/{t['max_steps']}  eval {ev}"
              + (f"  ({t['stopped_by']})" if t["stopped_by"] else ""))
    if summary["best"]:
        b = summary["best"]
        print(f"best so far: {b['id']} eval loss {loss_text(b['eval_loss'])} at step {b['step']}")
    if summary["state"] == "lost":
        from engine.wrap import fit

        print(fit(f"its driver is gone (the machine restarted?): lorapilot sweep --resume {shell_word(summary['sweep_dir'])} "
                  "goes on"))


# ---------------------------------------------------------------- a new sweep

def _duration(seconds: float) -> str:
    from engine.estimate.timing import duration_text
    return duration_text(seconds)  # the wording of `lorapilot estimate` and the wizard


def _new(config_path: Path, a) -> int:
    from engine.config import load_config
    from engine.estimate import detect_gpu, get_gpu
    from engine.estimate.dataset_size import dataset_sizes
    from engine.sweep.cost import trial_time_model
    from engine.sweep.plan import fit_budget, grid, parse_lrs, parse_rs, round_steps, sweep_seconds, time_lanes

    if a.steps is None:
        a.steps = DEFAULT_STEPS
    _check_numbers(a)
    if a.sweep_dir:   # before the plan and the y/N: a yes to a folder already in use was then refused
        from engine.sweep.sweepdir import SWEEP_LOCK_FILE
        from engine.train.launch import check_new_run_dir

        check_new_run_dir(Path(a.sweep_dir).resolve(), flag="--sweep-dir", lock_file=SWEEP_LOCK_FILE)
    given_lrs, rs = (parse_lrs(a.lr) if a.lr is not None else None), parse_rs(a.r)
    cfg = load_config(config_path)
    lrs = given_lrs or parse_lrs(None, cfg.model)   # the default grid is the model's (the demo's own)
    a.requested_grid = {"learning_rate": lrs, "r": rs}   # before a budget drops any: what a resume is checked against
    trials = grid(lrs, rs)
    steps = round_steps(a.steps)
    from engine.data.formats import check_dataset_found

    check_dataset_found(cfg.dataset)   # before the plan: a dry run said nothing of a path the sweep then refused
    from engine.estimate.model_config import check_model_found

    check_model_found(cfg.model)   # likewise a model path that is not there (the estimate's own check)
    from engine.train.launch import check_data

    check_data(cfg, local_only=True)   # a broken line: the dry run showed a plan for data the sweep then refused
    devices = visible_devices()
    lanes = a.parallel or max(1, len(devices))
    gpu = get_gpu(a.gpu) if a.gpu else detect_gpu()
    n_train, n_val = dataset_sizes(cfg)
    if n_val == 0:
        raise UserError(f"{config_path}: the sweep ranks trials by eval loss, but the config holds no validation "
                        "examples", fix="set dataset.validation_split (0.05) or dataset.validation_path")
    from engine.estimate.dataset_size import lengths_of, local_examples

    # The trials' plans pack the real examples, where readable here; the same load makes sweep.json's tokens, below.
    data, tokenizer, _ = local_examples(cfg)
    lengths, val_lengths = lengths_of(data)
    model = trial_time_model(cfg, trials, gpu, n_train=n_train, n_val=n_val, lengths=lengths or None,
                             val_lengths=val_lengths or None)
    budget_s = a.budget_minutes * 60 if a.budget_minutes else None
    fitted = None
    if budget_s and model.seconds:
        fitted = fit_budget(len(trials), steps, budget_s, time_lanes(lanes, devices), model.seconds)
        trials, steps = trials[:fitted.n_trials], fitted.steps
    trial_s = model.seconds(steps) if model.seconds else None
    total_s = sweep_seconds(len(trials), trial_s, time_lanes(lanes, devices)) if trial_s else None
    plan = {"lanes": lanes, "gpu": model.gpu_name, "trial_s": round(trial_s, 1) if trial_s else None,
            "total_s": round(total_s, 1) if total_s else None,
            "cost": round(total_s / 3600 * a.price_per_hour, 2) if total_s and a.price_per_hour is not None else None,
            "price_per_hour": a.price_per_hour, "budget_s": budget_s,
            "budget_change": fitted.changed if fitted else None, "time_unknown_because": model.why_unknown,
            "time_basis": model.time_basis, "time_caveat": model.time_caveat,
            "download_bytes": model.download_bytes}
    from engine.wrap import fit

    print(fit(_plan_text(trials, steps, a.steps, lanes, devices, plan, not a.no_halving)))
    if a.dry_run:
        return EXIT_OK

    from engine.train.launch import check_inputs

    check_inputs(cfg, read_data=False)   # the rows are read once, below, as a trial's trainer reads them
    from engine.train.resume_check import make_tokens, tokens_of

    # The examples the trials train on, as tokens, and the hub datasets' revisions read: sweep.json records both, of
    # one load (a resume on other tokens or data is refused): the plan's, where it could read them here.
    made = tokens_of(cfg, data, tokenizer) if data is not None else make_tokens(cfg)
    revisions, tokens = made.revisions, made.record
    if a.apply:  # asked now, not found out when the sweep ends
        may_overwrite(Path(a.apply), a.force, flag="--apply", example="best.yaml")
    if not _confirmed(a):
        print("not started")
        return EXIT_OK
    from engine.data.fingerprint import data_record
    from engine.detached import sigterm_deferred

    # Before the deferral: it hashes every data file, and the app's quit waits for the data helper this runs in.
    data = data_record(cfg.dataset, revisions)
    # A SIGTERM (the app quitting ends the data helper this runs in) waits until the driver runs: cut in between,
    # the folder was left with no sweep.json (not a sweep to any command) or with one and no driver.
    with sigterm_deferred():
        sweep_dir, lock = _make_sweep_dir(cfg, config_path, a.sweep_dir)
        try:
            proc = _write_and_spawn(sweep_dir, lock, _sweep_record(sweep_dir, cfg, config_path, trials, steps, a,
                                                                   plan, devices, data, tokens), config_path)
        finally:
            lock.release()
    return _started(sweep_dir, proc, a)


def _write_and_spawn(sweep_dir: Path, lock, sweep: dict, config_path: Path):
    """The sweep's files written, then its driver started; a full disk refused with nothing started."""
    from engine.sweep.driver import spawn_driver
    from engine.sweep.sweepdir import BASE_CONFIG_FILE, SWEEP_FILE, write_sweep

    try:
        shutil.copyfile(config_path, sweep_dir / BASE_CONFIG_FILE)
        write_sweep(sweep_dir, sweep)
    except OSError as e:
        from engine.rundir import disk_full_path

        if disk_full_path(e, sweep_dir) is None:
            raise
        # Nothing started: the folder is left as a start that never began (its lock only), to start in again.
        for name in (BASE_CONFIG_FILE, SWEEP_FILE):
            (sweep_dir / name).unlink(missing_ok=True)
        raise UserError(f"{sweep_dir}: no space left on device to create the sweep in",
                        fix="free space on that disk, then start it again (or give --sweep-dir on another disk)"
                        ) from None
    return spawn_driver(sweep_dir, lock)


def _started(sweep_dir: Path, proc, a) -> int:
    """The driver is running: where to look (--detach), else its progress followed here."""
    if a.detach:
        print(f"sweep directory: {sweep_dir}\ndriver pid: {proc.pid}\n"
              f"progress: lorapilot sweep {shell_word(sweep_dir)}\nstop:     lorapilot stop {shell_word(sweep_dir)}")
        return EXIT_OK
    print(f"sweep directory: {sweep_dir} (driver pid {proc.pid}); Ctrl-C stops it gracefully", flush=True)
    return _follow(sweep_dir, proc, a)


def _plan_text(trials, steps: int, requested: int, lanes: int, devices: list[str], plan: dict,
               halving: bool) -> str:
    from engine.estimate.timing import download_words
    from engine.sweep.plan import rungs

    lrs = sorted({t.learning_rate for t in trials})
    rs = sorted({t.r for t in trials})
    rounded = f" (--steps {requested} rounded to a multiple of 3)" if steps != requested and not plan["budget_change"] \
        else ""
    if len(trials) == len(lrs) * len(rs):
        what = f"{len(trials)} trials over lr {', '.join(lr_text(x) for x in lrs)} x r {', '.join(str(r) for r in rs)}"
    else:
        what = f"{len(trials)} trials (lr x r: {', '.join(f'{lr_text(t.learning_rate)} x {t.r}' for t in trials)})"
    lines = [f"sweep   {what} (alpha = 2r), {steps} steps each{rounded}",
             f"stops   at once on {' / '.join(STOP_ON)}"
             + (f"; halving at steps {' and '.join(str(s) for s in rungs(steps))}: a trial whose eval loss is in "
                "the worse half there stops" if halving else "; no halving (--no-halving)")]
    if devices and lanes > 1:
        where = f"{lanes} at once, one per GPU ({', '.join(devices[:lanes])})" if lanes <= len(devices) else \
            f"{lanes} at once over GPUs {', '.join(devices)} (sharing them: timed as {len(devices)} at once)"
    elif devices:
        where = f"one after another on GPU {devices[0]}"
    else:
        where = "on the CPU, " + ("one after another" if lanes == 1 else
                                  f"{lanes} at once (sharing its cores: timed as one after another)")
    lines.append(f"runs    {where}")
    if plan["total_s"]:
        cost = f"; cost about {plan['cost']:.2f} at {plan['price_per_hour']:g}/h" if plan["cost"] is not None else ""
        lines.append(f"time    {_duration(plan['total_s'])} in all ({_duration(plan['trial_s'])} a trial on "
                     f"{plan['gpu']}; an upper bound: trials stopped early finish sooner){cost}")
        if plan.get("time_basis"):
            lines.append(f"        speed {'; '.join(filter(None, (plan['time_basis'], plan.get('time_caveat'))))}")
    else:
        lines.append(f"time    unknown before the first trial ends: {plan['time_unknown_because']}; "
                     "the first trial's measured time is used from then on")
    if plan.get("download_bytes"):   # not in the time: no bandwidth is known here
        lines.append(f"        {download_words(plan['download_bytes'], 'before the first trial')}; the trials "
                     "after it reuse the cache")
    if plan["budget_s"]:
        # The budget is wall time from the sweep's start: a download before the first trial spends it too.
        unpriced = ", the download apart" if plan.get("download_bytes") else ""
        if plan["budget_change"]:
            lines.append(f"budget  {plan['budget_change']}{unpriced}")
        elif plan["total_s"]:
            lines.append(f"budget  {plan['budget_s'] / 60:g} min: the plan fits{unpriced}")
        else:
            lines.append(f"budget  {plan['budget_s'] / 60:g} min: trials that would end past it are not started, "
                         "and running ones stop when it is spent")
    return "\n".join(lines)


def _confirmed(a, question: str = "Start the sweep?") -> bool:
    if a.yes:
        return True
    if not sys.stdin.isatty():
        raise UserError("the sweep was not confirmed (no terminal to ask on)",
                        fix="pass --yes to start it from a script")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _make_sweep_dir(cfg, config_path: Path, wanted: str | None):
    """The new sweep folder and its lock (taken before the folder is checked empty: of two sweeps started into one
    folder, the second is refused with the first's pid), through train's checks and words for --run-dir."""
    from engine.sweep.sweepdir import SWEEP_LOCK_FILE, SweepLock
    from engine.train.launch import check_new_run_dir, claim_new_dir, fitted_name, make_new_dir

    if wanted:
        path = Path(wanted).resolve()
        check_new_run_dir(path, flag="--sweep-dir", lock_file=SWEEP_LOCK_FILE)
        make_new_dir(path, flag="--sweep-dir")
    else:
        path = claim_new_dir(runs_root(cfg.runs_dir),
                             fitted_name(f"sweep-{config_path.stem}", f"-{time.strftime('%Y%m%d-%H%M%S')}"))
    lock = SweepLock.acquire(path)
    try:
        check_new_run_dir(path, flag="--sweep-dir", lock_file=SWEEP_LOCK_FILE)
    except UserError:
        lock.release()
        raise
    return path, lock


def _sweep_record(sweep_dir: Path, cfg, config_path: Path, trials, steps: int, a, plan: dict,
                  devices: list[str], data: dict, tokens: dict) -> dict:
    """data: engine.data.fingerprint.data_record of the dataset, made before (it reads every file)."""
    from engine.config import absolute_paths
    from engine.sweep.plan import rungs
    from engine.sweep.sweepdir import TRIAL_PENDING

    return {
        "version": 1, "name": sweep_dir.name, "sweep_dir": str(sweep_dir), "created": time.time(),
        "state": "planned", "driver_pid": None, "started": None, "ended": None,
        "base_config_path": str(config_path.resolve()), "base_config": absolute_paths(cfg).to_dict(),
        "data": data,   # what the trials train on: a resume on other data is refused
        "tokens": tokens,   # and what they are as tokens (tokens_record): a resume on other tokens is refused
        "grid": {"learning_rate": sorted({t.learning_rate for t in trials}), "r": sorted({t.r for t in trials})},
        "requested_grid": {k: sorted(v) for k, v in a.requested_grid.items()},
        "requested_steps": a.steps, "steps": steps, "rungs": rungs(steps), "eval_steps": steps // 3,
        "halving": not a.no_halving, "stop_on": list(STOP_ON), "lanes": plan["lanes"], "devices": devices,
        "plan": plan, "apply_path": str(Path(a.apply).resolve()) if a.apply else None,
        "apply_replace": bool(a.apply) and Path(a.apply).exists(),  # the user agreed to replace it
        "trials": [{"id": t.id, "learning_rate": t.learning_rate, "r": t.r, "alpha": t.alpha,
                    "run_dir": str(sweep_dir / t.id), "state": TRIAL_PENDING, "step": 0, "stopped_by": None,
                    "stop_reason": None} for t in trials],
        "winner": None, "table": None,
    }


def _follow(sweep_dir: Path, proc, a, poll_s: float = 1.0) -> int:
    """Progress lines until the driver ends; Ctrl-C asks for a graceful stop, twice leaves it running."""
    from engine.sweep.report import applied_text, print_report
    from engine.errors import print_error
    from engine.sweep.sweepdir import SWEEP_FINAL_STATES, SWEEP_LOG, read_sweep, request_sweep_stop

    stopping = False

    def on_int(signum, frame):
        nonlocal stopping
        if stopping:
            raise KeyboardInterrupt
        stopping = True
        print("\nstopping the sweep: running trials checkpoint and stop (Ctrl-C again to leave it running)",
              flush=True)
        request_sweep_stop(sweep_dir)

    old = signal.signal(signal.SIGINT, on_int)
    seen: dict = {}
    try:
        while True:
            done = proc.poll() is not None
            sweep = read_sweep(sweep_dir)
            for t in sweep["trials"]:
                evals = t.get("evals") or []
                key = (t["state"], len(evals), t.get("stopped_by"))
                if seen.get(t["id"]) != key:
                    seen[t["id"]] = key
                    ev = f"  eval {loss_text(evals[-1][1])} at step {evals[-1][0]}" if evals else ""
                    why = f"  stopped: {t['stopped_by']}" if t.get("stopped_by") else ""
                    print(f"{t['id']:<18} {t['state']:<10}{ev}{why}", flush=True)
            if done:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"left running: `lorapilot sweep {shell_word(sweep_dir)}` shows its progress")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, old)
    sweep = read_sweep(sweep_dir, complete=True)
    if sweep.get("state") not in SWEEP_FINAL_STATES:
        # The driver could not record its end (nor, often, its start: a disk full under its first write). Its table
        # would read as a sweep that ran: 'no winner: no trial reached an evaluation'.
        from engine.rundir import no_room

        why = f"; no space left on device in {sweep_dir}" if no_room(sweep_dir) else ""
        print_error(UserError(f"sweep failed: its driver ended (exit code {proc.returncode}) before recording its "
                              f"end{why}\n  log: {sweep_dir / SWEEP_LOG}",
                              fix=f"{'free space on that disk, then ' if why else ''}lorapilot sweep --resume "
                                  f"{shell_word(sweep_dir)} goes on with it"))
        return EXIT_RUN_FAILED
    print_report(sweep)
    if sweep.get("applied"):
        print(applied_text(sweep, sweep["applied"], notes=False))   # the report above gave the notes
    elif sweep.get("apply_error"):
        print(f"lorapilot: --apply: {sweep['apply_error']}", file=sys.stderr)
    if sweep.get("state") == "failed":
        print(f"lorapilot: sweep failed: {sweep.get('error')}\n  log: {sweep_dir / 'sweep.log'}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK
