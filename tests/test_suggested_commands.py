"""Commands lorapilot tells the user to copy name the run directory as a shell reads it back: a path with a space
was printed bare (`lorapilot stop runs/my run`), which a shell splits into two arguments."""

from __future__ import annotations

import os
import shlex
import time

import pytest

from conftest import DEMO_CONFIG, unwrapped
from engine.rundir import RunLock, write_status


def command_after(text: str, label: str) -> list[str]:
    """The command on the line that starts with label, as a shell splits it."""
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(label))
    return shlex.split(line.strip().removeprefix(label))


def test_train_detach_says_how_to_watch_and_stop_a_run_whose_folder_has_a_space(tmp_path, monkeypatch, capsys):
    from engine import cli
    from engine.train import launch

    class Started:
        pid = os.getpid()

        def poll(self):   # ended at once without a word (what is printed is tested, not the trainer)
            return 0

    monkeypatch.setattr(launch, "check_inputs", lambda cfg: None)
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: Started())   # what is printed, not the trainer, is tested
    run = tmp_path / "my runs" / "first run"
    assert cli.main(["train", str(DEMO_CONFIG), "--run-dir", str(run), "--detach"]) == 0
    out = capsys.readouterr().out
    assert command_after(out, "watch:") == ["lorapilot", "monitor", str(run)], out
    assert command_after(out, "stop:") == ["lorapilot", "stop", str(run)], out


def test_a_stopped_run_says_how_to_resume_it_with_a_space_in_its_folder(tmp_path, capsys):
    from engine.cli import _report_end

    run = tmp_path / "my run"
    run.mkdir()
    write_status(run, state="stopped", step=4)
    assert _report_end(run, 0) == 0
    assert command_after(capsys.readouterr().out, "stopped at step 4; resume:") == [
        "lorapilot", "train", "--resume", str(run)]


def test_a_run_in_use_says_how_to_stop_it_with_a_space_in_its_folder(tmp_path):
    from engine.errors import UserError

    run = tmp_path / "my run"
    run.mkdir()
    held = RunLock.acquire(run)
    try:
        with pytest.raises(UserError) as e:
            RunLock.acquire(run)
    finally:
        held.release()
    assert command_after(e.value.fix, "wait for it, or stop it first:") == ["lorapilot", "stop", str(run)]


def test_a_stalled_run_says_how_to_resume_it_with_a_space_in_its_folder(tmp_path):
    from engine.diagnose.stall import no_progress

    run = tmp_path / "my run"
    found = no_progress({"state": "training", "step": 3, "updated": time.time() - 3600}, None, time.time(), str(run))
    fix = unwrapped(found.fix)
    resume = fix[fix.index("lorapilot train --resume"):].rstrip(".")
    assert shlex.split(resume) == ["lorapilot", "train", "--resume", str(run)], fix


@pytest.mark.parametrize("end", ["done", "stopped"])
def test_train_detach_of_a_run_that_ended_while_its_data_was_checked_says_its_end(tmp_path, monkeypatch, capsys, end):
    """A run so short (the demo at a few steps) that its trainer had ended, with 0, before the data checks' wait
    returned: `train --detach` printed pid: and watch: for a process that was gone, or about to go (its end read
    from status.json as past the data checks). Its end is said, as the foreground says it."""
    import subprocess
    import sys

    from engine import cli
    from engine.train import launch

    def finished(run_dir, *a, **k):   # its end recorded, the process exits a moment later (then the wait asks)
        write_status(run_dir, state=end, step=4)
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    monkeypatch.setattr(launch, "check_inputs", lambda cfg: None)
    monkeypatch.setattr(launch, "_spawn", finished)
    run = tmp_path / "run"
    assert cli.main(["train", str(DEMO_CONFIG), "--run-dir", str(run), "--detach"]) == 0
    out = capsys.readouterr().out
    assert "pid:" not in out and "watch:" not in out, out
    assert (f"done: adapter in {run / 'adapter'}" if end == "done" else "stopped at step 4; resume:") in out, out
