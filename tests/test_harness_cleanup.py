"""conftest's clean-up: a detached process left running by a failed test is stopped; nobody else's is touched."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import stop_detached_runs

SLEEPER = "import time, sys; time.sleep(120)"


def _detached(run_dir) -> subprocess.Popen:
    # Like the trainer: its own session, the run directory on its command line, its pid in status.json.
    run_dir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, str(run_dir)], start_new_session=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "training", "pid": proc.pid}))
    return proc


def test_a_left_running_trainer_is_stopped_and_a_stranger_is_not(tmp_path):
    ours = _detached(tmp_path / "runs" / "a")
    stranger = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    (tmp_path / "runs" / "b").mkdir()  # a status.json naming a pid that is not this run's process
    (tmp_path / "runs" / "b" / "status.json").write_text(json.dumps({"state": "training", "pid": stranger.pid}))
    try:
        assert stop_detached_runs(tmp_path) == [ours.pid]
        assert ours.wait(timeout=30) is not None
        assert stranger.poll() is None
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()
