"""`lorapilot sweep --resume`: what each trial does, the honest budget, the driver reading a trial again, refusals.

The real preempted sweep (driver and trainer killed, then resumed to the end) is test_sweep_e2e's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import DEMO_CONFIG, hold_run_lock, unwrapped
from engine.cli import main
from engine.config import load_config
from engine.rundir import CONFIG_FILE, MetricsWriter, process_start, write_status
from engine.sweep.plan import Trial
from engine.sweep.resume import prepare_resume, resume_text
from engine.sweep.sweepdir import SweepLock, elapsed_s, read_sweep, write_sweep

DEAD_PID = 2 ** 22 + 4321


@pytest.fixture(autouse=True)
def _unwrapped(monkeypatch):
    monkeypatch.setattr("engine.wrap.WIDTH", 10_000)


def trial(lr: float, state: str = "pending", **kw) -> dict:
    t = Trial(lr, 4)
    return {"id": t.id, "learning_rate": lr, "r": 4, "alpha": 8, "state": state, "step": 0, "stopped_by": None,
            "stop_reason": None, **kw}


def run_dir(sweep_dir, t: dict, evals=(), config=True, **status) -> None:
    """The trial's run folder as its trainer left it: status.json, its evaluations, config.yaml."""
    d = sweep_dir / t["id"]
    d.mkdir(parents=True)
    if config:   # the trial's config as the driver writes it (the demo's)
        from engine.config import save_config
        from engine.sweep.plan import trial_config

        save_config(trial_config(load_config(DEMO_CONFIG), Trial(t["learning_rate"], t["r"]), 6), d / CONFIG_FILE)
    write_status(d, **{"pid": DEAD_PID, "max_steps": 6, **status})
    w = MetricsWriter(d)
    for step, loss in evals:
        w.write("train", step, loss=loss + 0.1)
        w.write("eval", step, eval_loss=loss)
    w.close()


def a_sweep(sweep_dir, trials, **kw) -> dict:
    sweep = {"name": "sw", "state": "running", "driver_pid": DEAD_PID, "steps": 6, "rungs": [2, 4],
             "grid": {"learning_rate": sorted(t["learning_rate"] for t in trials), "r": [4]}, "halving": True,
             "lanes": 1, "devices": [], "plan": {"trial_s": 100.0, "budget_s": None},
             "base_config": load_config(DEMO_CONFIG).to_dict(), "rung_losses": {"2": {}, "4": {}},
             "started": 1000.0, "trials": trials, "winner": None, "table": None, **kw}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_sweep(sweep_dir, sweep)
    return read_sweep(sweep_dir)


def test_resume_keeps_the_trials_with_their_answer_and_runs_the_rest_again(tmp_path):
    d = tmp_path / "sw"
    done, halved, diverged, by_user, lost, failed, skipped, pending = trials = [
        trial(1e-4, "done"), trial(2e-4, "stopping", stopped_by="halving", stop_reason="worse half"),
        trial(3e-4, "training"), trial(4e-4, "stopped", stopped_by="user", stop_reason="stop requested"),
        trial(5e-4, "training"), trial(6e-4, "failed", error="out of memory"),
        trial(7e-4, "skipped", stopped_by="budget", stop_reason="not started"), trial(8e-4)]
    run_dir(d, done, [(2, 2.0), (4, 1.8), (6, 1.7)], state="done", step=6)
    run_dir(d, halved, [(2, 2.5)], state="training", step=3)        # asked to stop, then the machine went
    run_dir(d, diverged, [(2, 2.6)], state="stopped", step=3, stop_reason="nan_loss: The training loss is NaN")
    run_dir(d, by_user, [(2, 2.1)], state="stopped", step=3, stop_reason="stop requested")
    run_dir(d, lost, [(2, 2.2)], state="training", step=3)
    run_dir(d, failed, state="failed", step=1, error="CUDA out of memory")
    sweep = a_sweep(d, trials)
    sweep["updated"] = 1600.0   # its driver's last word: the sweep had run 600 s
    lines = prepare_resume(d, sweep, now=5000.0)

    got = {t["id"]: (t["state"], t["stopped_by"]) for t in sweep["trials"]}
    assert got == {done["id"]: ("done", None), halved["id"]: ("stopped", "halving"),
                   diverged["id"]: ("stopped", "nan_loss"), by_user["id"]: ("pending", None),
                   lost["id"]: ("pending", None), failed["id"]: ("pending", None), skipped["id"]: ("pending", None),
                   pending["id"]: ("pending", None)}
    assert lines == [f"{by_user['id']}: stopped at step 3: runs again from the start",
                     f"{lost['id']}: lost at step 3: runs again from the start",
                     f"{failed['id']}: failed (CUDA out of memory) at step 1: runs again from the start"]
    # what the driver never read, read from the folders: the finished trial's results, the rungs of the kept ones
    t = sweep["trials"][0]
    assert t["eval_loss"] == 1.7 and t["evals"] == [[2, 2.0], [4, 1.8], [6, 1.7]]
    assert sweep["rung_losses"] == {"2": {done["id"]: 2.0, halved["id"]: 2.5, diverged["id"]: 2.6},
                                    "4": {done["id"]: 1.8}}
    # the time it ran counts, the hour it lay dead does not
    assert sweep["spent_s"] == 600.0 and sweep["resumes"] == 1
    assert (sweep["state"], sweep["driver_pid"], sweep["winner"], sweep["run_started"]) == ("planned", None, None, None)
    text = resume_text(sweep, lines)
    assert "3 of 8 trials kept (1 finished, 2 stopped by the sweep's rules), 3 go on as below, 2 not started yet" \
        in text and "10 min spent so far" in text


def test_the_time_a_sweep_ran_is_its_runs_not_its_wall_clock():
    assert elapsed_s({"started": 100.0}, 160.0) == 60.0                       # never resumed: as before
    resumed = {"started": 100.0, "spent_s": 600.0, "run_started": 5000.0}
    assert elapsed_s(resumed, 5030.0) == 630.0
    assert elapsed_s({**resumed, "ended": 5100.0}, 9999.0) == 700.0
    assert elapsed_s({"started": None}, 5.0) == 0.0


def test_a_resume_whose_driver_never_started_adds_no_time(tmp_path):
    """A resume wrote sweep.json (its run_started cleared) and its driver died before its first word: the next resume
    counted from the sweep's first start again, the time spent before and the day it lay dead both added."""
    d = tmp_path / "sw"
    now = time.time()
    sweep = a_sweep(d, [trial(1e-4, "done"), trial(2e-4)], state="planned", driver_pid=None, started=now - 86400,
                    spent_s=120.0, run_started=None, resumes=1)
    assert elapsed_s(sweep, now) == 120.0
    prepare_resume(d, sweep, now)
    assert sweep["spent_s"] == 120.0 and sweep["resumes"] == 2


def driver_starting(d, sweep: dict, monkeypatch):
    """A driver over sweep.json that has started what its budget allows (its trainers not launched): it, and the ids."""
    from engine.sweep.driver import Driver

    started: list[str] = []
    monkeypatch.setattr(Driver, "_start", lambda self, t: started.append(t["id"]) or self.handles.update({t["id"]: 0}))
    driver = Driver(d)
    driver.sweep.update(sweep)
    driver._start_more()
    return driver, started


def test_the_budget_counts_the_time_spent_before_the_resume(tmp_path, monkeypatch):
    """The budget compared the wall clock since the first start: a sweep resumed a day later had spent it all."""

    d = tmp_path / "sw"
    now = time.time()
    sweep = a_sweep(d, [trial(1e-4), trial(2e-4)], started=now - 86400, spent_s=120.0, run_started=now,
                    plan={"trial_s": 100.0, "budget_s": 600.0})
    driver, started = driver_starting(d, sweep, monkeypatch)
    assert started == [sweep["trials"][0]["id"]]   # 120 s + 100 s fit 600 s
    driver.handles.clear()
    driver.sweep["spent_s"] = 550.0
    driver._start_more()
    assert driver.sweep["trials"][1]["state"] == "skipped" and "9.2 min spent" in driver.sweep["trials"][1]["stop_reason"]


def test_a_trial_read_again_is_not_judged_again_at_a_rung_it_passed(tmp_path):
    """The driver reads a resumed trial's records from the start: its rung evaluation, judged when it went on, was
    judged again against the trials that came after it (and stopped), and its evaluations were listed twice."""
    from types import SimpleNamespace

    from engine.sweep.driver import Driver

    d = tmp_path / "sw"
    t = trial(2e-4, "training")
    a_sweep(d, [t, trial(1e-4, "done"), trial(3e-4, "done")],
            rung_losses={"2": {t["id"]: 2.0, "lr1e-4_r4": 1.5, "lr3e-4_r4": 1.6}, "4": {}})
    driver = Driver(d)
    rec = driver.trials[t["id"]]
    handle = SimpleNamespace(run_dir=d / t["id"])
    driver._on_eval(rec, handle, {"kind": "eval", "step": 2, "eval_loss": 2.0})
    driver._on_eval(rec, handle, {"kind": "eval", "step": 2, "eval_loss": 2.0})
    assert rec.get("stopped_by") is None and rec["evals"] == [[2, 2.0]]
    driver._on_eval(rec, handle, {"kind": "eval", "step": 4, "eval_loss": 1.9})
    assert rec["evals"] == [[2, 2.0], [4, 1.9]] and rec.get("stopped_by") is None   # the first at rung 4 goes on


def test_an_evaluation_that_is_no_number_is_not_judged_at_its_rung(tmp_path):
    """A trial's eval_loss edited by hand to an integer no float holds: the driver's halving ended in an
    OverflowError, and the sweep with it. It is no number (engine.rundir.record_number), as a string is."""
    from types import SimpleNamespace

    from engine.sweep.driver import Driver

    d = tmp_path / "sw"
    t = trial(2e-4, "training")
    a_sweep(d, [t, trial(1e-4, "done")], rung_losses={"2": {"lr1e-4_r4": 1.5}, "4": {}})
    driver = Driver(d)
    rec = driver.trials[t["id"]]
    driver._on_eval(rec, SimpleNamespace(run_dir=d / t["id"]), {"kind": "eval", "step": 2, "eval_loss": 10 ** 400})
    assert rec.get("stopped_by") is None and rec["eval_loss"] is None and t["id"] not in driver.rung_losses["2"]


def sweep_cli(capsys, *argv):
    code = main(["sweep", *argv])
    out = capsys.readouterr()
    return code, out.out, unwrapped(out.err)


def test_resume_refusals(tmp_path, capsys):
    d = tmp_path / "sw"
    a_sweep(d, [trial(1e-4, "done"), trial(2e-4)], state="done")
    code, _, err = sweep_cli(capsys, "--resume", str(d))
    assert code == 2 and "the sweep is done; nothing to resume" in err and "--budget-minutes" not in err
    # the budget ended it: a new budget lets it go on (the time spent counts)
    a_sweep(d, [trial(1e-4, "done"), trial(2e-4, "skipped", stopped_by="budget")], state="done",
            started=time.time() - 600, ended=time.time() - 60)
    code, _, err = sweep_cli(capsys, "--resume", str(d))
    assert code == 2 and f"give it more time with lorapilot sweep --resume {d} --budget-minutes M" in err
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--budget-minutes", "30", "--dry-run")
    assert code == 0 and "1 not started yet" in out and "9 min spent so far of the 30 min budget" in out

    a_sweep(d, [trial(1e-4, "done"), trial(2e-4)])
    lock = SweepLock.acquire(d)   # its driver is alive
    try:
        code, _, err = sweep_cli(capsys, "--resume", str(d))
    finally:
        lock.release()
    assert code == 2 and "the sweep is running" in err

    code, _, err = sweep_cli(capsys, str(DEMO_CONFIG), "--resume")
    assert code == 2 and "needs the sweep's folder" in err and "--sweep-dir" in err
    code, _, err = sweep_cli(capsys, "--resume", str(tmp_path))
    assert code == 2 and "not a sweep directory" in err

    before = (d / "sweep.json").read_bytes()
    code, _, err = sweep_cli(capsys, str(DEMO_CONFIG), "--lr", "1e-4,5e-4", "--r", "4", "--steps", "9", "--no-halving",
                             "--sweep-dir", str(d), "--resume", "--yes")
    assert code == 2 and "not the sweep this command starts" in err
    assert "--lr 1e-4,5e-4: the sweep's is 1e-4,2e-4" in err and "--steps 9: the sweep's is 6" in err
    assert "--no-halving: the sweep halves" in err and "training." not in err   # the same config
    assert (d / "sweep.json").read_bytes() == before
    code, _, err = sweep_cli(capsys, "--resume", str(d), "--r", "8")   # a grid flag with the folder alone: checked too
    assert code == 2 and "--r 8: the sweep's is 4" in err

    sweep = read_sweep(d)
    sweep["base_config"]["trust_remote_code"] = True
    write_sweep(d, sweep)
    code, _, err = sweep_cli(capsys, "--resume", str(d))
    assert code == 2 and "trust_remote_code: true" in err and "--resume" in err


def test_a_dry_run_resume_says_what_it_would_do_and_writes_nothing(tmp_path, capsys):
    d = tmp_path / "sw"
    t = trial(2e-4, "training")
    a_sweep(d, [trial(1e-4, "done"), t], started=time.time() - 300)   # its driver wrote sweep.json last just now
    run_dir(d, t, [(2, 2.2)], state="training", step=3)
    (d / "stop.request").touch()
    before = (d / "sweep.json").read_bytes()
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 0 and f"{t['id']}: lost at step 3: runs again from the start" in out and "5 min spent" in out
    assert (d / "sweep.json").read_bytes() == before and (d / "stop.request").exists()


def test_a_lost_or_stopped_sweep_says_it_can_be_resumed(tmp_path, capsys):
    d = tmp_path / "sw"
    a_sweep(d, [trial(1e-4, "training", started=1000.0), trial(2e-4)], driver_pid=DEAD_PID)
    code, out, _ = sweep_cli(capsys, str(d))
    assert code == 0 and f"lorapilot sweep --resume {d}" in out
    code, _, err = sweep_cli(capsys, str(d), "--apply", str(tmp_path / "best.yaml"))
    assert code == 2 and f"resume it: lorapilot sweep --resume {d}" in err


def test_a_resumed_driver_follows_a_trial_whose_trainer_outlived_it(tmp_path):
    from engine.sweep.driver import Driver

    d = tmp_path / "sw"
    t = trial(2e-4, "training", gpu=None)
    sweep = a_sweep(d, [t])
    # this process stands in for its trainer (its start time recorded, as the launcher records the trainer's)
    run_dir(d, t, [(2, 2.2)], state="training", step=3, pid=os.getpid(), pid_start=process_start(os.getpid()))
    hold_run_lock(d / t["id"])
    lines = prepare_resume(d, sweep, now=time.time())
    assert lines == [f"{t['id']}: still training (pid {os.getpid()}): followed to its end"]
    assert sweep["trials"][0]["state"] == "training" and sweep["trials"][0]["adopt"]
    write_sweep(d, sweep)
    driver = Driver(d)
    driver._adopt(driver.trials[t["id"]])
    assert driver.handles[t["id"]].pid == os.getpid() and driver.lane_of[t["id"]] == 0
    driver._poll()   # alive: followed, not ended
    assert t["id"] in driver.handles and driver.trials[t["id"]]["evals"] == [[2, 2.2]]


def test_a_driver_pid_reused_on_a_new_machine_is_not_a_running_sweep(tmp_path, capsys):
    """A pod back from a preemption gives the dead driver's pid to another process: the sweep read `running`, and
    `lorapilot sweep DIR` said nothing of resuming it. The sweep's lock says whether its driver lives."""
    from engine.sweep.sweepdir import effective_sweep_state

    d = tmp_path / "sw"
    sweep = a_sweep(d, [trial(1e-4, "training"), trial(2e-4)], driver_pid=os.getpid())   # alive: this process
    SweepLock.acquire(d).release()   # the lock file the sweep was made with, its holder gone
    assert effective_sweep_state(sweep) == "running"          # the pid alone says so
    assert effective_sweep_state(sweep, d) == "lost"
    lock = SweepLock.acquire(d)
    try:
        assert effective_sweep_state(sweep, d) == "running"   # held: its driver lives
    finally:
        lock.release()
    code, out, _ = sweep_cli(capsys, str(d))
    assert code == 0 and "lost" in out and f"lorapilot sweep --resume {d}" in out


def test_a_stopped_sweep_resumed_forgets_the_stop_that_ended_it(tmp_path, capsys, monkeypatch):
    """`lorapilot stop SWEEP_DIR` leaves stop.request behind: a resumed driver reading it would stop at once."""
    from types import SimpleNamespace

    d = tmp_path / "sw"
    t = trial(2e-4, "stopped", stopped_by="user", stop_reason="stop requested")
    a_sweep(d, [trial(1e-4, "done"), t], state="stopped", started=time.time() - 100, ended=time.time() - 50)
    run_dir(d, t, [(2, 2.2)], state="stopped", step=3, stop_reason="stop requested")
    (d / "stop.request").touch()
    spawned = []
    monkeypatch.setattr("engine.sweep.driver.spawn_driver",
                        lambda sweep_dir, lock: spawned.append(sweep_dir) or SimpleNamespace(pid=12345))
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach")
    assert code == 0 and spawned == [d.resolve()] and "driver pid: 12345" in out
    assert not (d / "stop.request").exists()
    s = read_sweep(d)
    assert s["state"] == "planned" and s["trials"][1]["state"] == "pending" and s["spent_s"] == 50.0


def test_a_resume_writes_the_winners_config_only_where_its_own_command_says(tmp_path, capsys, monkeypatch):
    """sweep.json's apply_path (with apply_replace) was honoured by the resumed driver: a sweep folder from someone
    else had the winner's config written over any file of the user's, named nowhere on the command line."""
    from types import SimpleNamespace

    d, mine = tmp_path / "sw", tmp_path / "mine.yaml"
    mine.write_text("# the user's own\n")
    a_sweep(d, [trial(1e-4, "done"), trial(2e-4)], state="stopped", started=time.time() - 100,
            ended=time.time() - 50, apply_path=str(mine), apply_replace=True)
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=12345))
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach")
    assert code == 0 and f"add --apply {mine} to write it there" in out
    s = read_sweep(d)
    assert s["apply_path"] is None and s["apply_replace"] is False
    best = tmp_path / "best.yaml"
    a_sweep(d, read_sweep(d)["trials"], state="stopped", started=time.time() - 100, ended=time.time() - 50)
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach", "--apply", str(best))
    assert code == 0 and read_sweep(d)["apply_path"] == str(best.resolve())


def test_a_sweep_is_resumed_only_on_the_data_it_started_on(tmp_path, capsys, monkeypatch, demo_model_dir):
    """The JSONL edited between the cut and the resume: the trials that had finished (on the old data) and the ones
    run then (on the new) were ranked together, and the winner was wrong without a word. The sweep records the files
    its trials read; a resume on other contents is refused by file name, the same bytes back are resumed."""
    import shutil

    import yaml

    data = tmp_path / "train.jsonl"
    shutil.copyfile(DEMO_CONFIG.parent / "demo" / "train.jsonl", data)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = "train.jsonl"   # relative to the config, as a user writes it
    d, argv = _cut_after_its_first_trial(tmp_path, capsys, monkeypatch, raw)
    cfg = tmp_path / "mine.yaml"
    before, original = (d / "sweep.json").read_bytes(), data.read_bytes()

    edited = original.replace(b"window", b"wodniw", 1)   # the same size: only its contents tell
    assert edited != original and len(edited) == len(original)
    data.write_bytes(edited)
    for resume in (["--resume", str(d)], [*argv, "--resume", "--yes"]):   # the folder alone, or the command line
        code, _, err = sweep_cli(capsys, *resume)
        assert code == 2 and "the data its trials train on changed since the sweep started" in err, err
        assert f"{data}: changed since the sweep started (its contents differ)" in err
        assert (d / "sweep.json").read_bytes() == before
    data.write_bytes(grown := original + b'{"instruction": "one more", "output": "row"}\n')
    code, _, err = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 2 and f"{data}: changed since the sweep started ({len(grown):,} bytes, were {len(original):,})" in err

    data.write_bytes(original)   # the same bytes back, a newer modification time: the data the trials trained on
    code, out, _ = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 0 and "1 of 2 trials kept" in out
    # read once at its new time, not before every trial again (a large file touched once)
    from engine.data.fingerprint import data_changes

    record = read_sweep(d)["data"]
    assert data_changes(record, load_config(cfg).dataset) == [] and record["files"][0]["mtime_ns"] == \
        data.stat().st_mtime_ns
    monkeypatch.setattr("engine.data.fingerprint.hash_file", lambda *a: pytest.fail("read again"))
    assert data_changes(record, load_config(cfg).dataset) == []


def test_data_edited_while_the_sweep_runs_starts_no_more_trials(tmp_path, monkeypatch):
    """The same mix without a resume: the JSONL edited between two trials of a running sweep. The driver looks at
    the files before each trial reads them; the sweep fails naming the file, its trials not started wait for a
    resume (on the data put back)."""
    from engine.data.fingerprint import data_record
    from engine.sweep.driver import Driver

    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    base = load_config(DEMO_CONFIG)
    base.dataset.path = str(data)
    d = tmp_path / "sw"
    first, second = trial(1e-4, "done"), trial(2e-4)
    a_sweep(d, [first, second], base_config=base.to_dict(), data=data_record(base.dataset))
    monkeypatch.setattr("engine.train.launch.start_run", lambda *a, **k: pytest.fail("a trial started on other data"))
    data.write_text('{"instruction": "a", "output": "c"}\n')
    driver = Driver(d)
    driver._start_more()
    assert not driver.handles and driver.stopping == "failed"
    assert driver.abort_reason == (f"the data changed since the sweep started, so {second['id']} and the trials after "
                                   f"it were not started: {data}: changed since the sweep started (its contents differ)")
    driver._finish()
    s = read_sweep(d)
    assert s["state"] == "failed" and str(data) in s["error"] and s["trials"][1]["state"] == "skipped"
    data.write_text('{"instruction": "a", "output": "b"}\n')   # put back: its trials not started run on a resume
    assert prepare_resume(d, s, now=time.time()) == [] and s["trials"][1]["state"] == "pending"


@pytest.mark.parametrize("moved_with", ["its sweep", "nothing"])
def test_a_trainer_whose_folder_moved_says_how_to_go_on_there_a_trial_with_its_sweeps_resume(tmp_path, moved_with):
    """A trial's trainer finding its folder moved with the whole sweep (`mv runs/sweep-a runs/sweep-b`) recorded
    `lorapilot train --resume TRIAL`: that trains the trial outside its sweep, which then neither ranks it nor runs
    the trials it did not start. A trial goes on with the sweep's resume; a run of its own with train --resume."""
    from engine.rundir import RunDirMoved, read_status
    from engine.train.run import _moved

    t = trial(1e-4, "training")
    if moved_with == "its sweep":
        d, moved = tmp_path / "sw", tmp_path / "sw-moved"
        a_sweep(d, [t])
        run_dir(d, t, state="training", step=3)
        d.rename(moved)
        old, now = d / t["id"], moved / t["id"]
        go_on = f"lorapilot sweep --resume {moved}"
    else:
        old, now = tmp_path / "run", tmp_path / "run-moved"
        run_dir(tmp_path, t, state="training", step=3)
        (tmp_path / t["id"]).rename(now)
        go_on = f"lorapilot train --resume {now}"
    assert _moved(RunDirMoved(old, now)) == 1
    assert read_status(now)["hint"] == f"continue from its last checkpoint where it is now: {go_on}"


def test_a_sweep_directory_moved_while_it_runs_is_followed_and_says_where_it_went(tmp_path, monkeypatch):
    """`mv runs/sweep-a runs/sweep-b` while the sweep runs: each trial's trainer stops on finding its folder moved,
    but the driver wrote sweep.json at the old path and started the next trial there, making the folder again. It
    follows the move: reads its trials to their end where they are, starts no more, and says where it went."""
    from engine.errors import EXIT_RUN_FAILED
    from engine.sweep.driver import Driver

    d, moved = tmp_path / "sw", tmp_path / "sw-moved"
    running, pending = trial(1e-4, "training", adopt=True, started=time.time()), trial(2e-4)
    a_sweep(d, [running, pending])
    run_dir(d, running, [(2, 2.2)], state="training", step=3)
    monkeypatch.setattr("engine.train.launch.start_run", lambda *a, **k: pytest.fail("a trial started"))
    driver = Driver(d)
    d.rename(moved)
    trainer_said = f"the run directory {d / running['id']} was moved to {moved / running['id']} while training"
    write_status(moved / running["id"], state="failed", error=trainer_said)   # as its trainer records the move
    assert driver.run() == EXIT_RUN_FAILED
    assert not d.exists()
    s = read_sweep(moved)
    assert s["state"] == "failed" and s["error"] == (f"the sweep directory {d} was moved to {moved} while it ran: its "
                                                     "running trials stopped; go on where it is now: "
                                                     f"lorapilot sweep --resume {moved}"), s["error"]
    first, second = s["trials"]
    assert first["state"] == "failed" and first["error"] == trainer_said and first["eval_loss"] == 2.2, first
    assert second["state"] == "skipped"
    assert prepare_resume(moved, s, now=time.time()) and [t["state"] for t in s["trials"]] == ["pending", "pending"]


@pytest.mark.parametrize("devices, n_started", [([], 0), (["0", "1"], 2)])
def test_the_budget_check_times_trials_sharing_a_device_as_the_plan_does(tmp_path, monkeypatch, devices, n_started):
    """Two lanes on one device: each trial takes about twice its estimate (timed alone), as the plan counts
    (time_lanes); the driver's budget check used the estimate as it is and started trials that could not end inside
    the budget. On two devices they run side by side, each in its estimate's time."""

    d = tmp_path / "sw"
    now = time.time()
    sweep = a_sweep(d, [trial(1e-4), trial(2e-4)], run_started=now, lanes=2, devices=devices,
                    plan={"trial_s": 100.0, "budget_s": 150.0})
    driver, started = driver_starting(d, sweep, monkeypatch)
    assert len(started) == n_started
    if not n_started:
        assert "a trial takes about 3.3 min" in driver.sweep["trials"][0]["stop_reason"]


def test_a_resume_keeps_no_rung_loss_that_is_no_number():
    """sweep.json edited by hand: an eval loss of true was kept as a rung loss of 1, one no float holds ended the
    resume in an OverflowError. Neither is a number (engine.rundir.finite)."""
    from engine.sweep.resume import _record_rungs

    sweep = {"rungs": [2, 4], "rung_losses": {"2": {}, "4": {}}}
    _record_rungs(sweep, {"id": "a", "evals": [[2, True], [4, 10 ** 400]]})
    _record_rungs(sweep, {"id": "b", "evals": [[2, 1.5]]})
    assert sweep["rung_losses"] == {"2": {"b": 1.5}, "4": {}}


def _cut_after_its_first_trial(tmp_path, capsys, monkeypatch, raw: dict) -> tuple[Path, list[str]]:
    """A sweep of two trials started from the config `raw` (tmp_path/mine.yaml) into tmp_path/sw, its driver never
    spawned, cut (a pod preempted) once its first trial had finished: (sweep dir, the command line that started it)."""
    from types import SimpleNamespace

    import yaml

    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=DEAD_PID))
    d = tmp_path / "sw"
    argv = [str(cfg), "--lr", "1e-3,3e-3", "--r", "4", "--steps", "6", "--sweep-dir", str(d)]
    assert sweep_cli(capsys, *argv, "--yes", "--detach")[0] == 0
    sweep = read_sweep(d)
    sweep["trials"][0]["state"] = "done"
    write_sweep(d, sweep)
    run_dir(d, sweep["trials"][0], [(2, 2.0), (4, 1.8), (6, 1.7)], state="done", step=6)
    return d, argv


def _sweep_on_a_model_copy(tmp_path, capsys, monkeypatch, demo_model_dir):
    """_cut_after_its_first_trial on a copy of the demo model, to edit: (sweep dir, model, argv)."""
    import shutil

    import yaml

    model = shutil.copytree(demo_model_dir, tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"instruction": "say {w}", "output": "{w}"}}\n' for w in range(40)))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["model"], raw["dataset"]["path"] = str(model), str(data)
    d, argv = _cut_after_its_first_trial(tmp_path, capsys, monkeypatch, raw)
    return d, model, argv


def test_a_sweep_is_resumed_only_on_the_tokens_it_started_on(tmp_path, capsys, monkeypatch, demo_model_dir):
    """The chat template at the model's path edited between the cut and the resume, the data files as they were: the
    resume refused nothing, its trials not started trained on the new tokens and were ranked with the finished ones
    (the old tokens) without a word. The sweep records its examples' tokens when it starts (tokens_record, the rule of a
    run's checkpoints); a resume on other tokens is refused in the foreground, naming what changed, before any trial
    starts. A sweep an earlier lorapilot made (no record) resumes, saying it cannot check."""
    d, model, argv = _sweep_on_a_model_copy(tmp_path, capsys, monkeypatch, demo_model_dir)
    assert set(read_sweep(d)["tokens"]) >= {"train", "validation", "chat_template"}
    before = (d / "sweep.json").read_bytes()
    template = model / "chat_template.jinja"
    original = template.read_text()
    template.write_text(original.replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n"))
    for resume in (["--resume", str(d), "--yes"], [*argv, "--resume", "--yes"], ["--resume", str(d), "--dry-run"]):
        code, _, err = sweep_cli(capsys, *resume)
        assert code == 2 and "Traceback" not in err, err
        assert (f"{d}: its trials would train on other tokens than those made when the sweep started, so not "
                "resumed") in err, err
        assert f"chat template: the chat template at {model} changed" in err and "made of other tokens" in err, err
        assert (d / "sweep.json").read_bytes() == before

    template.write_text(original)   # put back: the tokens the trials trained on
    code, out, err = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach")
    assert code == 0 and "1 of 2 trials kept" in out and "no record of the tokens" not in out, err

    sweep = read_sweep(d)   # an earlier lorapilot's sweep
    del sweep["tokens"]
    sweep.update(state="stopped", ended=time.time())
    write_sweep(d, sweep)
    template.write_text(original.replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n"))
    code, out, err = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 0 and "the sweep holds no record of the tokens its trials trained on" in out, err


def test_a_sweep_resume_tokenizes_its_examples_once(tmp_path, capsys, monkeypatch, demo_model_dir):
    """`sweep --resume` with three trials to resume from their checkpoints tokenized the base config's examples
    (check_same_tokens), then each trial's again (check_resume, refuse_before_load): the same examples, since a trial
    differs from the base only in lr, r and its schedule. Made once, for the sweep's check and every trial's."""
    import json

    from types import SimpleNamespace

    import yaml

    from engine.config import save_config
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.sweep.plan import trial_config
    from engine.train import resume_check

    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"instruction": "say {w}", "output": "{w}"}}\n' for w in range(40)))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["model"], raw["dataset"]["path"] = str(demo_model_dir), str(data)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=DEAD_PID))
    d = tmp_path / "sw"
    assert sweep_cli(capsys, str(tmp_path / "mine.yaml"), "--lr", "1e-3,2e-3,3e-3", "--r", "4", "--steps", "6",
                     "--sweep-dir", str(d), "--yes", "--detach")[0] == 0
    sweep = read_sweep(d)
    sweep.update(state="stopped", ended=time.time())
    for t in sweep["trials"]:   # each stopped at step 2, with a checkpoint that records its tokens (the sweep's)
        t.update(state="stopped", stopped_by="user", stop_reason="stop requested")
        cfg = trial_config(load_config(tmp_path / "mine.yaml"), Trial(t["learning_rate"], t["r"]), sweep["steps"])
        run_dir(d, t, [(2, 2.1)], config=False, state="stopped", step=2, stop_reason="stop requested")
        save_config(cfg, d / t["id"] / CONFIG_FILE)
        ckpt = d / t["id"] / "checkpoints" / "checkpoint-2"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
        (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(resume_check.run_record(cfg, "adamw_torch",
                                                                                   tokens=sweep["tokens"])))
    write_sweep(d, sweep)
    made = []
    tokens_now = resume_check.tokens_now
    monkeypatch.setattr(resume_check, "tokens_now", lambda *a, **k: made.append(1) or tokens_now(*a, **k))
    code, out, err = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 0 and out.count("resumes from its checkpoint at step 2") == 3, out + err
    assert len(made) == 1


def test_a_trial_the_resume_would_refuse_is_refused_in_the_foreground(tmp_path, capsys, monkeypatch, demo_model_dir):
    """A trial cut short with its checkpoint, and the chat template at the model's path edited since, in a sweep whose
    own record holds no tokens (an earlier lorapilot's): `sweep --resume` said the sweep resumed, and its driver marked
    the trial failed later, in the background (its resume refused by the trainer's check). The trials it will resume
    are checked as `train --resume` checks a run, before the driver starts: exit 2, the trainer's words, the trial
    named; with the template put back the sweep resumes."""
    import json

    from engine.config import save_config
    from engine.data import load_examples
    from engine.data.fingerprint import tokens_record
    from engine.model import add_lora, load_base_model, load_tokenizer
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.sweep.plan import trial_config
    from engine.train.resume_check import run_record

    d, model, _ = _sweep_on_a_model_copy(tmp_path, capsys, monkeypatch, demo_model_dir)
    spawned = []
    monkeypatch.setattr("engine.sweep.driver.spawn_driver",
                        lambda sweep_dir, lock: spawned.append(1) or type("P", (), {"pid": DEAD_PID})())
    sweep = read_sweep(d)
    del sweep["tokens"]
    sweep["base_config"]["quantization"] = "none"   # as its trial's config.yaml is written below (the CPU's)
    cut = sweep["trials"][1]
    cut.update(state="stopped", stopped_by="user", stop_reason="stop requested")
    sweep.update(state="stopped", ended=time.time())
    write_sweep(d, sweep)
    cfg = trial_config(load_config(tmp_path / "mine.yaml"), Trial(cut["learning_rate"], cut["r"]), sweep["steps"])
    cfg.quantization = "none"   # the CPU's
    run_dir(d, cut, [(2, 2.1)], config=False, state="stopped", step=2, stop_reason="stop requested")
    save_config(cfg, d / cut["id"] / CONFIG_FILE)
    ckpt = d / cut["id"] / "checkpoints" / "checkpoint-2"
    base, _ = load_base_model(cfg.model, cfg.quantization, cfg.training.precision)
    add_lora(base, cfg, gradient_checkpointing=False).save_pretrained(ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    tok = load_tokenizer(cfg.model)
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(
        cfg, "adamw_torch", tokens=tokens_record(load_examples(cfg, tok), tok))))
    template = model / "chat_template.jinja"
    original = template.read_text()
    template.write_text(original.replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n"))
    before = (d / "sweep.json").read_bytes()

    code, out, err = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach")
    assert code == 2 and not spawned and "Traceback" not in err, err
    assert (f"{d}: trial {cut['id']} cannot go on, so the sweep is not resumed: {d / cut['id'] / CONFIG_FILE}: this "
            "resume would train on other tokens than checkpoint-2 was trained on") in err, err
    assert f"chat template: the chat template at {model} changed" in err and "another --sweep-dir" in err, err
    assert (d / "sweep.json").read_bytes() == before

    template.write_text(original)
    code, out, err = sweep_cli(capsys, "--resume", str(d), "--yes", "--detach")
    assert code == 0 and spawned, err
    assert f"{cut['id']}: stopped at step 2: resumes from its checkpoint at step 2" in out


def test_a_chat_template_edited_while_the_sweep_runs_starts_no_more_trials(tmp_path, capsys, monkeypatch,
                                                                          demo_model_dir):
    """The same mix as an edited data file, by the tokens: the chat template at the model's path edited between two
    trials of a running sweep, the data files as they were. The driver compares what makes the tokens (the tokenizer,
    its template, lorapilot's data rules) with the sweep's record before each trial; the sweep fails naming what
    changed, its trials not started wait for a resume."""
    from engine.sweep.driver import Driver

    d, model, _ = _sweep_on_a_model_copy(tmp_path, capsys, monkeypatch, demo_model_dir)
    second = read_sweep(d)["trials"][1]
    monkeypatch.setattr("engine.train.launch.start_run", lambda *a, **k: pytest.fail("a trial started on other tokens"))
    assert Driver(d)._token_makers_changed() == []   # as the sweep recorded them
    template = model / "chat_template.jinja"
    template.write_text(template.read_text().replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n"))
    driver = Driver(d)
    driver._start_more()
    assert not driver.handles and driver.stopping == "failed"
    assert driver.abort_reason == (f"the way its tokens are made changed since the sweep started, so {second['id']} "
                                   f"and the trials after it were not started: chat template: the chat template at "
                                   f"{model} changed")


@pytest.mark.parametrize("edit", [("learning_rate: 0.0001", "learning_rate: 0.05"), ("r: 4", "r: 64"),
                                  ("max_steps: 6", "max_steps: 60")])
def test_a_trial_whose_config_was_edited_by_hand_is_not_resumed(tmp_path, edit):
    """A trial's config.yaml edited (its learning rate 1e-4 made 0.05): `sweep --resume` noted 'config change applied:
    training.learning_rate 0.0001 -> 0.05' and the trial trained on at 0.05, its losses then ranked in the table as
    lr 1e-4's. The trials are compared only under the sweep's plan: refused, naming the trial, the key and both
    values, before any trial is checked or the driver starts."""
    from engine.errors import UserError
    from engine.sweep.resume import check_trials_resume

    d = tmp_path / "sw"
    edited, other = trial(1e-4), trial(2e-4)
    a_sweep(d, [edited, other])
    run_dir(d, edited, [(2, 2.1)], state="stopped", step=2)
    config = d / edited["id"] / CONFIG_FILE
    assert edit[0] in config.read_text()
    config.write_text(config.read_text().replace(edit[0], edit[1]))
    with pytest.raises(UserError) as e:
        check_trials_resume(d, read_sweep(d), False)
    text = unwrapped(str(e.value))
    key, was, now = edit[0].split(": ")[0], edit[0].split(": ")[1], edit[1].split(": ")[1]
    assert f"{d}: trial {edited['id']}'s {CONFIG_FILE} is not the one the sweep wrote" in text, text
    assert key in text and was.rstrip("0") in text and now in text and "another --sweep-dir" in text, text


def test_train_resume_of_a_sweeps_trial_says_it_trains_it_outside_its_sweep(tmp_path, capsys, monkeypatch):
    """`lorapilot train --resume SWEEP/TRIAL` resumed the trial alone without a word: its sweep neither ranks what it
    trains now nor runs the trials it did not start (and, running, shares its GPUs with it). Said, with the sweep's
    resume; a run that is no trial is resumed without the note."""
    from engine.train import launch

    d = tmp_path / "sw"
    cut = trial(1e-4, "stopped", stopped_by="user", stop_reason="stop requested")
    a_sweep(d, [cut], state="stopped")
    run_dir(d, cut, [(2, 2.1)], state="stopped", step=2)
    alone = tmp_path / "alone"
    alone.mkdir()
    monkeypatch.setattr(launch, "resume_run", lambda rd, **kw: launch.RunHandle(Path(rd), DEAD_PID))

    assert main(["train", "--resume", str(d / cut["id"]), "--detach"]) == 0
    err = unwrapped(capsys.readouterr().err)
    assert f"{d / cut['id']} is a trial of the sweep {d}: resumed alone, outside its sweep" in err, err
    assert f"lorapilot sweep --resume {d} goes on with the sweep" in err, err
    assert main(["train", "--resume", str(alone), "--detach"]) == 0
    assert "trial" not in capsys.readouterr().err


def test_a_sweep_on_a_data_path_relative_to_the_working_folder_is_resumed(tmp_path, monkeypatch):
    """A sweep whose data path is relative to the working folder (data/train.jsonl, not beside the config file):
    sweep.json's base keeps it relative, the trial's config.yaml (save_config, from another folder) has it absolute,
    and every `sweep --resume` refused the trial's config as 'not the one the sweep wrote'. The paths are compared
    as the files they name; one naming another file is still refused."""
    from engine.config import save_config
    from engine.errors import UserError
    from engine.sweep.plan import trial_config
    from engine.sweep.resume import check_trial_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    demo = load_config(DEMO_CONFIG)
    Path("data/train.jsonl").write_bytes(Path(demo.dataset.path).read_bytes())
    demo.dataset.path = "data/train.jsonl"
    d = tmp_path / "sw"
    t = trial(1e-4)
    sweep = a_sweep(d, [t], base_config=demo.to_dict())
    (d / t["id"]).mkdir()
    config = d / t["id"] / CONFIG_FILE
    save_config(trial_config(demo, Trial(t["learning_rate"], t["r"]), 6), config)
    assert f"path: {tmp_path / 'data' / 'train.jsonl'}" in config.read_text()
    check_trial_config(d, sweep, t)

    Path("data/other.jsonl").write_bytes(Path("data/train.jsonl").read_bytes())
    config.write_text(config.read_text().replace("train.jsonl", "other.jsonl"))
    with pytest.raises(UserError, match="not the one the sweep wrote"):
        check_trial_config(d, sweep, t)


def test_a_sweep_started_on_a_data_path_relative_to_its_folder_is_resumed_from_another(tmp_path, capsys,
                                                                                         monkeypatch):
    """A sweep started in folder A on data/train.jsonl (relative to A, not beside the config): sweep.json's base kept
    the path as typed, and `sweep --resume` from folder B read it against B: no data there (refused as gone), or
    another file of that name. The trials' config.yaml name A's file; the sweep records the same (absolute), so a
    resume reads A's file from any folder; resumed with its config from A, the same file is the same config."""
    import yaml

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "data").mkdir(parents=True)
    demo = DEMO_CONFIG.parent / "demo" / "train.jsonl"
    (a / "data" / "train.jsonl").write_bytes(demo.read_bytes())
    (b / "data" / "train.jsonl").write_bytes(demo.read_bytes().replace(b"window", b"wodniw", 1))   # another file
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = "data/train.jsonl"
    monkeypatch.chdir(a)
    d, argv = _cut_after_its_first_trial(tmp_path, capsys, monkeypatch, raw)
    assert read_sweep(d)["base_config"]["dataset"]["path"] == str(a / "data" / "train.jsonl")
    code, out, err = sweep_cli(capsys, *argv, "--resume", "--dry-run")   # its own command line, from A
    assert code == 0 and "1 of 2 trials kept" in out, err
    monkeypatch.chdir(b)
    code, out, err = sweep_cli(capsys, "--resume", str(d), "--dry-run")
    assert code == 0 and "1 of 2 trials kept" in out, err
