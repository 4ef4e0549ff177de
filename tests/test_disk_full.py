"""A full disk while writing what the user asked for: a clear message naming where (exit 2), nothing half-written."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from engine.errors import UserError


@pytest.mark.parametrize("how", ["oserror", "copytree"])
def test_an_export_onto_a_full_disk_says_so(tmp_path, how):
    """`lorapilot export RUN --out /full/x` printed shutil.Error's traceback (one '[Errno 28] No space left on device'
    tuple per file of the adapter), exit 1; now a UserError naming OUT and what to do, the hidden folder removed."""
    from engine.export.merge import writing

    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        with writing(out) as tmp:
            (tmp / "adapter_config.json").write_text("{}")
            if how == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "adapter_model.safetensors"))
            raise shutil.Error([("src/a", str(tmp / "a"), "[Errno 28] No space left on device: 'src/a' -> 'a'")])
    assert str(e.value).startswith(f"{out}: no space left on device"), str(e.value)
    assert "free space" in e.value.fix and "--out" in e.value.fix
    assert os.listdir(tmp_path) == []   # no OUT, no hidden .out.partial-*


def test_another_export_error_is_not_called_a_full_disk(tmp_path):
    from engine.export.merge import writing

    with pytest.raises(OSError):
        with writing(tmp_path / "out"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert os.listdir(tmp_path) == []


# What torch.save raises when the disk fills under its zip writer: no errno, no "No space left" (measured: a demo run
# on a 1.5 MB tmpfs failed its first checkpoint so, and status.json's error said only this).
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 580480 vs 580372"


def test_a_checkpoint_cut_by_a_full_disk_is_said_to_be_one(tmp_path, monkeypatch):
    """A run whose checkpoint filled the disk failed with 'RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos 580480 vs 580372' and no hint: now 'no space left on device' and the free-space hint, where the
    disk has no room left; the same error on a disk with room is not called a full disk."""
    from collections import namedtuple

    import engine.rundir as rundir

    usage = namedtuple("usage", "total used free")
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    err = RuntimeError(TORCH_SHORT_WRITE)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 4096))
    assert rundir.disk_full_path(err, ckpts) == str(ckpts)
    assert rundir.disk_full_path(err, ckpts / "checkpoint-2" / "optimizer.pt") == str(ckpts / "checkpoint-2" /
                                                                                         "optimizer.pt")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage(10**9, 10**8, 9 * 10**8))
    assert rundir.disk_full_path(err, ckpts) is None
    assert rundir.disk_full_path(RuntimeError("CUDA error"), ckpts) is None


def test_a_sweep_started_on_a_full_disk_says_so_and_leaves_its_folder_empty(tmp_path, monkeypatch, demo_model_dir):
    """`lorapilot sweep CONFIG --sweep-dir /full/s --yes` printed "OSError: [Errno 28] No space left on device"'s
    traceback (measured on an 8 kB tmpfs: sweep.json and base_config.yaml written, the lock's pid not), exit 1."""
    import argparse

    import engine.sweep.command as command
    from conftest import DEMO_CONFIG

    def full(src, dst):   # the sweep's copy of the config, cut off (shutil is looked up when called: nothing keeps it)
        Path(dst).write_text("mod")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    monkeypatch.setattr(command.shutil, "copyfile", full)
    sweep_dir = tmp_path / "s"
    a = argparse.Namespace(target=str(DEMO_CONFIG), lr="1e-3", r="4", steps=3, budget_minutes=None,
                           price_per_hour=None, parallel=None, gpu=None, no_halving=False, sweep_dir=str(sweep_dir),
                           yes=True, detach=True, dry_run=False, apply=None, force=False, resume=False)
    with pytest.raises(UserError) as e:
        command.run(a)
    assert str(e.value).startswith(f"{sweep_dir}: no space left on device"), str(e.value)
    assert "free space" in e.value.fix
    assert sorted(os.listdir(sweep_dir)) == ["sweep.lock"]   # as a start that never began: used again as it is


def test_a_launcher_whose_lock_cannot_name_its_trainer_still_returns_it(tmp_path, monkeypatch):
    """The holder's pid is written into the lock file after the trainer (or sweep driver) started: a full disk there
    raised in the launcher, which crashed with the trainer already running unseen."""
    from engine.rundir import RunLock

    lock = RunLock.acquire(tmp_path)

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "pwrite", full)
    lock.record_holder(1234)   # no raise: the lock itself (flock) is held all the same
    lock.release()


def test_a_sweep_whose_driver_died_without_a_word_is_not_reported_as_finished(tmp_path, capsys):
    """A sweep on a disk with room for sweep.json but not for the driver's first write: the driver died (its log
    empty, sweep.json still 'planned'), and `sweep --yes` printed the table and 'no winner: no trial reached an
    evaluation without diverging', exit 0. Now: the sweep did not run, the driver's exit code and its log, exit 1."""
    import subprocess
    import sys

    from conftest import DEMO_CONFIG
    from engine.config import load_config
    from engine.sweep.command import _follow
    from engine.sweep.sweepdir import write_sweep

    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    trial = {"id": "lr1e-3_r4", "learning_rate": 1e-3, "r": 4, "alpha": 8, "run_dir": str(sweep_dir / "lr1e-3_r4"),
             "state": "pending", "step": 0, "stopped_by": None, "stop_reason": None}
    write_sweep(sweep_dir, {"name": "sw", "state": "planned", "driver_pid": None, "steps": 3, "rungs": [1, 2],
                            "grid": {"learning_rate": [1e-3], "r": [4]}, "halving": True, "lanes": 1, "devices": [],
                            "plan": {"trial_s": None, "budget_s": None}, "started": None, "trials": [trial],
                            "base_config": load_config(DEMO_CONFIG).to_dict(), "winner": None, "table": None})
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    proc.wait()
    assert _follow(sweep_dir, proc, None, poll_s=0) == 1
    out, err = capsys.readouterr()
    assert "no winner" not in out
    assert "sweep failed: its driver ended (exit code 1) before" in " ".join(err.split()), err
    assert str(sweep_dir / "sweep.log") in err


def test_a_disk_full_before_any_checkpoint_says_there_is_none_to_continue_from(tmp_path):
    """The first checkpoint's save filled the disk: the hint said 'or lower training.save_total_limit, then continue
    from the last checkpoint' of a run that had none (its resume starts at step 0). Said so now; with a checkpoint
    whose files read whole, as before."""
    import json

    from engine.train.run import disk_full_hint

    run = tmp_path / "run"
    cut = run / "checkpoints" / "checkpoint-4"   # the save that failed: its state file, written last, cut off
    cut.mkdir(parents=True)
    (cut / "trainer_state.json").write_text('{"global_st')
    hint = disk_full_hint(run, str(cut))
    assert "save_total_limit" not in hint and "last checkpoint" not in hint, hint
    assert hint == (f"free space on {cut}'s disk, then train it again from step 0 (no checkpoint was saved): "
                    f"lorapilot train --resume {run}")
    kept = run / "checkpoints" / "checkpoint-2"
    kept.mkdir()
    (kept / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert disk_full_hint(run, str(cut)) == (f"free space on {cut}'s disk (or lower training.save_total_limit), then "
                                             f"continue from the last checkpoint: lorapilot train --resume {run}")


def test_the_disk_full_hint_offers_to_continue_only_from_a_checkpoint_the_resume_would_take(tmp_path):
    """The hint tested checkpoints by a rule of its own: one the resume skips (it lacks a file the run's other
    checkpoints have: its save or its deletion was cut off) was offered as 'continue from the last checkpoint',
    and the resume trained again from step 0. The resume's rule (rundir.usable_checkpoint) says it now."""
    import json

    from engine.rundir import usable_checkpoint
    from engine.train.run import disk_full_hint

    run = tmp_path / "run"
    cut = run / "checkpoints" / "checkpoint-4"
    cut.mkdir(parents=True)
    (cut / "trainer_state.json").write_text('{"global_st')
    (cut / "optimizer.pt").write_bytes(b"")
    old = run / "checkpoints" / "checkpoint-2"
    old.mkdir()
    (old / "trainer_state.json").write_text(json.dumps({"global_step": 2}))   # its optimizer.pt gone
    assert usable_checkpoint(run)[0] is None
    assert "no checkpoint was saved" in disk_full_hint(run, str(cut))
