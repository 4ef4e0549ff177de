"""Runs whose folder or files this user may not read (another user's, chmod 000): each costs its own row only.

The suite may run as root, whom permissions do not stop: a folder is made unreadable here by refusing, as the OS
refuses a user without the right, every stat, listing and open inside it (EACCES)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest


def deny(monkeypatch, *paths: Path, listing: bool = True) -> None:
    """os.stat, os.open and os.listdir refuse what lies inside each folder in `paths` (and list it when listing), or
    the file itself, as for a folder or file of mode 000 owned by another user."""
    real_stat, real_open, real_listdir = os.stat, os.open, os.listdir

    def refused(p, folder_too: bool) -> bool:
        s = os.fspath(p) if not isinstance(p, int) else ""
        return any(s.startswith(str(d) + os.sep) or (folder_too and s == str(d)) for d in paths)

    def no(p):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))

    def stat(p, *a, **k):
        return no(p) if refused(p, False) else real_stat(p, *a, **k)

    def open_(p, *a, **k):
        return no(p) if refused(p, True) else real_open(p, *a, **k)

    def listdir(p="."):
        return no(p) if listing and refused(p, True) else real_listdir(p)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "listdir", listdir)


def a_run(folder: Path, state: str = "done") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: m\n")
    (folder / "status.json").write_text(json.dumps({"state": state, "step": 4, "max_steps": 4}))
    (folder / "metrics.jsonl").write_text('{"kind": "train", "step": 2, "time": 1, "loss": 1.5}\n')
    return folder


@pytest.mark.parametrize("which", ["folder", "metrics", "sweep"])
def test_runs_lists_the_others_beside_an_unreadable_run(tmp_path, monkeypatch, which):
    """A folder in the runs root this user may not read (a run of another user's, a disk's lost+found): `lorapilot
    runs` and the app's runs list stopped at it ("'/.../status.json': Permission denied", exit 2: no run listed);
    a run whose metrics.jsonl is unreadable did the same."""
    from engine.runs_list import collect

    root = tmp_path / "runs"
    a_run(root / "mine")
    theirs = a_run(root / "theirs")
    if which == "folder":
        deny(monkeypatch, theirs)
    elif which == "metrics":
        deny(monkeypatch, theirs / "metrics.jsonl")
    else:
        sweep = root / "sweep-x"
        sweep.mkdir()
        (sweep / "sweep.json").write_text("{}")
        deny(monkeypatch, sweep)
    problems: list[str] = []
    rows = collect(root, problems=problems)
    names = [r.name for r in rows]
    assert "mine" in names
    if which == "metrics":   # its status is readable: listed, without losses
        assert "theirs" in names and not problems
    else:
        assert len(problems) == 1 and "Permission denied" in problems[0] and "skipped" in problems[0], problems


@pytest.mark.parametrize("which", ["folder", "metrics.jsonl", "train.log", "status.json"])
def test_the_monitor_on_a_run_it_may_not_read_says_so(tmp_path, monkeypatch, which):
    """`lorapilot monitor` on another user's run (a folder or file of mode 000): the feed's poll raised
    PermissionError in the monitor's worker, which ended the app with a traceback. Now the poll says which file it
    cannot read, where the monitor says why status.json is unreadable, and goes on."""
    from tui.models.run_feed import RunFeed

    run = a_run(tmp_path / "theirs")
    (run / "train.log").write_text("step 2\n")
    feed = RunFeed(run, sample_gpus=False)
    deny(monkeypatch, run if which == "folder" else run / which)
    up = feed.poll()
    assert up.status_error is not None and "Permission denied" in up.status_error, up
    assert (which if which != "folder" else "unreadable") in up.status_error
    again = feed.poll()   # and again, each second: nothing new (unchanged), or the same said again
    assert again.status is None or (again.status_error, again.status) == (up.status_error, up.status), again


def test_monitor_of_a_run_folder_it_may_not_read_is_refused_with_the_os_reason(tmp_path, monkeypatch):
    """`lorapilot monitor RUN` on another user's folder of mode 000: its check for status.json raised PermissionError
    before the app started, a traceback. Now refused (exit 2 by run_app) naming the folder and the OS's reason."""
    from engine.errors import UserError
    from tui.launch_app import app_options

    run = a_run(tmp_path / "theirs")
    deny(monkeypatch, run)
    with pytest.raises(UserError) as e:
        app_options(["monitor", str(run)])
    assert str(e.value).startswith(f"{run}: Permission denied"), str(e.value)


def test_a_train_log_readable_later_is_read_then(tmp_path, monkeypatch):
    """train.log unreadable (mode 000) and then made readable (chmod), unchanged meanwhile: the follower had kept its
    size and mtime from before the open failed, so it never read the file again. It does once it opens."""
    from tui.models.run_feed import LogFollower

    log = tmp_path / "train.log"
    log.write_text("loading\nstep 2\n")
    follower = LogFollower(log)
    with monkeypatch.context() as m:
        deny(m, log)
        with pytest.raises(PermissionError):
            follower.read_new()
    assert follower.read_new() == (["loading", "step 2"], True)


@pytest.mark.parametrize("which", ["metrics.jsonl", "train.log"])
def test_an_unreadable_file_beside_a_readable_status_keeps_the_plan_and_clears_when_read(tmp_path, monkeypatch,
                                                                                          which):
    """status.json readable, metrics.jsonl or train.log not: every poll sent the last status again with a step total
    of 0 and no schedule (the monitor copies all three: the run's total and its evaluations and saves were lost to
    the ETA), an update and a redraw each second, and the error stayed once the file could be read again. Now the
    error goes once, with the plan as last read, and None goes when every read succeeds again."""
    from tui.models.run_feed import RunFeed

    run = a_run(tmp_path / "theirs", state="training")
    status = {"state": "training", "step": 2, "max_steps": 40,
              "schedule": {"eval_steps": 10, "save_steps": 20, "eval_examples": 8}}
    (run / "status.json").write_text(json.dumps(status))
    (run / "train.log").write_text("step 2\n")
    feed = RunFeed(run, sample_gpus=False)
    first = feed.poll()
    assert first.max_steps == 40 and first.schedule is not None and first.status_error is None, first
    with (run / which).open("a") as f:   # grows, so that train.log is opened again too
        f.write('{"kind": "train", "step": 3, "time": 2, "loss": 1.4}\n')
    with monkeypatch.context() as m:
        deny(m, run / which)
        up = feed.poll()
        assert up.status_error is not None and which in up.status_error, up
        assert (up.status, up.max_steps, up.schedule) == (first.status, 40, first.schedule), up
        again = feed.poll()
        assert again.status is None, again   # nothing new to say
    back = feed.poll()
    assert back.status_error is None and (back.status, back.max_steps, back.schedule) == (
        first.status, 40, first.schedule), back
    assert feed.poll().status is None


def test_a_status_readable_later_is_read_then(tmp_path, monkeypatch):
    """status.json unreadable (mode 000, another user's) and then made readable (chmod), unchanged meanwhile: the feed
    kept its size and mtime from the failed read, so it never read the file again and the monitor said it unreadable
    until the trainer next wrote it. It is tried again each poll while it cannot be opened, and read once it can;
    not again after that while it is unchanged, and the error is said once, not each poll."""
    from tui.models.run_feed import RunFeed

    run = a_run(tmp_path / "theirs", state="training")
    feed = RunFeed(run, sample_gpus=False)
    with monkeypatch.context() as m:
        deny(m, run / "status.json")
        up = feed.poll()
        assert up.status_error is not None and "status.json" in up.status_error and "Permission denied" in \
            up.status_error, up
        assert feed.poll().status is None   # still unreadable: nothing new to say
    back = feed.poll()
    assert back.status_error is None and back.status == {"state": "training", "step": 4, "max_steps": 4}, back
    assert back.max_steps == 4
    assert feed.poll().status is None
