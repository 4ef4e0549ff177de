"""conftest's clean-up: a detached process left running by a failed test is stopped; nobody else's is touched.
And its collector setting: rarer cyclic collections in pytest's own process only; and one torch thread everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import TEST_GC_THRESHOLDS, TEST_TORCH_THREADS, stop_detached_runs

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


def test_the_suite_collects_cycles_rarely_and_its_subprocesses_as_python_does():
    """A library or test that resets the thresholds would silently give back the collector's ~15 % of the wizard
    tests' CPU time; the trainers and CLI processes the tests start must run as a user's do."""
    import gc

    assert gc.get_threshold() == TEST_GC_THRESHOLDS
    child = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold())"], capture_output=True,
                           text=True, check=True)
    assert child.stdout.strip() == "(700, 10, 10)"


def test_the_suite_and_the_processes_it_starts_run_torch_on_one_thread():
    """Trainers started side by side with a thread per core each spun on CI's two cores (6x the CPU time of one
    thread for the demo's steps, conftest.pytest_configure): every process of the suite inherits one thread."""
    import torch

    assert torch.get_num_threads() == int(TEST_TORCH_THREADS)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS'))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == TEST_TORCH_THREADS
