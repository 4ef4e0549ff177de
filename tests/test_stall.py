"""no_progress: a live trainer that stopped finishing steps, seen from the run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from engine.diagnose.stall import STALL_MIN_S, STALL_STEPS, no_progress
from engine.runs_list import STALLED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run  # noqa: E402

NOW = 1_800_000_000.0


def status(**kw) -> dict:
    return {"state": "training", "step": 40, "updated": NOW - 10, **kw}


def test_quiet_spells_below_the_limit_are_not_news():
    assert no_progress(status(step_s=2.0), NOW - 10, NOW) is None
    assert no_progress(status(updated=NOW - STALL_MIN_S + 5, step_s=2.0), None, NOW) is None
    # a run of 30 s steps may be quiet for 20 of them
    assert no_progress(status(updated=NOW - 500, step_s=30.0), None, NOW) is None
    assert no_progress(status(updated=NOW - STALL_STEPS * 30.0 - 1, step_s=30.0), None, NOW) is not None


def test_a_time_or_pace_no_float_holds_is_no_number():
    """An integer JSON allows and no float holds (a hand-edited status.json or metrics line): the monitor's and
    diagnose's stall check ended in an OverflowError on the time, and a pace of it hid every stall."""
    huge = 10 ** 400
    assert no_progress(status(updated=huge), huge, NOW) is None   # no sign of life known: nothing to say
    assert no_progress(status(updated=NOW - 3600, step_s=huge), None, NOW) is not None


@pytest.mark.parametrize("state", ["loading", "evaluating", "done", "failed", "stopped"])
def test_only_a_training_run_can_stall(state):
    assert no_progress(status(state=state, updated=NOW - 3600, step_s=2.0), None, NOW) is None


def test_the_latest_sign_of_life_counts():
    assert no_progress(status(updated=NOW - 3600, step_s=2.0), NOW - 20, NOW) is None  # a record 20 s ago
    assert no_progress(None, None, NOW) is None


def test_first_step_and_several_gpus_get_their_own_words():
    first = no_progress(status(step=0, updated=NOW - 600, world_size=2), None, NOW)
    assert first.code == "no_progress" and first.severity == "warning" and first.step == 0
    assert "No step has finished in 10 min" in first.message and "compile" in first.message
    assert "training.num_gpus: 1" in first.fix
    later = no_progress(status(updated=NOW - 900, step_s=2.5), None, NOW)
    assert "stuck at step 40" in later.message and "~2.5 s" in later.evidence
    assert "num_gpus" not in later.fix and "kill PID" in later.fix and "--resume" in later.fix


def test_diagnose_reports_a_live_run_that_went_quiet(tmp_path):
    import os
    import time

    # this test's own process stands in for the live trainer; its last report was 15 minutes ago
    quiet = make_run(tmp_path / "quiet", steps_done=50, pid=os.getpid(), now=time.time() - 900)
    r = run_cli("diagnose", str(quiet), "--json")
    assert r.returncode == 0, r.stderr
    findings = json.loads(r.stdout)
    assert findings[0]["code"] == "no_progress"
    assert f"kill {os.getpid()}" in findings[0]["fix"] and f"--resume {quiet}" in findings[0]["fix"]
    fresh = make_run(tmp_path / "fresh", steps_done=50, pid=os.getpid())
    r = run_cli("diagnose", str(fresh), "--json")
    assert "no_progress" not in [f["code"] for f in json.loads(r.stdout)]


def test_runs_marks_a_live_run_that_went_quiet(tmp_path):
    import os
    import time

    make_run(tmp_path / "runs" / "quiet", steps_done=50, pid=os.getpid(), now=time.time() - 900)
    make_run(tmp_path / "runs" / "fresh", steps_done=50, pid=os.getpid())
    r = run_cli("runs", "--root", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert STALLED in lines["quiet"] and STALLED not in lines["fresh"]  # the state column since runs fits 80
    r = run_cli("runs", "--root", str(tmp_path / "runs"), "--json")
    assert {Path(x["run_dir"]).name: x["no_progress"] for x in json.loads(r.stdout)} == {"quiet": True,
                                                                                         "fresh": False}


def test_the_trainers_own_step_time_sets_the_limit(finished_demo_run):
    from engine.rundir import read_status

    # the trainer writes its recent seconds per step into status.json: readers of status alone agree
    assert read_status(finished_demo_run)["step_s"] > 0
    assert no_progress(status(updated=NOW - 500, step_s=30.0), None, NOW) is None
    assert no_progress(status(updated=NOW - 500, step_s=2.0), None, NOW) is not None


def test_a_long_evaluation_is_no_stall_and_a_hung_one_is(tmp_path, monkeypatch):
    """An evaluation writes no step: on a slow card a large validation split took over five minutes, and the
    monitor, `lorapilot runs` and `diagnose` called the run stuck (`stalled?`) while it evaluated. The trainer now
    says it evaluates, batch by batch (at most every REFRESH_S); an evaluation whose batches stop is still news."""
    from engine.rundir import read_status
    from engine.runs_list import stall
    from engine.train import callback as cbmod

    clock = [NOW]
    monkeypatch.setattr(cbmod.time, "time", lambda: clock[0])
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: clock[0])

    class State:
        global_step, max_steps = 40, 1000

    class Collator:
        tokens_seen = trained_tokens_seen = 0

    class Flag:
        def check_place(self) -> None:
            pass

        def is_set(self) -> bool:
            return False

    cb = cbmod.RunDirCallback(tmp_path, collator=Collator(), steps_per_epoch=100, stop_flag=Flag(), stop_on=[])
    cb.on_train_begin(None, State, None)
    for _ in range(40):
        clock[0] += 2.0
        cb.on_step_end(None, State, None)
    for _ in range(600):   # ten minutes of evaluation batches
        clock[0] += 1.0
        cb.on_prediction_step(None, State, None)
    st = read_status(tmp_path)
    assert st["state"] == "evaluating" and no_progress(st, None, clock[0]) is None
    assert stall(st["state"], st, clock[0], str(tmp_path)) is None
    hung = clock[0] + STALL_MIN_S + 1
    assert no_progress(st, None, hung) is not None and stall(st["state"], st, hung, str(tmp_path)) is not None
