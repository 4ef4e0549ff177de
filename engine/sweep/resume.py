"""`lorapilot sweep --resume SWEEP_DIR`: a sweep whose driver is gone (a pod preempted, the machine rebooted, a stop)
goes on where it was, from what its folder holds.

Each trial that has its answer is kept: finished, or stopped by the sweep's own rules (halving, a finding in
training.stop_on such as nan_loss). Every other trial runs again: a trial cut short (stopped by the user, the
budget or a preemption's SIGTERM, or lost with its trainer) from its last intact checkpoint, where it has one, as
`lorapilot train --resume` would (its records after that checkpoint are superseded); a trial that failed or never
started, from the start. A trial whose trainer outlived the driver is followed, not started twice.

The budget stays honest: the time the sweep ran before counts (`spent_s`), the time it lay dead does not. A sweep
is resumed only as it was planned: given a CONFIG, lr, r or steps that differ from the sweep's, it is refused; and
only on the data it started on (engine.data.fingerprint): a data file edited since is refused by name; and on the
tokens its trials trained on (check_same_tokens: the tokenizer, chat template or data rules changed since). Each trial
it resumes in its folder is checked as `train --resume` checks a run, before the driver starts (check_trials_resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError, shell_word, yaml_text
from engine.rundir import (CONFIG_FILE, FINAL_STATES, checkpoint_step, effective_state, read_metrics, read_status,
                           finite, usable_checkpoint)
from engine.sweep.sweepdir import SWEEP_FILE, TRIAL_PENDING, TRIAL_SKIPPED, elapsed_s

if TYPE_CHECKING:
    from engine.train.resume_check import TokensMade


def decided_stops() -> tuple[str, ...]:
    """Why a stopped trial has its answer: the sweep's halving, or a finding the trainer stops on."""
    from engine.diagnose.codes import STOPPABLE

    return ("halving", *STOPPABLE)


# ---------------------------------------------------------------- is it the same sweep?

def check_same_sweep(sweep: dict, sweep_dir: Path, config_path: Path | None, lrs: list[float] | None,
                     rs: list[int] | None, steps: int | None, halving: bool | None) -> None:
    """A resume given the command line that started the sweep: its config, lr, r, steps and halving (those given)
    must be the sweep's (its trials' results are comparable only under one plan). UserError naming each difference."""
    from engine.config import FIELDS, PATH_FIELDS, load_config
    from engine.config_paths import get_path

    def same(key: str, mine, theirs) -> bool:   # a local path as the file it names (sweep.json's is absolute)
        return mine == theirs or (key in PATH_FIELDS and _as_file(mine) == _as_file(theirs))

    diffs = []
    if config_path is not None:
        mine, theirs = load_config(config_path).to_dict(), sweep["base_config"]
        diffs = [f"{key}: {yaml_text(get_path(mine, key))} in {config_path}, {yaml_text(get_path(theirs, key))} in "
                 "the sweep" for key in FIELDS if key != "run_name" and not same(key, get_path(mine, key),
                                                                                  get_path(theirs, key))]
    grid = sweep.get("requested_grid") or sweep["grid"]
    if lrs is not None and sorted(lrs) != sorted(grid.get("learning_rate", [])):
        diffs.append(f"--lr {_list(lrs)}: the sweep's is {_list(grid.get('learning_rate', []))}")
    if rs is not None and sorted(rs) != sorted(grid.get("r", [])):
        diffs.append(f"--r {','.join(map(str, rs))}: the sweep's is {','.join(map(str, grid.get('r', [])))}")
    asked = sweep.get("requested_steps", sweep["steps"])
    if steps is not None and steps != asked:
        diffs.append(f"--steps {steps}: the sweep's is {asked}")
    if halving is not None and halving != bool(sweep.get("halving")):
        diffs.append("--no-halving: the sweep halves" if not halving else "the sweep ran with --no-halving")
    if diffs:
        raise UserError(f"{sweep_dir}: not the sweep this command starts, so not resumed", problems=diffs,
                        fix=f"resume it as it was planned (lorapilot sweep --resume {shell_word(sweep_dir)}), or start a new "
                            "sweep in another --sweep-dir")


def check_same_data(sweep: dict, sweep_dir: Path) -> None:
    """The data the trials train on as it was when the sweep started (sweep.json's "data"): an edited file would mix
    the finished trials' results (the old data) with the new ones' and rank them together. UserError naming each
    file that changed. A sweep made before lorapilot recorded it is not checked."""
    from engine.config import config_from_dict
    from engine.data.fingerprint import data_changes

    if not sweep.get("data"):
        return
    dataset = config_from_dict(sweep["base_config"], source=f"{sweep_dir}/sweep.json base_config").dataset
    changed = data_changes(sweep["data"], dataset)
    if changed:
        raise UserError(f"{sweep_dir}: the data its trials train on changed since the sweep started, so not resumed "
                        "(the finished trials trained on it as it was)", problems=changed,
                        fix="put the data back as it was to resume, or start a new sweep on the new data in another "
                            "--sweep-dir")


def check_same_tokens(sweep: dict, sweep_dir: Path, cfg) -> tuple[list[str], TokensMade | None]:
    """The examples the trials train on, as tokens, as they were when the sweep started (sweep.json's "tokens": the
    tokens_record of the base config's examples, made as a trainer makes them: engine.train.resume_check.tokens_now;
    a trial differs from the base only in lr, r and its schedule, which make no tokens). The data files read the same,
    but the chat template or tokenizer at the model's path edited, or another lorapilot's data rules, made the trials
    run after the resume train on other tokens than the finished ones, ranked together without a word. UserError
    naming what changed (token_problems, the rule of a run's resume). `cfg`: the sweep's base config, its
    trust_remote_code as the caller resolved it. A sweep made before lorapilot recorded its tokens is resumed
    unchecked: the line returned says so. Returns (notes, the tokens made: check_trials_resume's for each trial, which
    makes the same examples; None where the sweep holds no record)."""
    saved = sweep.get("tokens")
    if not isinstance(saved, dict):
        return ["the sweep holds no record of the tokens its trials trained on (made by an earlier lorapilot): this "
                "resume cannot check that the tokenizer, chat template and data rules are as they were"], None
    from engine.train.resume_check import make_tokens, token_problems

    made = make_tokens(cfg)
    problems = token_problems(saved, made.record, cfg.model, "when the sweep started")
    if problems:
        raise UserError(f"{sweep_dir}: its trials would train on other tokens than those made when the sweep started, "
                        "so not resumed (the finished trials trained on those)", problems=problems,
                        fix="put back what changed to resume, or start a new sweep on the examples as they are now in "
                            "another --sweep-dir")
    return [], made


def check_trials_resume(sweep_dir: Path, sweep: dict, trust_remote_code: bool,
                        tokens: TokensMade | None = None) -> list[str]:
    """Each trial the new driver will resume in its own folder (pending, with its config.yaml: Driver._start's `again`)
    checked now as `train --resume` checks a run before its trainer starts (engine.train.launch.check_resume: its
    config against its checkpoint, its inputs, what its trainer would refuse after its load). The driver found these
    later, marking the trial failed in the background after the foreground had said the sweep resumed. UserError:
    the trial's own refusal, in its words, named as the sweep's. Returns the notes of each trial ("<id>: <note>").
    tokens: the base config's, made by check_same_tokens: a trial differs from it only in lr, r and its schedule, which
    make no tokens, so its examples are not read and tokenized again for each trial (check_resume still makes its
    own for a trial whose config.yaml makes other examples)."""
    from engine.train.launch import check_resume

    lines = []
    for t in sweep["trials"]:
        run_dir = sweep_dir / t["id"]
        if t["state"] != TRIAL_PENDING or not (run_dir / CONFIG_FILE).is_file():
            continue
        check_trial_config(sweep_dir, sweep, t)
        try:
            checked = check_resume(run_dir, read_status(run_dir) or {}, trust_remote_code=trust_remote_code,
                                   tokens=tokens)
        except UserError as e:
            raise UserError(f"{sweep_dir}: trial {t['id']} cannot go on, so the sweep is not resumed: {e.message}",
                            problems=e.problems,
                            fix=f"{e.fix}; or start a new sweep in another --sweep-dir" if e.fix else None) from None
        lines += [f"{t['id']}: {note}" for note in checked.notes]
    return lines


def check_trial_config(sweep_dir: Path, sweep: dict, t: dict) -> None:
    """The trial's config.yaml is the one the driver wrote (the sweep's base, the trial's lr and r, the sweep's
    schedule), but for its run_name: one edited by hand trained on under the edit (a resume applies what it may), and
    its losses were ranked in the table as its lr and r's. UserError naming each key and both values.

    A local path is compared as the file it names: an older sweep.json kept one relative to the working folder as
    typed (data/train.jsonl), the trial's config.yaml has it absolute (save_config), and every resume was refused."""
    from engine.config import PATH_FIELDS, config_from_dict, load_config
    from engine.sweep.plan import Trial, trial_config
    from engine.train.resume_check import flat_config

    config = sweep_dir / t["id"] / CONFIG_FILE
    base = config_from_dict(sweep["base_config"], source=str(sweep_dir / SWEEP_FILE))
    want = flat_config(trial_config(base, Trial(t["learning_rate"], t["r"]), sweep["steps"]))
    have = flat_config(load_config(config))
    for key in PATH_FIELDS:
        want[key], have[key] = _as_file(want.get(key)), _as_file(have.get(key))
    diffs = [f"{k}: {yaml_text(want.get(k))} in the sweep's plan, {yaml_text(have.get(k))} in {config}"
             for k in sorted(set(want) | set(have)) if k != "run_name" and want.get(k) != have.get(k)]
    if diffs:
        raise UserError(f"{sweep_dir}: trial {t['id']}'s {CONFIG_FILE} is not the one the sweep wrote, so the sweep is "
                        "not resumed (its trials are ranked on one plan, differing in learning rate and r only)",
                        problems=diffs, fix=f"put {config} back as the sweep wrote it, or start a new sweep in "
                                            "another --sweep-dir")


def _as_file(value):
    """A local path as the file it names (absolute, resolved); a hub id, a path to nothing here or None as it is."""
    if not value or not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().resolve())


def _list(lrs) -> str:
    from engine.sweep.plan import lr_text

    return ",".join(lr_text(x) for x in lrs)


# ---------------------------------------------------------------- what each trial does

def prepare_resume(sweep_dir: Path, sweep: dict, now: float) -> list[str]:
    """Turns a sweep record whose driver is gone into one a new driver continues; one line per trial that is not
    simply kept, saying what happens to it. Reads the trials' run folders, writes nothing (the caller writes
    sweep.json once the user said yes)."""
    from engine.sweep.report import RESULT_KEYS, trial_metrics

    decided = decided_stops()
    lines: list[str] = []
    for t in sweep["trials"]:
        run_dir = sweep_dir / t["id"]
        status = (read_status(run_dir) if run_dir.is_dir() else None) or {}
        state = effective_state(status, run_dir) if status else None
        if status:
            metrics = trial_metrics(read_metrics(run_dir))
            t.update({k: metrics[k] for k in RESULT_KEYS}, step=max(int(status.get("step") or 0), metrics["step"]))
        if state is not None and state not in FINAL_STATES + ("lost", "unknown"):
            t.update(state=state, adopt=True, resumed=True)   # its trainer outlived the driver
            lines.append(f"{t['id']}: still {state} (pid {status.get('pid')}): followed to its end")
            continue
        code = str(status.get("stop_reason") or "").split(":", 1)[0]
        if state == "done" or (not status and t["state"] == "done"):   # a folder gone: the record's word
            t.update(state="done", stopped_by=None, stop_reason=None, error=None)
            _record_rungs(sweep, t)
            continue
        if t.get("stopped_by") in decided or (state == "stopped" and code in decided):
            t.update(state="stopped", stopped_by=t.get("stopped_by") if t.get("stopped_by") in decided else code)
            if not t.get("stop_reason"):
                t["stop_reason"] = status.get("stop_reason")
            _record_rungs(sweep, t)
            continue
        never_started = t["state"] in (TRIAL_PENDING, TRIAL_SKIPPED)
        was = state or t["state"]
        ckpt = usable_checkpoint(run_dir)[0] if (run_dir / CONFIG_FILE).is_file() else None
        at = checkpoint_step(ckpt) if ckpt else 0
        t.update(state=TRIAL_PENDING, stopped_by=None, stop_reason=None, error=None, pid=None, resumed=at > 0)
        if never_started:
            continue
        why = f" ({status.get('error') or 'failed'})" if was == "failed" else ""
        lines.append(f"{t['id']}: {was}{why} at step {t.get('step') or 0}: "
                     + (f"resumes from its checkpoint at step {at}" if at else "runs again from the start"))
    spent = elapsed_s(sweep, sweep.get("ended") or sweep.get("updated") or now)
    sweep.update(spent_s=round(spent, 1), run_started=None, state="planned", driver_pid=None, ended=None,
                 winner=None, table=None, error=None, resumes=int(sweep.get("resumes") or 0) + 1,
                 applied=None, apply_error=None)
    return lines


def _record_rungs(sweep: dict, t: dict) -> None:
    """A kept trial's eval losses at the rungs, as its run folder has them, where the driver died before reading
    them: the trials after it are compared with them. (A trial that goes on is read again from its first record by
    the new driver, which judges each rung it had not judged.)"""
    rung_losses = sweep.setdefault("rung_losses", {str(r): {} for r in sweep["rungs"]})
    for step, loss in t.get("evals") or []:
        at = rung_losses.get(str(step))
        if at is not None and t["id"] not in at and finite(loss):
            at[t["id"]] = loss


def resume_text(sweep: dict, lines: list[str]) -> str:
    """What the resume does, before the y/N: the trials kept, run again and not started; the time already spent."""
    from engine.estimate.timing import duration_text

    trials = sweep["trials"]
    kept = [t for t in trials if t["state"] in FINAL_STATES]
    done = sum(t["state"] == "done" for t in kept)
    fresh = len(trials) - len(kept) - len(lines)
    why = f" ({done} finished, {len(kept) - done} stopped by the sweep's rules)" if kept else ""
    out = [f"resume  {sweep.get('name') or 'the sweep'} ({sweep['steps']} steps a trial): {len(kept)} of "
           f"{len(trials)} trials kept{why}, {len(lines)} go on as below, {fresh} not started yet"]
    out += [f"        {line}" for line in lines]
    budget = (sweep.get("plan") or {}).get("budget_s")
    spent = sweep.get("spent_s") or 0.0
    out.append(f"time    {duration_text(spent)} spent so far" + (
        f" of the {budget / 60:g} min budget: trials that would end past it are not started" if budget else ""))
    return "\n".join(out)
