"""Run directories that cannot be hijacked, corrupted or silently lost (issue 24), without training.

The tests that need a real trainer are in test_run_safety_e2e.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import cache_hub_dataset, fake_adapter, run_cli, unwrapped
from engine.diagnose.live import LiveDiagnostics, diagnose_records
from engine.rundir import (MetricsTail, MetricsWriter, RunLock, check_remote_code, checkpoint_problem,
                           drop_superseded, format_record, lock_held, process_start, read_metrics, safe_record,
                           safe_text, trainer_pid, usable_checkpoint, write_status)

ESCAPE = "\x1b]0;TITLE\x07"


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# ------------------------------------------------------------------ 1. trust_remote_code from a run directory

def _hostile_run(tmp_path: Path) -> tuple[Path, Path]:
    """Someone else's run directory: config.yaml asks for trust_remote_code, its model folder carries code."""
    run = tmp_path / "theirs"
    model = run / "model"
    model.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig",
                                           "AutoModelForCausalLM": "evil.EvilModel",
                                           "AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (model / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    (run / "config.yaml").write_text(f"model: {model}\ndataset: {{path: data.jsonl}}\ntrust_remote_code: true\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 4, "max_steps": 8}))
    return run, marker


@pytest.mark.parametrize("verb", [["chat", "{run}", "--prompt", "hi"], ["export", "{run}", "--merged", "{out}"],
                                  ["export", "{run}", "--for", "ollama", "--out", "{out}"],
                                  ["export", "{run}", "--for", "llama.cpp", "--out", "{out}"],
                                  ["train", "--resume", "{run}"]])
def test_run_dir_trust_remote_code_needs_the_flag(tmp_path, verb):
    run, marker = _hostile_run(tmp_path)
    args = [a.format(run=run, out=tmp_path / "merged") for a in verb]
    r = run_cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in unwrapped(r.stderr) and "trust_remote_code" in unwrapped(r.stderr) and "--trust-remote-code" in unwrapped(r.stderr)
    assert str(run / "config.yaml") in unwrapped(r.stderr)
    assert not marker.exists()  # nothing from the run directory was imported
    if verb[0] == "export":
        # The fix is the command given, plus the flag: `--for` named its export's hidden staging folder as a
        # `--merged` OUT (lorapilot export RUN --merged .merged.partial-1a2b...), and took no --trust-remote-code.
        assert f"lorapilot {shlex.join(args)} --trust-remote-code" in unwrapped(r.stderr), r.stderr
        if "--for" in args:
            r = run_cli(*args, "--trust-remote-code")   # the flag honoured: refused next for what it lacks
            assert r.returncode == 2 and "would run Python code" not in unwrapped(r.stderr), r.stderr


def test_playground_refuses_without_trust(tmp_path):
    from engine.errors import UserError
    from engine.playground import Playground

    run, marker = _hostile_run(tmp_path)
    with pytest.raises(UserError, match="--trust-remote-code"):
        Playground(run)
    assert not marker.exists()


def test_trust_rule_honours_the_command_line_only():
    from engine.config import Config

    cfg = Config(model="x", trust_remote_code=True)
    assert check_remote_code(cfg, "r", True, "chat r") is True
    assert check_remote_code(Config(model="x"), "r", True, "chat r") is False  # the flag alone asks for nothing


# ------------------------------------------------------------------ 2. the pid check before any signal

@pytest.fixture
def bystander():
    """An unrelated live process whose pid a dead run's status.json happens to hold."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_stop_does_not_signal_a_reused_pid(tmp_path, bystander):
    run = tmp_path / "run"
    run.mkdir()
    # The run's trainer had this pid, started at another time: the number now belongs to someone else.
    (run / "status.json").write_text(json.dumps({"state": "training", "pid": bystander.pid,
                                                 "pid_start": process_start(bystander.pid) - 100}))
    (run / "metrics.jsonl").write_text("")
    r = run_cli("stop", str(run))
    assert r.returncode == 0 and "not running" in unwrapped(r.stdout), r.stdout + r.stderr
    time.sleep(0.5)
    assert bystander.poll() is None  # never signalled
    # Without a recorded start time, the command line must name the run directory.
    (run / "status.json").write_text(json.dumps({"state": "training", "pid": bystander.pid}))
    assert trainer_pid(run, json.loads((run / "status.json").read_text())) is None
    assert run_cli("runs", "--root", str(tmp_path)).stdout.split("\n")[1].split()[1] == "lost"


def _process_naming(run: Path, *args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """A live process whose command line ends with args and the run directory (pass_fds: descriptors it inherits)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(120)", *args, str(run)],
                            pass_fds=pass_fds)
    # Between fork and exec the child still shows pytest's command line: wait for its own.
    deadline = time.monotonic() + 60
    while str(run) not in " ".join(psutil.Process(proc.pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_trainer_pid_recognises_this_runs_process(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # As engine.train.distributed.launch_command starts it, with the run lock the launcher hands down.
    lock = RunLock.acquire(run)
    proc = _process_naming(run, "-m", "engine.train.run", pass_fds=(lock.fd,))
    lock.release()
    try:
        assert trainer_pid(run, {"pid": proc.pid}) == proc.pid  # its command line names the run
        assert trainer_pid(run, {"pid": proc.pid, "pid_start": process_start(proc.pid)}) == proc.pid
        assert trainer_pid(run, {"pid": 1}) is None and trainer_pid(run, {"pid": True}) is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("verb", ["monitor", "chat"])
def test_stop_does_not_signal_another_process_that_names_the_run(tmp_path, capsys, verb):
    """A status.json without the trainer's start time (written before lorapilot recorded it, or by hand) whose pid
    is now a `lorapilot monitor RUN` (or `chat`, `rsync -a RUN`...): its command line names the run directory, so it
    counted as the trainer, showed the dead run as training, and `stop` sent it SIGTERM."""
    from engine.cli import main
    from engine.rundir import effective_state

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    other = _process_naming(run, "-m", "tui.entry", verb)
    try:
        status = {"state": "training", "pid": other.pid}
        (run / "status.json").write_text(json.dumps(status))
        assert trainer_pid(run, status) is None and effective_state(status, run) == "lost"
        assert main(["stop", str(run)]) == 0 and "not running" in unwrapped(capsys.readouterr().out)
        assert other.poll() is None  # never signalled (SIGTERM's default is to end it at once)
    finally:
        other.kill()
        other.wait()


@contextlib.contextmanager
def _live_run_and_its_copy(tmp_path: Path):
    """`cp -r runs/a runs/a-copy` while a trains: (a, a-copy, a's trainer, the status both hold). The trainer is a
    real process holding a's lock as the launcher hands it down: a descriptor of a/trainer.lock, open for its life."""
    from engine.rundir import LOCK_FILE

    original, copy = tmp_path / "a", tmp_path / "a-copy"
    original.mkdir()
    (original / LOCK_FILE).touch()
    code = (f"import fcntl, os, time; fd = os.open({str(original / LOCK_FILE)!r}, os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)")
    trainer = subprocess.Popen([sys.executable, "-c", code, "-m", "engine.train.run", str(original)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert trainer.stdout.readline().strip() == "locked"
        status = {"state": "training", "step": 3, "max_steps": 8, "pid": trainer.pid,
                  "pid_start": process_start(trainer.pid), "updated": time.time()}
        for run in (original, copy):
            run.mkdir(exist_ok=True)
            (run / "status.json").write_text(json.dumps(status))
            (run / "metrics.jsonl").write_text("")
            (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\n")
        (copy / LOCK_FILE).touch()
        yield original, copy, trainer, status
    finally:
        trainer.kill()
        trainer.wait()
        trainer.stdout.close()


def test_stop_of_a_run_whose_trainer_is_gone_says_so_and_how_to_go_on(tmp_path, capsys):
    """The trainer killed (kill -9, the machine rebooted) with status.json still saying training: `stop` said only
    "not running", as of a run that had ended."""
    from engine.cli import main

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "training", "step": 30, "pid": gone.pid}))
    assert main(["stop", str(run)]) == 0
    out = unwrapped(capsys.readouterr().out)
    assert "status.json says training at step 30: its trainer is gone; nothing to stop" in out, out
    assert f"lorapilot train --resume {run}" in out
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 30, "pid": gone.pid}))
    assert main(["stop", str(run)]) == 0 and capsys.readouterr().out == f"{run}: not running; nothing to stop\n"


def test_stop_of_a_copy_of_a_live_run_leaves_the_original_training(tmp_path, capsys, monkeypatch):
    """`cp -r runs/a runs/a-copy` while a trains: the copy's status.json names a's trainer, pid and start time
    and all, so `stop runs/a-copy` stopped a's training, and `train --resume runs/a-copy` was refused until it
    was stopped. A trainer keeps its run's trainer.lock open for its life; the copy's is another file."""
    from engine.cli import main
    from engine.train import launch

    with _live_run_and_its_copy(tmp_path) as (original, copy, trainer, _):
        assert main(["stop", str(copy)]) == 0
        assert f"not running; nothing to stop (a copy of {original}" in unwrapped(capsys.readouterr().out)
        assert trainer.poll() is None  # never signalled
        spawned = []
        monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
        monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
        assert main(["train", "--resume", str(copy), "--detach"]) == 0 and spawned  # the copy is a run of its own
        assert main(["train", "--resume", str(original), "--detach"]) == 2  # the original is still its trainer's
        assert "another trainer" in unwrapped(capsys.readouterr().err)


def test_a_copy_of_a_live_run_is_not_shown_training(tmp_path, capsys):
    """The same copy was listed by `runs` (and shown by the monitor) as training, at the original's step, for as long
    as the original trained: nothing trains it. `runs` says `copy` (and --json which run it is a copy of), its state
    is lost to every reader (the sweep's resume, the monitor's keys), and the monitor says what it is."""
    from engine.cli import main
    from engine.rundir import copy_of, effective_state, summarize
    from tui.models.run_history import RunHistory
    from tui.widgets.progress_panel import ProgressPanel

    with _live_run_and_its_copy(tmp_path) as (original, copy, trainer, status):
        assert effective_state(status, original) == "training" and copy_of(original, status) is None
        assert effective_state(status, copy) == "lost" and copy_of(copy, status) == original
        assert summarize(copy).state == "lost" and summarize(copy).copy_of == original
        assert main(["runs", "--root", str(tmp_path)]) == 0
        rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:3]}
        assert rows == {"a": "training", "a-copy": "copy"}, rows
        assert main(["runs", "--root", str(tmp_path), "--json"]) == 0
        listed = {Path(r["run_dir"]).name: r for r in json.loads(capsys.readouterr().out)}
        assert listed["a-copy"]["copy_of"] == str(original) and listed["a"]["copy_of"] is None
        history = RunHistory(str(copy))
        history.status, history.state = status, effective_state(status, copy)
        said = " ".join(str(part) for part in ProgressPanel(history)._trouble())
        assert "A copy of a run that is still training" in said and f"lorapilot monitor {original}" in said, said


def test_stall_advice_never_names_pid_1(tmp_path):
    from engine.diagnose.stall import no_progress

    status = {"state": "training", "pid": 1, "step": 50, "updated": time.time() - 3600}
    found = no_progress(status, None, time.time(), str(tmp_path))
    assert found is not None and "kill 1" not in found.fix and str(tmp_path) in found.fix


# ------------------------------------------------------------------ 3. control characters from a run directory

def test_control_characters_escaped_everywhere(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write(run / "metrics.jsonl", [
        {"kind": "train", "step": 1, "time": 1.0, "loss": 2.0},
        {"kind": "sample", "step": 1, "time": 1.0, "prompt": "p", "output": f"hi {ESCAPE}\x9b31m"},
        {"kind": "finding", "step": 1, "time": 1.0, "code": f"x{ESCAPE}", "severity": "warning",
         "message": f"bad {ESCAPE}", "evidence": "e\x1b[2J", "fix": "f"},
        {"kind": "event", "step": 1, "time": 1.0, "code": "c", "message": f"m {ESCAPE}\nline2"}])
    (run / "status.json").write_text(json.dumps({"state": "failed", "error": f"boom {ESCAPE}"}))
    (run / "train.log").write_text(f"log {ESCAPE}\n")
    for args in (["diagnose", str(run)], ["runs", "--root", str(tmp_path)]):
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, (args, r.stdout)
    assert "\\x1b]0;TITLE\\x07" in run_cli("diagnose", str(run)).stdout  # shown, as text
    lines = [ln for rec in read_metrics(run) for ln in (format_record(rec) or "").split("\n")]
    assert not any(ch in ln for ln in lines for ch in "\x1b\x07")
    assert "            evidence: e\\x1b[2J" in lines  # a finding's evidence on a line of its own, escaped too

    from tui.models.run_feed import RunFeed

    up = RunFeed(run, sample_gpus=False).poll()
    text = json.dumps(up.records, ensure_ascii=False) + "".join(up.log_lines) + json.dumps(up.status or {})
    assert not any(ch in text for ch in ("\x1b", "\x07", "\x9b"))
    assert safe_text("a\tb\nc") == "a\tb\nc" and safe_text("a\nb", one_line=True) == "a\\nb"
    assert safe_record({"k": [ESCAPE, 1.5]}) == {"k": ["\\x1b]0;TITLE\\x07", 1.5]}


# ------------------------------------------------------------------ 4. paths that escape, files overwritten

@pytest.mark.parametrize("name", ["../../x", "/tmp/abs-run", "..", "a/b"])
def test_run_name_cannot_escape_the_runs_root(tmp_path, name):
    from conftest import DEMO_CONFIG

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_CONFIG.parent / 'demo/train.jsonl'}}}\n"
                   f"run_name: {json.dumps(name)}\nruns_dir: {tmp_path / 'runs'}\n")
    r = run_cli("train", str(cfg), "--detach")
    assert r.returncode == 2 and "run_name" in unwrapped(r.stderr) and "Traceback" not in unwrapped(r.stderr), r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not Path("/tmp/abs-run").exists() or name != "/tmp/abs-run"


@pytest.mark.parametrize("name", ["a\nb", f"run{ESCAPE}", "tab\there", "x" * 300])
def test_a_run_name_no_folder_should_have_is_refused(tmp_path, name):
    """A newline or an escape sequence in run_name made a folder of that name (every path printed after it broke
    the line or drove the terminal, and `runs` rows split); 300 characters failed in mkdir as "runs root: cannot
    create ... set runs_dir to a folder you can write", advice about the wrong key."""
    from engine.config import Config
    from engine.errors import UserError
    from engine.train.launch import new_run_dir

    with pytest.raises(UserError) as e:
        new_run_dir(Config(model="m", run_name=name, runs_dir=str(tmp_path / "runs")))
    assert str(e.value).startswith("run_name: ") and not any(c in str(e.value) for c in "\x1b\x07\t")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    for fine in ("my run", "日本語", "-dash", ".hidden"):  # spaces, unicode, a leading dash: plain names
        assert new_run_dir(Config(model="m", run_name=fine, runs_dir=str(tmp_path / "runs"))).name == fine


def test_prepare_does_not_overwrite_without_force(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("One paragraph of text that is long enough to keep as a training example here.\n")
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    r = run_cli("prepare", str(src), "--out", str(out))
    assert r.returncode == 2 and str(out) in unwrapped(r.stderr) and "--force" in unwrapped(r.stderr), r.stderr
    assert out.read_text() == "precious\n"
    r = run_cli("prepare", str(src), "--out", str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert out.read_text() != "precious\n"


# ------------------------------------------------------------------ 5. the run lock (processes)

def test_run_lock_is_exclusive_across_processes(tmp_path):
    from engine.errors import UserError

    lock = RunLock.acquire(tmp_path)
    lock.record_holder(os.getpid())
    code = ("import sys\nfrom engine.rundir import RunLock\n"
            f"try:\n    RunLock.acquire({str(tmp_path)!r})\nexcept Exception as e:\n    print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 3 and f"pid {os.getpid()}" in r.stdout, r.stdout + r.stderr
    assert lock_held(tmp_path)
    with pytest.raises(UserError, match="another trainer"):
        RunLock.acquire(tmp_path)
    lock.release()
    assert not lock_held(tmp_path)
    RunLock.acquire(tmp_path).release()  # released with its holder: no stale lock


def test_lock_dies_with_its_holder(tmp_path):
    code = (f"from engine.rundir import RunLock\nRunLock.acquire({str(tmp_path)!r})\n"
            "import time; print('held', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_held(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not lock_held(tmp_path)


# ------------------------------------------------------------------ 7. config changed before a resume

def _checkpoint_of(tmp_path, **record):
    """A config over a one-row data file, and a checkpoint folder holding the record the trainer writes of it."""
    from engine.config import Config
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import run_record

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    cfg = Config(model="m")
    cfg.dataset.path = str(data)
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch", **record)))
    return cfg, data, ckpt


def test_resume_config_changes_applied_or_refused(tmp_path):
    from engine.errors import UserError
    from engine.train.resume_check import config_changes

    cfg, data, ckpt = _checkpoint_of(tmp_path)
    assert config_changes(ckpt, cfg, "c.yaml") == []
    cfg.training.learning_rate = 1e-3
    cfg.training.max_steps = 99
    applied = config_changes(ckpt, cfg, "c.yaml")
    assert any(a.startswith("training.learning_rate") for a in applied) and len(applied) == 2
    cfg.lora.r = 64
    with pytest.raises(UserError) as e:
        config_changes(ckpt, cfg, "c.yaml")
    assert "lora.r" in str(e.value) and "c.yaml" in str(e.value)
    cfg.lora.r = 16
    data.write_text('{"instruction": "a", "output": "c"}\n')
    with pytest.raises(UserError, match="dataset"):
        config_changes(ckpt, cfg, "c.yaml")



def test_a_resume_on_another_number_of_gpus_is_refused_naming_num_gpus(tmp_path):
    """training.num_gpus empty is every visible GPU: a run of 2 resumed where 1 is visible kept its config unchanged,
    and trained on with half the examples per optimizer step, twice the steps per epoch and another data order."""
    from engine.errors import UserError
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import config_changes, run_record

    cfg, _, ckpt = _checkpoint_of(tmp_path, processes=2)
    assert config_changes(ckpt, cfg, "c.yaml", processes=2) == []
    with pytest.raises(UserError) as e:
        config_changes(ckpt, cfg, "c.yaml", processes=1)
    assert e.value.problems == [
        "training.num_gpus: empty (every visible GPU) trained on 2 processes at checkpoint-4, and this resume would "
        "start 1; resume where 2 GPUs are visible"]
    # A checkpoint recorded before lorapilot kept the count: nothing to compare with.
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch") | {"processes": None}))
    assert config_changes(ckpt, cfg, "c.yaml", processes=1) == []


def _hub_snapshot(cache: Path, repo: str, commit: str) -> None:
    """A hub dataset's snapshot in huggingface_hub's cache as `hf download` leaves it (refs/main names the commit):
    no datasets load has read it."""
    d = cache / f"datasets--{repo.replace('/', '--')}"
    (d / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (d / "refs").mkdir(exist_ok=True)
    (d / "refs" / "main").write_text(commit)


def test_the_hub_revision_recorded_is_the_one_the_load_read(hub_out_of_reach, tmp_path, monkeypatch):
    """The checkpoint's record, the sweep's and the resume checks took a hub dataset's revision from
    huggingface_hub's refs/main. After `hf download` fetched a newer commit that no load read (or with datasets'
    copy older than the hub cache's), the load read one revision and the record named another: a resume after the
    hub moved was let through, and one on the very rows the checkpoint trained on was refused. Each now records
    what the load read (the folder datasets read its rows from), and a resume whose load reads another is refused,
    naming both."""
    from engine.config import Config
    from engine.data.fingerprint import data_changes, data_record
    from engine.errors import UserError
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import config_changes, run_record

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    read, downloaded, newer = "a" * 40, "c" * 40, "b" * 40
    old = cache_hub_dataset(hub_out_of_reach, "someone/rows", [{"instruction": "q", "output": "a"}], revision=read)
    os.utime(old, (1, 1))
    _hub_snapshot(hub, "someone/rows", downloaded)
    cfg = Config(model="m")
    cfg.dataset.path = "someone/rows"
    record = run_record(cfg, "adamw_torch")
    assert record["hub_revisions"] == {"someone/rows": read}
    assert run_record(cfg, "adamw_torch", hub_revisions={"someone/rows": read}) == record   # the trainer's, read
    recorded = data_record(cfg.dataset)
    assert recorded["hub_revisions"] == {"someone/rows": read}
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(record))
    assert config_changes(ckpt, cfg, "c.yaml") == [] and data_changes(recorded, cfg.dataset) == []

    # A load with network brought a newer commit into datasets' cache: the next load reads it.
    cache_hub_dataset(hub_out_of_reach, "someone/rows", [{"instruction": "q2", "output": "b"}], revision=newer)
    with pytest.raises(UserError) as e:
        config_changes(ckpt, cfg, "c.yaml")
    assert e.value.problems == [f"dataset: someone/rows: the hub dataset is at revision {newer} now, not {read} as "
                                "checkpoint-4 trained on"]
    assert data_changes(recorded, cfg.dataset) == [f"someone/rows: the hub dataset is at revision {newer} now, not "
                                                   f"{read} as when the sweep started"]
    # The trainer checks the revision its own load read, not another load's.
    assert config_changes(ckpt, cfg, "c.yaml", hub_revisions={"someone/rows": read}) == []
    with pytest.raises(UserError, match=f"at revision {newer} now, not {read}"):
        config_changes(ckpt, cfg, "c.yaml", hub_revisions={"someone/rows": newer})


def test_a_run_folder_beside_its_data_is_not_its_data(tmp_path):
    """`dataset.path: data/` with the run's own folder under it: the data fingerprint hashed every file there, the
    run's metrics.jsonl and checkpoints too, so it differed at every resume and `train --resume` was refused as data
    that changed. It covers the files the reader reads (and a sweep's record the same ones)."""
    from engine.config import Config
    from engine.data.fingerprint import data_changes, data_record
    from engine.errors import UserError
    from engine.rundir import CHECKPOINT_RUN_FILE, MetricsWriter, write_status
    from engine.train.resume_check import config_changes, run_record

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    cfg = Config(model="m")
    cfg.dataset.path = str(data)
    run = data / "runs" / "r1"
    run.mkdir(parents=True)
    write_status(run, state="training", step=4, max_steps=8)
    ckpt = run / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch")))
    recorded = data_record(cfg.dataset)
    w = MetricsWriter(run)   # the run trained on after its checkpoint, then was cut
    w.write("train", 6, loss=1.0)
    w.close()
    (data / ".notes.jsonl").write_text("mine\n")   # hidden: not read
    assert config_changes(ckpt, cfg, "c.yaml") == [] and data_changes(recorded, cfg.dataset) == []
    (data / "b.jsonl").write_text('{"instruction": "c", "output": "d"}\n')   # a data file: read, so it counts
    assert data_changes(recorded, cfg.dataset) == [f"{data / 'b.jsonl'}: new since the sweep started"]
    with pytest.raises(UserError, match="dataset"):
        config_changes(ckpt, cfg, "c.yaml")


def test_a_resume_on_other_tokens_is_refused_naming_what_made_them(tmp_path, demo_model_dir):
    """The config and data files as they were, but the chat template at the model's path edited (or another
    lorapilot's data rules): config_changes let the resume through, and it trained on other tokens without a word.
    The trainer's examples are checked against the checkpoint's record of them, token for token; what made them is
    named. A checkpoint saved before the record resumes unchecked, saying so."""
    from engine.config import Config
    from engine.data import load_examples
    from engine.data.fingerprint import examples_digest, tokens_record
    from engine.errors import UserError
    from engine.model import load_tokenizer
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import run_record, token_changes

    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"instruction": "say {w}", "output": "{w}"}}\n' for w in ("one", "two", "three", "four")))
    cfg = Config(model=str(demo_model_dir))
    cfg.dataset.path = str(data)
    tok = load_tokenizer(cfg.model)
    prepared = load_examples(cfg, tok)
    tokens = tokens_record(prepared, tok)
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch", tokens=tokens)))
    assert token_changes(ckpt, tokens_record(load_examples(cfg, tok), tok), cfg, "c.yaml") == []

    tok.chat_template = tok.chat_template.replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n")
    with pytest.raises(UserError) as e:
        token_changes(ckpt, tokens_record(load_examples(cfg, tok), tok), cfg, "c.yaml")
    assert e.value.problems == [f"chat template: the chat template at {demo_model_dir} changed",
                                "train examples: the same 3, made of other tokens",
                                "validation examples: the same 1, made of other tokens"]
    assert "c.yaml" in e.value.message and "checkpoint-4" in e.value.message and "lorapilot train c.yaml" in e.value.fix

    fewer = tokens | {"data_rules": "another", "train": examples_digest(prepared.train[:-1])}
    with pytest.raises(UserError) as e:
        token_changes(ckpt, fewer, cfg, "c.yaml")
    assert e.value.problems[0].startswith("data rules: lorapilot's data preparation (engine/data) is not the one")
    assert e.value.problems[1:] == ["train examples: 3 at checkpoint-4, 2 now"]

    with pytest.raises(UserError) as e:   # other tokens, and nothing recorded tells why
        token_changes(ckpt, tokens | {"validation": examples_digest(prepared.train[:1])}, cfg, "c.yaml")
    assert e.value.problems[0].startswith("none of what lorapilot records of how they were made changed")
    assert e.value.problems[1:] == ["validation examples: the same 1, made of other tokens"]

    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch")))   # an earlier lorapilot's
    said = token_changes(ckpt, fewer, cfg, "c.yaml")
    assert len(said) == 1 and "checkpoint-4 holds no record of the tokens" in said[0], said


def test_a_resume_whose_adapter_is_not_the_checkpoints_is_refused_naming_the_modules(tmp_path, demo_model_dir):
    """An earlier lorapilot adapted a mixture's routers under all-linear; this one does not: the config reads the
    same, and the resume built an adapter without them, peft's load left the checkpoint's router weights out without
    a word and the run trained on as another adapter (or failed in the optimizer's load). The adapter built is
    compared with the checkpoint's, module for module: the modules added or removed are named."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from engine.config import Config
    from engine.errors import UserError
    from engine.model import add_lora
    from engine.train.resume_check import adapter_changes

    cfg = Config(model=str(demo_model_dir), quantization="none")
    model = add_lora(AutoModelForCausalLM.from_pretrained(demo_model_dir), cfg, gradient_checkpointing=False)
    ckpt = tmp_path / "checkpoint-20"
    model.save_pretrained(ckpt)
    adapter_changes(ckpt, model, cfg, "c.yaml")   # the same adapter: resumed

    weights = ckpt / "adapter_model.safetensors"
    saved = load_file(weights)
    # an old router's adapter beside the experts', in every layer, with the config naming it (as peft saved it)
    save_file(saved | {k.replace("up_proj", "gate"): v.clone() for k, v in saved.items() if ".up_proj." in k}, weights)
    config = json.loads((ckpt / "adapter_config.json").read_text())
    (ckpt / "adapter_config.json").write_text(json.dumps({**config, "target_modules": [*config["target_modules"],
                                                                                       "gate"]}))
    with pytest.raises(UserError) as e:
        adapter_changes(ckpt, model, cfg, "c.yaml")
    layers = AutoModelForCausalLM.from_pretrained(demo_model_dir).config.num_hidden_layers
    assert e.value.problems == [f"modules adapted at checkpoint-20, not now: model.layers.*.mlp.gate ({layers})"]
    assert "c.yaml" in e.value.message and "lorapilot train c.yaml" in e.value.fix
    assert "the config reads as it did at checkpoint-20" in e.value.message and "routers" in e.value.message


def test_an_adapter_refusal_says_what_was_edited_in_the_runs_config(tmp_path, demo_model_dir):
    """lora.r (or lora.alpha, or the target modules) edited in the run's config.yaml under a checkpoint: the refusal
    said lorapilot builds the adapter otherwise now because an earlier one adapted a mixture's routers, on a dense model
    whose user had simply edited a number. It names the keys edited, as the checkpoint had them and as they are now
    (from lorapilot's record of its config, else from its adapter_config.json), and says to put them back or start a
    new run; with the config as it was and no router in the difference, it says neither."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from engine.config import Config
    from engine.errors import UserError
    from engine.model import add_lora
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import adapter_changes, run_record

    def built(**lora):
        cfg = Config(model=str(demo_model_dir), quantization="none")
        for k, v in lora.items():
            setattr(cfg.lora, k, v)
        return cfg, add_lora(AutoModelForCausalLM.from_pretrained(demo_model_dir), cfg, gradient_checkpointing=False)

    was, model = built(target_modules=["q_proj", "v_proj"])
    ckpt = tmp_path / "checkpoint-20"
    model.save_pretrained(ckpt)
    cfg, model = built(r=32, alpha=64, target_modules=["q_proj", "k_proj"])
    for record in (False, True):   # an earlier lorapilot's checkpoint (its adapter_config.json says), then with it
        if record:
            (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(was, "adamw_torch")))
        with pytest.raises(UserError) as e:
            adapter_changes(ckpt, model, cfg, "c.yaml")
        assert e.value.message == ("c.yaml: the adapter this resume builds is not the one checkpoint-20 was trained "
                                   "as: the settings it is built from were edited since")
        assert e.value.problems[:3] == ["lora.alpha: 32 at checkpoint-20, 64 now",
                                        "lora.r: 16 at checkpoint-20, 32 now",
                                        "lora.target_modules: [q_proj, v_proj] at checkpoint-20, [q_proj, k_proj] now"]
        assert "routers" not in str(e.value)
        assert not [p for p in e.value.problems if p.startswith(("r:", "lora_alpha:"))]   # said once, above
        assert e.value.fix == ("put back lora.alpha: 32, lora.r: 16 and lora.target_modules: [q_proj, v_proj] (as at "
                               "checkpoint-20) to resume, or start a new run with the new settings: "
                               "lorapilot train c.yaml")

    cfg, model = built(target_modules=["q_proj", "v_proj"])   # as it was; the checkpoint's adapter lost a module
    weights = ckpt / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "layers.0.self_attn.q_proj" not in k}, weights)
    with pytest.raises(UserError) as e:
        adapter_changes(ckpt, model, cfg, "c.yaml")
    assert e.value.problems == ["modules adapted now, not at checkpoint-20: model.layers.0.self_attn.q_proj"]
    assert "the config reads as it did at checkpoint-20" in e.value.message and "routers" not in str(e.value)
    assert f"the model at {demo_model_dir}" in e.value.message


def _resumable_run(tmp_path: Path, model_dir: Path, *, record: bool = True) -> tuple[Path, Path]:
    """A run stopped at step 4 of 8 with a checkpoint as the trainer saves one (the demo model's adapter, the record
    of its config and tokens), made without training; the model a copy of the demo's, to edit. (run, model)"""
    import shutil

    from engine.config import Config, save_config
    from engine.data import load_examples
    from engine.data.fingerprint import tokens_record
    from engine.model import add_lora, load_base_model, load_tokenizer
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import run_record

    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"instruction": "say {w}", "output": "{w}"}}\n' for w in ("one", "two", "three", "four")))
    cfg = Config(model=str(model), quantization="none")
    cfg.dataset.path = str(data)
    cfg.training.max_steps = 8
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "checkpoint-4"
    base, _ = load_base_model(cfg.model, cfg.quantization, cfg.training.precision)
    add_lora(base, cfg, gradient_checkpointing=False).save_pretrained(ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    if record:
        tok = load_tokenizer(cfg.model)
        tokens = tokens_record(load_examples(cfg, tok), tok)
        (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch", tokens=tokens)))
    save_config(cfg, run / "config.yaml")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 4, "max_steps": 8}))
    return run, model


def _changed_since_the_checkpoint(run: Path, model: Path, change: str) -> None:
    """chat_template: the template at the model's path edited (the config reads the same); lora_r: lora.r edited under
    a checkpoint an earlier lorapilot saved (no record of its config: only its adapter says r 16); target_modules: a
    name the model does not have (add_lora's refusal)."""
    import yaml

    if change == "chat_template":
        template = model / "chat_template.jinja"
        template.write_text(template.read_text().replace("{{ m['role'] }}\n", "{{ m['role'] }}:\n"))
    elif change in ("lora_r", "target_modules"):
        raw = yaml.safe_load((run / "config.yaml").read_text())
        raw["lora"] |= {"r": 8} if change == "lora_r" else {"target_modules": ["q_proj", "gate"]}
        (run / "config.yaml").write_text(yaml.safe_dump(raw))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but the run lock's (an empty file the launcher leaves, as after any refusal)."""
    from engine.rundir import LOCK_FILE

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


@pytest.mark.parametrize("change", ["chat_template", "lora_r", None])
def test_a_resume_the_trainer_would_refuse_after_its_load_is_refused_before_the_detach(tmp_path, monkeypatch, capsys,
                                                                                      demo_model_dir, change):
    """`train --resume --detach` after the chat template at the model's path was edited (or lora.r, under a
    checkpoint without lorapilot's record of its config): the foreground said 0 and the run failed later, in its
    trainer, once the tokenizer and data (tokens) or the 7B model (the adapter) had loaded. Refused now before anything
    starts, exit 2, with the trainer's own message; the run directory as it was."""
    from engine import cli
    from engine.train import launch

    run, model = _resumable_run(tmp_path, demo_model_dir, record=change != "lora_r")
    _changed_since_the_checkpoint(run, model, change)
    before = _files(run)
    spawned = []
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
    rc = cli.main(["train", "--resume", str(run), "--detach"])
    err = unwrapped(capsys.readouterr().err)
    if change is None:   # as it was: resumed
        assert rc == 0 and spawned, err
        return
    assert rc == 2 and not spawned and "Traceback" not in err, err
    assert _files(run) == before   # status.json, config.yaml, the checkpoint; no train.log
    if change == "chat_template":
        assert f"{run / 'config.yaml'}: this resume would train on other tokens than checkpoint-4 was trained on" in err
        assert f"chat template: the chat template at {model} changed" in err, err
    else:
        assert f"{run / 'config.yaml'}: the adapter this resume builds is not the one checkpoint-4 was trained as" in err
        assert "the settings it is built from were edited since" in err, err
        assert "lora.r: 16 at checkpoint-4, 8 now" in err, err
        assert "modules of other shapes than at checkpoint-4" in err and "routers" not in err, err


def test_a_resume_check_reads_and_tokenizes_the_data_once(tmp_path, monkeypatch, capsys, demo_model_dir):
    """`train --resume` read every row twice before its trainer started: check_inputs' check_data, then
    refuse_before_load's tokens_now (minutes each on a large dataset). Where the checkpoint records its tokens, the
    one read that tokenizes them serves both (as a sweep's start does)."""
    from engine import cli, data
    from engine.train import launch, resume_check

    run, _ = _resumable_run(tmp_path, demo_model_dir)
    calls: list[str] = []
    read_rows, tokens_now = data.read_rows, resume_check.tokens_now
    monkeypatch.setattr(data, "read_rows", lambda *a, **k: calls.append("read") or read_rows(*a, **k))
    monkeypatch.setattr(resume_check, "tokens_now", lambda *a, **k: calls.append("tokens") or tokens_now(*a, **k))
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: subprocess.Popen(["true"]))
    assert cli.main(["train", "--resume", str(run), "--detach"]) == 0, capsys.readouterr().err
    assert calls == ["tokens", "read"]


def test_a_resume_check_says_the_config_changed_before_tokens_it_cannot_make(tmp_path, monkeypatch, capsys,
                                                                          demo_model_dir):
    """The tokens are made before config_changes now (one read for both): a config edited to a model whose tokenizer
    does not load is still refused as a config changed since the checkpoint, as before, not as a tokenizer error."""
    import shutil

    import yaml

    from engine import cli

    run, model = _resumable_run(tmp_path, demo_model_dir)
    other = Path(shutil.copytree(model, tmp_path / "other"))
    (other / "tokenizer.json").unlink()
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["model"] = str(other)
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = unwrapped(capsys.readouterr().err)
    # a long path is shortened in the message (under xdist's popen-gw folders it is): its end names it
    assert "changed since the checkpoint in ways a resume cannot follow" in err and f"{other.name}' at" not in err
    assert f"/{other.parent.name}/{other.name}'" in err and "- model:" in err, err
    assert "cannot load tokenizer" not in err, err


def test_tokens_made_for_one_config_serve_another_only_where_it_makes_the_same_examples():
    """A sweep's trials are checked with its base config's tokens: a trial's config.yaml that reads otherwise where
    the examples are made (edited by hand) gets its own."""
    from engine.config import Config
    from engine.train.resume_check import TokensMade, token_inputs

    base = Config(model="m")
    made = TokensMade({}, {}, token_inputs(base))
    trial = Config(model="m")
    trial.training.learning_rate, trial.lora.r, trial.training.max_steps = 3e-3, 4, 6
    assert made.of(trial) is made
    for edit in (lambda c: setattr(c.training, "max_seq_length", 64), lambda c: setattr(c.dataset, "path", "x.jsonl"),
                 lambda c: setattr(c, "model", "n"), lambda c: setattr(c.training, "seed", 7)):
        edited = Config(model="m")
        edit(edited)
        assert made.of(edited) is None


class _Passed(Exception):
    """The trainer got past its resume checks (to building its Trainer)."""


@pytest.mark.parametrize("change", ["chat_template", "lora_r", "target_modules", "adapter_modules", None])
def test_the_launchers_resume_refusals_are_the_trainers(tmp_path, monkeypatch, demo_model_dir, change):
    """The seam: the launcher's checks before the load (refuse_before_load) and the trainer's after it, on the same
    run directory, refuse the same resumes with the same words and let the same ones through. adapter_modules: the
    checkpoint's adapter has a module more than this lorapilot builds (an earlier one adapted a mixture's routers)."""
    from safetensors.torch import load_file, save_file

    from engine.config import load_config
    from engine.errors import UserError
    from engine.train import run as trainer
    from engine.train.resume_check import refuse_before_load
    from engine.train.signals import StopFlag

    run, model = _resumable_run(tmp_path, demo_model_dir, record=change not in ("lora_r", "target_modules"))
    _changed_since_the_checkpoint(run, model, change)
    if change == "adapter_modules":
        ckpt = run / "checkpoints" / "checkpoint-4"
        saved = load_file(ckpt / "adapter_model.safetensors")
        save_file(saved | {k.replace("up_proj", "gate"): v.clone() for k, v in saved.items() if ".up_proj." in k},
                  ckpt / "adapter_model.safetensors")
        config = json.loads((ckpt / "adapter_config.json").read_text())
        config["target_modules"] = [*config["target_modules"], "gate"]
        (ckpt / "adapter_config.json").write_text(json.dumps(config))
    cfg = load_config(run / "config.yaml")

    def verdict(check) -> tuple[str, list[str]] | None:
        try:
            check()
        except _Passed:
            return None
        except UserError as e:
            return e.message, e.problems
        return None

    def trains() -> None:
        trainer.train(load_config(run / "config.yaml"), run, resume=True, stop=StopFlag(run))

    monkeypatch.setattr(trainer, "build_trainer", lambda *a, **k: (_ for _ in ()).throw(_Passed()))
    launcher, trained = verdict(lambda: refuse_before_load(run, cfg)), verdict(trains)
    assert launcher == trained
    assert (launcher is None) == (change is None), launcher


def test_a_model_not_built_from_its_config_alone_leaves_the_adapter_check_to_the_trainer(tmp_path):
    """A config.json transformers cannot build without the model's own code (or at all): no verdict before the load
    (None), not a traceback in the launcher; the trainer's load says what is wrong."""
    from engine.config import Config
    from engine.model import adapter_on_meta

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model", "hidden_size": 8}))
    assert adapter_on_meta(Config(model=str(tmp_path))) is None


def test_the_trainer_reads_its_runs_config_as_the_launcher_did(tmp_path, monkeypatch):
    """A run's config.yaml edited to a relative data path, resumed from another folder: the launcher read it beside
    config.yaml (load_config) for its resume checks, the trainer from its working folder (the launcher's). The checks
    passed on one file and the run trained on another, a file of the same name where the command was typed."""
    from engine.config import load_config
    from engine.train import run as trainer
    from engine.train.signals import STOP_SIGNALS

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    for folder, output in ((run, "kept"), (elsewhere, "another")):
        folder.mkdir()
        (folder / "d.jsonl").write_text(f'{{"instruction": "a", "output": "{output}"}}\n')
    (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl}\n")
    monkeypatch.chdir(elsewhere)
    trained = []
    monkeypatch.setattr(trainer, "train", lambda cfg, run_dir, **kw: trained.append(cfg) or 0)
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}   # main installs the trainer's
    try:
        assert trainer.main([str(run), "--resume"]) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert trained[0].dataset.path == load_config(run / "config.yaml").dataset.path == str(run / "d.jsonl")


# ------------------------------------------------------------------ 8. damaged checkpoints

def _checkpoint(root: Path, step: int) -> Path:
    ckpt = root / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (ckpt / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    import torch

    torch.save({"state": {}, "param_groups": [{"lr": 1e-4, "params": []}]}, ckpt / "optimizer.pt")   # as a trainer's
    return ckpt


JSON_PAST_PYTHONS_LIMITS = {"nested": "[" * 100_000, "a long number": "1" * 5000}   # RecursionError, ValueError


@pytest.mark.parametrize("damage", ["safetensors", "optimizer", "state", *JSON_PAST_PYTHONS_LIMITS, "another json"])
def test_damaged_last_checkpoint_falls_back(tmp_path, damage):
    first, last = _checkpoint(tmp_path, 4), _checkpoint(tmp_path, 8)
    if damage == "safetensors":
        bad = last / "adapter_model.safetensors"
        bad.write_bytes(bad.read_bytes()[:-5])
    elif damage == "optimizer":
        bad = last / "optimizer.pt"
        bad.write_bytes(bad.read_bytes()[:300])
    elif damage == "another json":   # a plain ValueError, no JSONDecodeError: files_problem let it through
        bad = last / "scheduler.json"   # a file the Trainer writes is named for what is in it only
        (first / bad.name).write_text("{}")
        bad.write_text(JSON_PAST_PYTHONS_LIMITS["a long number"])
    else:   # past Python's limits json raises RecursionError or ValueError: the resume ended in a traceback
        bad = last / "trainer_state.json"
        bad.write_text(JSON_PAST_PYTHONS_LIMITS.get(damage, "{garbled"))
    ckpt, skipped = usable_checkpoint(tmp_path)
    assert ckpt.endswith("checkpoint-4")
    assert len(skipped) == 1 and str(bad) in skipped[0]
    assert checkpoint_problem(tmp_path / "checkpoints" / "checkpoint-4") is None


@pytest.mark.parametrize("text", JSON_PAST_PYTHONS_LIMITS.values(), ids=list(JSON_PAST_PYTHONS_LIMITS))
def test_a_checkpoints_run_record_past_pythons_limits_is_as_if_not_there(tmp_path, text):
    """lorapilot_run.json is read from the newest checkpoint, checked or not (the export's model card): one json
    cannot parse within Python's limits ended the export in a traceback, where a garbled one is as if absent."""
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import saved_record

    ckpt = _checkpoint(tmp_path, 4)
    (ckpt / CHECKPOINT_RUN_FILE).write_text(text)
    assert saved_record(ckpt) is None


@pytest.mark.parametrize("text", JSON_PAST_PYTHONS_LIMITS.values(), ids=list(JSON_PAST_PYTHONS_LIMITS))
def test_an_adapters_prompt_style_past_pythons_limits_is_as_if_not_there(tmp_path, text):
    """The prompt style saved beside an adapter, read by chat and export: nested past the parser's recursion it
    ended them in a traceback, where a garbled one is as if absent (a run from before it was saved)."""
    from engine.data.prompt import PROMPT_FILE, load_style

    (tmp_path / PROMPT_FILE).write_text(text)
    assert load_style(tmp_path) is None


def _safetensors(path: Path, header: dict, body: bytes) -> None:
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + body)


W = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
SAFETENSORS_DAMAGE = {  # a checkpoint's adapter_model.safetensors as written, and what its refusal says
    "cut off in the header": (lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated or not a safetensors file"),
    "cut off in a tensor": (lambda p: p.write_bytes(p.read_bytes()[:-5]), "truncated"),
    "header garbled": (lambda p: _safetensors(p, {"w": W}, b"\0" * 16) or p.write_bytes(
        p.read_bytes().replace(b'"w"', b"{w}")), "its header is not valid JSON"),
    # the file's length is what its header lists, yet a tensor's shape does not fill its bytes: peft's load (the
    # same safetensors parser) fails in a traceback
    "shape unlike its bytes": (lambda p: _safetensors(p, {"w": {**W, "shape": [5]}}, b"\0" * 16), "shape"),
    "tensors overlap": (lambda p: _safetensors(p, {"w": W, "v": W}, b"\0" * 16), "offset"),
}


@pytest.mark.parametrize("damage", list(SAFETENSORS_DAMAGE))
def test_a_safetensors_file_safetensors_would_refuse_is_named_with_what_is_wrong(tmp_path, damage):
    ckpt = _checkpoint(tmp_path, 4)
    spoil, said = SAFETENSORS_DAMAGE[damage]
    spoil(ckpt / "adapter_model.safetensors")
    problem = checkpoint_problem(ckpt)
    assert problem and problem.startswith(f"{ckpt / 'adapter_model.safetensors'}: ") and said in problem, problem


def test_a_checkpoint_whose_save_was_cut_off_is_named_when_the_resume_goes_back_past_it(tmp_path):
    """A trainer killed mid-save leaves checkpoint-12 without its trainer_state.json: the resume went back to
    checkpoint-8 and said only "resuming from checkpoint-8", as if 12 had never been saved."""
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 8)
    cut = _checkpoint(tmp_path, 12)
    (cut / "trainer_state.json").unlink()
    (cut / "optimizer.pt").unlink()
    (tmp_path / "checkpoints" / "checkpoint-3.tmp").mkdir()   # not a checkpoint's name: not one
    ckpt, skipped = usable_checkpoint(tmp_path)
    assert ckpt.endswith("checkpoint-8")
    assert skipped == [f"{cut / 'trainer_state.json'}: missing (its save was cut off)"]
    _checkpoint(tmp_path, 16)   # one cut off before the newest intact checkpoint is not named
    assert usable_checkpoint(tmp_path) == (str(tmp_path / "checkpoints" / "checkpoint-16"), [])


@pytest.mark.parametrize("missing", ["optimizer.pt", "lorapilot_run.json"])
def test_a_checkpoint_missing_a_file_its_siblings_have_is_skipped(tmp_path, missing):
    """A trainer killed while it deleted an old checkpoint (save_total_limit) leaves it in part, its
    trainer_state.json possibly still there; one killed between trainer_state.json and lorapilot_run.json leaves a
    checkpoint that says nothing of its config. Reached by the fallback from a damaged newer checkpoint, the first
    resumed with a fresh optimizer (transformers loads optimizer.pt only if it is there, without a word), the
    second without the check of the config's changes. Skipped, naming what is missing."""
    for step in (4, 8, 12):
        (_checkpoint(tmp_path, step) / "lorapilot_run.json").write_text(json.dumps({"config": {}}))
    partial = tmp_path / "checkpoints" / "checkpoint-8"
    (partial / missing).unlink()
    newest = tmp_path / "checkpoints" / "checkpoint-12" / "trainer_state.json"
    newest.write_text("{garbled")
    ckpt, skipped = usable_checkpoint(tmp_path)
    assert ckpt.endswith("checkpoint-4"), skipped
    assert len(skipped) == 2 and str(newest) in skipped[0] and str(partial / missing) in skipped[1], skipped
    assert "missing" in skipped[1]


class _RunsCode:
    """Unpickling this runs a shell command: what a hostile checkpoint file would hold."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_file_that_would_run_code_is_skipped_not_loaded(tmp_path):
    """A run directory from elsewhere whose newest checkpoint holds a pickle that runs code: torch refuses it (the
    resume failed with torch's advice to load it unsafely); the trainer's check skips it like a damaged checkpoint,
    naming the file, and falls back. The states a real Trainer saves (tensors, numpy's RNG state) pass."""
    import numpy as np
    import torch

    from engine.train.resume_check import unsafe_pickle

    good, hostile = _checkpoint(tmp_path, 4), _checkpoint(tmp_path, 8)
    for ckpt in (good, hostile):
        torch.save({"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
                   ckpt / "optimizer.pt")
    torch.save({"python": ("state",), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               good / "rng_state.pth")
    marker = tmp_path / "ran"
    torch.save({"python": _RunsCode(marker)}, hostile / "rng_state.pth")
    assert checkpoint_problem(hostile) is None  # an intact archive: only unpickling finds it
    assert unsafe_pickle(good) is None
    ckpt, skipped = usable_checkpoint(tmp_path, also=unsafe_pickle)
    assert ckpt is not None and ckpt.endswith("checkpoint-4") and not marker.exists()
    assert len(skipped) == 1 and str(hostile / "rng_state.pth") in skipped[0] and "posix.system" in skipped[0]


# ------------------------------------------------------------------ 9. metrics.jsonl that survived a crash

def test_writer_starts_on_a_fresh_line_and_readers_skip_malformed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1, "time": 1, "loss": 2}\n{"kind": "train", "st')  # killed mid-line
    w = MetricsWriter(tmp_path)
    w.write("train", 2, loss=1.5)
    w.close()
    with open(path, "a") as f:
        f.write('{"kind": "train", "time": 3}\n{"step": "x", "kind": "eval"}\n[1]\n')
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == [1, 2]
    tail = MetricsTail(tmp_path)
    tail.read_new()
    assert tail.bad_lines == 4
    assert diagnose_records(recs) == diagnose_records(recs)  # no KeyError on what was skipped
    LiveDiagnostics.from_history(read_metrics(tmp_path))


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_a_metrics_file_deleted_or_renamed_while_written_is_made_again_and_says_so(tmp_path, how):
    """metrics.jsonl deleted or renamed mid-run: the writer went on into the file it held open, and every later
    record was lost without a word. It opens the file at its name again, first saying what happened; a run
    directory moved is followed, not made again at its old path."""
    run, moved = tmp_path / "run", tmp_path / "moved"
    run.mkdir()
    w = MetricsWriter(run)
    w.write("train", 1, loss=2.0)
    if how == "deleted":
        (run / "metrics.jsonl").unlink()
    else:
        (run / "metrics.jsonl").rename(run / "old.jsonl")
    w.write("train", 2, loss=1.5)
    w.write("train", 3, loss=1.4)
    run.rename(moved)
    w.write("train", 4, loss=1.3)
    w.close()
    assert not run.exists()
    recs = read_metrics(moved)
    assert [(r["kind"], r["step"]) for r in recs] == [("event", 2), ("train", 2), ("train", 3), ("train", 4)]
    assert recs[0]["code"] == "metrics_replaced" and ("deleted" if how == "deleted" else "renamed") in \
        recs[0]["message"]


@pytest.mark.timeout(120)
def test_the_end_of_a_file_with_a_very_long_last_line_is_read_in_one_pass(tmp_path):
    """A crash can leave a run of NUL bytes, no newline, at the end of metrics.jsonl: `runs` read its end block by
    block, prepending each to all it had read (quadratic), and spent 17 s on 50 MB. Here 64 MB in 1 KiB blocks:
    minutes that way; one pass reads it in a second."""
    from engine.rundir import tail_lines

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1, "time": 1, "loss": 2.5}\n')
    with open(path, "r+b") as f:
        f.truncate(64 * 2**20)   # sparse: no disk used
    lines = tail_lines(path, n=2, block=1024)
    assert lines[0] == '{"kind": "train", "step": 1, "time": 1, "loss": 2.5}' and len(lines) == 2
    assert set(lines[1]) == {"\x00"}


def test_superseded_records_after_kill_are_dropped():
    before = [{"kind": "train", "step": s, "time": s, "loss": 2.0} for s in range(1, 11)]
    before.append({"kind": "eval", "step": 10, "time": 10, "eval_loss": 9.0})  # killed after step 10
    resumed = [{"kind": "event", "step": 8, "time": 20, "code": "resumed", "message": "resumed from checkpoint-8"}]
    after = [{"kind": "train", "step": s, "time": 20 + s, "loss": 1.0} for s in range(9, 13)]
    after.append({"kind": "eval", "step": 10, "time": 31, "eval_loss": 1.0})
    recs = drop_superseded(before + resumed + after)
    trains = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in trains] == list(range(1, 13))
    assert all(r["loss"] == 1.0 for r in trains if r["step"] > 8)
    assert [r["eval_loss"] for r in recs if r["kind"] == "eval"] == [1.0]  # the newest copy, once


# ------------------------------------------------------------------ 18. diagnose at scale

def _long_run(n: int) -> list[dict]:
    recs = []
    for i in range(1, n + 1):
        recs.append({"kind": "train", "step": i, "time": i, "loss": 2.0 / (1 + i / 500) + (0.01 * (i % 7)),
                     "learning_rate": 2e-4, "grad_norm": 50.0 if i % 301 == 0 else 0.4 + 0.01 * (i % 5)})
        if i % 10 == 0:
            recs.append({"kind": "eval", "step": i, "time": i, "eval_loss": 1.2 + 0.3 * ((i // 10) % 50) / 50})
    return recs


def test_diagnose_keeps_constant_state_and_says_the_same(monkeypatch):
    recs = _long_run(6000)
    live = LiveDiagnostics()
    fast = live.update(recs)
    assert len(live._evals) <= 10  # bounded, whatever the run's length

    # The same verdicts as keeping the whole eval history (the old, quadratic way).
    from engine.diagnose.curves import EvalPoint

    def keep_all(self, point: EvalPoint) -> None:
        self._evals.append(point)

    monkeypatch.setattr(LiveDiagnostics, "_remember_eval", keep_all)
    assert diagnose_records(recs) == fast


def test_diagnose_reports_each_finding_once_with_its_count(tmp_path):
    _write(tmp_path / "metrics.jsonl", _long_run(6000))
    r = run_cli("diagnose", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    codes = [f["code"] for f in found]
    assert len(codes) == len(set(codes))
    spikes = next(f for f in found if f["code"] == "grad_norm_spike")
    assert spikes["count"] > 1 and spikes["first_step"] == 301 and spikes["last_step"] <= 6000
    text = run_cli("diagnose", str(tmp_path)).stdout
    assert f"{spikes['count']} times, steps 301-{spikes['last_step']}" in text


# ------------------------------------------------------------------ 19. plan only what will run

def test_plan_covers_max_steps_not_all_epochs():
    from engine.data.packing import epochs_to_plan, plan_steps

    n = epochs_to_plan(steps_per_epoch=1250, run_steps=2)  # 20,000 examples, 16 a step; num_epochs 1000
    assert n == 1
    plan = plan_steps([100] * 20_000, examples_per_step=16, num_epochs=n, seed=1, token_budget=None,
                      micro_batch_size=4)
    assert len(plan.epochs) == 1 and plan.steps_per_epoch >= 2
    assert epochs_to_plan(steps_per_epoch=10, run_steps=25) == 3  # 10 a epoch: 3 needed
    assert epochs_to_plan(steps_per_epoch=10, run_steps=30) == 3  # num_epochs 3, no max_steps


def test_a_run_far_past_its_data_plans_a_bounded_number_of_shuffles_and_walks_them_in_turn():
    """max_steps of a million over 16 rows asked for 62,500 shuffles, each packed up front, on every keystroke of
    the wizard: at most MAX_SHUFFLES are planned, and the trainer's batches and the estimate's count walk them in
    turn by one rule."""
    from engine.data.packing import MAX_SHUFFLES, PlannedMicroBatches, epochs_to_plan, plan_steps
    from engine.plan import _steps_run

    assert epochs_to_plan(steps_per_epoch=2, run_steps=1_000_000) == MAX_SHUFFLES
    plan = plan_steps([50] * 16, examples_per_step=8, num_epochs=MAX_SHUFFLES, seed=1, token_budget=None,
                      micro_batch_size=4)
    walked = list(_steps_run(plan, 2 * MAX_SHUFFLES + 3))           # 2 steps an epoch: one lap and a half step
    assert walked[:2 * MAX_SHUFFLES] == [step for epoch in plan.epochs for step in epoch]
    assert walked[2 * MAX_SHUFFLES:] == plan.epochs[0] + plan.epochs[1][:1]
    data = PlannedMicroBatches(list(range(16)), plan)
    data.set_epoch(MAX_SHUFFLES + 1)                                 # the trainer's epoch 65 is planned epoch 1
    assert [data[k] for k in range(len(data))] == plan.flat(1)
    assert plan.epochs[0] != plan.epochs[1]                          # a new order each planned epoch


@pytest.mark.parametrize("status", ["{\"state\": \"train", None], ids=["corrupt", "missing"])
def test_stop_asks_a_running_trainer_even_when_its_status_json_is_unreadable(tmp_path, status, capsys):
    """`lorapilot stop` read no pid from a corrupt status.json and answered "not running" while a trainer held the
    run: the lock says it runs, and the stop file (which every rank polls) asks it without a pid."""
    from engine.cli import main
    from engine.rundir import STOP_REQUEST_FILE

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    if status is not None:
        (run / "status.json").write_text(status)
    assert main(["stop", str(run)]) == 0 and "not running" in unwrapped(capsys.readouterr().out)   # nobody holds it
    assert not (run / STOP_REQUEST_FILE).exists()
    lock = RunLock.acquire(run)
    try:
        assert main(["stop", str(run)]) == 0 and "stop requested" in capsys.readouterr().out
        assert (run / STOP_REQUEST_FILE).exists()
    finally:
        lock.release()


# ------------------------------------------------------------------ 10. links inside a run directory

@pytest.mark.parametrize("kind", ["run", "sweep"])
@pytest.mark.parametrize("dangling", [False, True])
def test_stop_writes_no_request_through_a_link(tmp_path, capsys, kind, dangling):
    """`lorapilot stop` of a running run (or sweep) whose stop.request is a link: it created or touched the file the
    link points to. Refused, exit 2, naming the path; the linked file is neither made nor changed."""
    from engine.cli import main
    from engine.rundir import STOP_REQUEST_FILE

    folder = tmp_path / kind
    folder.mkdir()
    target = tmp_path / "mine" / "notes.txt"
    target.parent.mkdir()
    if not dangling:
        target.write_text("precious\n")
        os.utime(target, (1_000_000, 1_000_000))
    (folder / STOP_REQUEST_FILE).symlink_to(target)
    import fcntl

    lock_fd = None
    if kind == "run":  # the lock held as a trainer holds it (RunLock.acquire would refuse the link itself)
        (folder / "metrics.jsonl").write_text("")
        lock_fd = os.open(folder / "trainer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    else:
        (folder / "sweep.json").write_text(json.dumps({"trials": [], "state": "running", "driver_pid": os.getpid()}))
    try:
        assert main(["stop", str(folder)]) == 2
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    err = capsys.readouterr().err
    assert str(folder / STOP_REQUEST_FILE) in unwrapped(err) and "symbolic link" in unwrapped(err) and "Traceback" not in unwrapped(err)
    assert sorted(os.listdir(target.parent)) == ([] if dangling else ["notes.txt"])
    if not dangling:
        assert target.read_text() == "precious\n" and target.stat().st_mtime == 1_000_000


@pytest.mark.parametrize("name", ["trainer.lock", "metrics.jsonl", "train.log", "status.json.tmp",
                                  "checkpoints/checkpoint-30", "adapter/adapter_model.safetensors"])
def test_a_run_directory_with_a_link_is_not_written_through(tmp_path, name):
    """Someone else's run directory whose files link to the user's: resuming it would truncate, append to or
    overwrite them (trainer.lock got the pid, metrics.jsonl and train.log the run's lines)."""
    from engine.errors import UserError

    theirs = tmp_path / "mine"
    theirs.mkdir()
    precious = theirs / "notes.txt"
    precious.write_text("precious\n")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "adapter").mkdir()
    (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl}\n")
    (run / name).symlink_to(theirs if name.startswith("checkpoints/") else precious)
    with pytest.raises(UserError) as e:
        RunLock.acquire(run).release()
    assert str(run / name) in str(e.value) and "symbolic link" in str(e.value)
    assert precious.read_text() == "precious\n" and sorted(os.listdir(theirs)) == ["notes.txt"]


@pytest.mark.parametrize("target", ["the user's file", "nothing"])
def test_a_metrics_file_made_a_link_after_the_launchers_check_is_refused_naming_it(tmp_path, target):
    """metrics.jsonl made a link once the launcher had checked the folder: the trainer's O_NOFOLLOW refused it, and the
    run failed with "OSError: [Errno 40] Too many levels of symbolic links: 'metrics.jsonl'" (exit 1): no folder,
    no why, no way on. A UserError (the trainer records it, exit 2) names the file and the link and says why."""
    from engine.errors import UserError

    precious = tmp_path / "notes.txt"
    if target == "the user's file":
        precious.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(precious)
    with pytest.raises(UserError) as e:
        MetricsWriter(run)
    said = str(e.value)
    assert said.startswith(f"{run / 'metrics.jsonl'}: is a symbolic link (to {precious}); the run appends"), said
    assert e.value.fix == f"remove the link ({run / 'metrics.jsonl'}), then go on with the run: lorapilot train " \
                          f"--resume {run}", e.value.fix
    assert precious.read_text() == "precious\n" if target == "the user's file" else not precious.exists()


def test_a_metrics_file_replaced_by_a_link_while_the_run_writes_is_not_written_through(tmp_path):
    """The writer opens metrics.jsonl again when it was replaced; a link there is refused, and the records go on into
    the file it holds (the run is not failed over its log), never into the file the link points to."""
    precious = tmp_path / "notes.txt"
    precious.write_text("precious\n")
    (tmp_path / "run").mkdir()
    w = MetricsWriter(tmp_path / "run")
    w.write("train", 1, loss=1.0)
    (tmp_path / "run" / "metrics.jsonl").unlink()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(precious)
    w.write("train", 2, loss=0.9)
    w.close()
    assert precious.read_text() == "precious\n"


def _finished_run(run: Path, adapter: Path, model_dir: Path) -> None:
    """A run directory as a finished run leaves it, as far as `export --out` reads it (adapter may lie elsewhere)."""
    fake_adapter(adapter)
    run.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):  # what the card reads
        (adapter / name).write_bytes((model_dir / name).read_bytes())
    (run / "status.json").write_text(json.dumps({"state": "done", "step": 4, "max_steps": 4}))
    (run / "config.yaml").write_text("model: lorapilot-demo\ndataset: {path: d.jsonl}\n")


@pytest.mark.parametrize("link", ["adapter/notes.txt", "adapter/extra", "adapter"])
def test_export_copies_no_file_through_a_link_in_the_adapter(tmp_path, capsys, link, demo_model_dir):
    """Someone else's run directory whose adapter holds a link to the user's file (adapter/notes.txt -> ~/.ssh/id_rsa),
    to a folder of theirs, or whose adapter/ is itself such a link: `export --out` copied what the link points to
    into the folder made to be published, beside its model card. Refused, naming the link; nothing is written."""
    from engine.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "id_rsa").write_text("SECRET\n")
    run = tmp_path / "run"
    adapter = (mine / "adapter") if link == "adapter" else run / "adapter"
    _finished_run(run, adapter, demo_model_dir)
    if link == "adapter":
        (adapter / "id_rsa").symlink_to(mine / "id_rsa")
    (run / link).symlink_to(mine / "id_rsa" if link.endswith(".txt") else mine if link.endswith("extra") else adapter)
    out = tmp_path / "out"
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert str(run / link) in err and "symbolic link" in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.timeout(60)
def test_export_of_a_run_whose_log_is_a_named_pipe(tmp_path, capsys, demo_model_dir):
    """The model card looks for the hardware line in train.log: a named pipe there made `export` wait forever."""
    from engine.cli import main

    run = tmp_path / "run"
    _finished_run(run, run / "adapter", demo_model_dir)
    os.mkfifo(run / "train.log")
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "adapter_config.json").exists()


def _copied_run(finished: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run, ignore=shutil.ignore_patterns("*.lock"))
    return run


def _tokenizer_with_auto_map(adapter: Path) -> None:
    path = adapter / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))


ADAPTER_DAMAGE = {  # what is done to the run's adapter/, and the file the refusal names
    "cut off": (lambda ad: os.truncate(ad / "adapter_model.safetensors", 4096), "adapter_model.safetensors"),
    "garbled config": (lambda ad: (ad / "adapter_config.json").write_text('{"r": 16,'), "adapter_config.json"),
    "weights missing": (lambda ad: (ad / "adapter_model.safetensors").unlink(), "adapter_model.safetensors"),
    "code": (lambda ad: (ad / "evil.py").write_text("import os\n"), "evil.py"),
    "tokenizer names code": (_tokenizer_with_auto_map, "tokenizer_config.json"),
}


@pytest.mark.parametrize("damage", sorted(ADAPTER_DAMAGE))
@pytest.mark.parametrize("verb", [["export", "{run}", "--out", "{out}"], ["export", "{run}", "--merged", "{out}"],
                                  ["chat", "{run}", "--prompt", "hi"]])
def test_an_adapter_not_as_its_run_saved_it_is_refused_naming_the_file(finished_demo_run, tmp_path, capsys, damage,
                                                                        verb):
    """A run's adapter cut off (a copy interrupted, a disk that filled) or garbled: `export --out` copied it as it was
    and said "adapter copied" (exit 0), `export --merged` and `chat` failed in a traceback from safetensors or json.
    One carrying code (a Python file, a tokenizer_config.json whose auto_map names a class) was copied into the
    folder made to be published. Refused before anything loads or is written, naming the file; exit 2."""
    from engine.cli import main

    run = _copied_run(finished_demo_run, tmp_path)
    spoil, named = ADAPTER_DAMAGE[damage]
    spoil(run / "adapter")
    out = tmp_path / "out"
    assert main([a.format(run=run, out=out) for a in verb]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert str(run / "adapter" / named) in err and "not as its run saved it" in err and "Traceback" not in err, err
    assert (f"fix: lorapilot train --resume {run} saves it again" in err) == named.startswith("adapter_"), err
    assert not out.exists()


@pytest.mark.parametrize("verb", [["export", "{run}", "--out", "{out}"], ["export", "{run}", "--merged", "{out}"],
                                  ["chat", "{run}", "--prompt", "hi"], ["chat-checkpoint"]])
@pytest.mark.parametrize("edited", ["config.yaml", "adapter_config.json"])
def test_chat_and_export_refuse_a_base_the_adapter_was_not_trained_on(finished_demo_run, demo_model_dir, tmp_path,
                                                                      capsys, verb, edited):
    """config.yaml's model edited by hand after the run (or the adapter's base_model_name_or_path): chat answered and
    export merged with the other model, exit 0, without a word (the card named it as the base). Refused, naming both
    models and the files that say them; the same model reached another way (a link to its folder) is the same."""
    import shutil

    from engine.cli import main
    from engine.errors import UserError

    run = _copied_run(finished_demo_run, tmp_path)
    other = tmp_path / "other-model"
    shutil.copytree(demo_model_dir, other)
    if edited == "config.yaml":
        text = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(text.replace("model: lorapilot-demo", f"model: {other}", 1))
    else:
        for ad in [run / "adapter", *(run / "checkpoints").glob("checkpoint-*")]:
            cfg = json.loads((ad / "adapter_config.json").read_text())
            (ad / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": str(other)}))
    out = tmp_path / "out"
    if verb == ["chat-checkpoint"]:   # the playground's chat with a checkpoint of a run still training
        from engine.playground import chat_target, newest_checkpoint

        with pytest.raises(UserError) as e:
            chat_target(run, adapter=newest_checkpoint(run))
        err = unwrapped(e.value.message)
    else:
        assert main([a.format(run=run, out=out) for a in verb]) == 2
        err = unwrapped(capsys.readouterr().err)
    assert f"{run / 'config.yaml'}: model:" in err and "is not the base the adapter was trained on" in err, err
    assert str(other) in err and "Traceback" not in err
    assert not out.exists()
    # The model the run trained, named another way (a link to its folder), is the same model.
    from engine.config import load_config
    from engine.export.facts import check_trained_adapter

    (tmp_path / "link").symlink_to(demo_model_dir)
    cfg = load_config(finished_demo_run / "config.yaml")
    cfg.model = str(tmp_path / "link")
    check_trained_adapter(finished_demo_run, finished_demo_run / "adapter", cfg)


@pytest.mark.parametrize("verb", [["--out", "{out}"], ["--merged", "{out}"], ["--for", "vllm", "--out", "{out}"]])
def test_export_of_a_run_a_trainer_is_training_again_is_refused(finished_demo_run, tmp_path, capsys, verb):
    """A finished run resumed to more steps: export copied the adapter/ of the earlier finish under a card giving the
    live step (and the trainer rewrites those files in place when it ends, under the copy). Refused, saying why."""
    from conftest import hold_run_lock

    from engine.cli import main

    run = _copied_run(finished_demo_run, tmp_path)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "training", "step": 45, "max_steps": 80,
                                                 "pid": os.getpid()}))
    hold_run_lock(run)
    out = tmp_path / "out"
    assert main(["export", str(run), *[a.format(out=out) for a in verb]]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert f"{run}: a trainer is training it at step 45 of 80: its adapter/ is an earlier finish's" in err, err
    assert f"lorapilot stop {run}" in err and not out.exists()


def test_chat_loads_the_base_as_the_run_trained_it_whatever_config_yaml_says_now(finished_demo_run, tmp_path):
    """config.yaml's quantization and precision edited after the run: the playground and `chat` loaded the base
    otherwise than training had (16-bit under an adapter trained on a 4-bit base), without a word."""
    from engine.playground import chat_target

    run = _copied_run(finished_demo_run, tmp_path)
    text = (run / "config.yaml").read_text()
    assert "quantization: nf4" in text
    (run / "config.yaml").write_text(text.replace("quantization: nf4", "quantization: none"))
    cfg, _, _ = chat_target(run)
    assert cfg.quantization == "nf4" and cfg.model == "lorapilot-demo"


def _no_model_or_data_here(cfg) -> dict:
    """check_inputs for a made-up run (model: m, its data never written): these tests are about the run folder."""
    return {}


@pytest.mark.parametrize("state", ["done", "stopped"])
def test_resume_of_a_run_whose_checkpoints_were_deleted_says_it_starts_over(tmp_path, monkeypatch, capsys, state):
    """checkpoints/ deleted to free the disk, then `train --resume`: a finished run was trained again from step 0 and
    its adapter replaced, and a stopped one started over, both without a word (nothing to skip, nothing said).
    Now a finished run is refused as one with its last checkpoint is, and a stopped one is told it starts over."""
    from engine import cli
    from engine.train import launch

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\ntraining: {{max_steps: 8}}\n")
    (run / "status.json").write_text(json.dumps({"state": state, "step": 8 if state == "done" else 4, "max_steps": 8}))
    spawned = []
    monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
    rc = cli.main(["train", "--resume", str(run), "--detach"])
    err = unwrapped(capsys.readouterr().err)
    if state == "done":
        assert rc == 2 and not spawned and "nothing left to train" in err and "no checkpoint" in err, err
        assert json.loads((run / "status.json").read_text())["state"] == "done"
    else:
        assert rc == 0 and spawned and "no checkpoint to continue from" in err and "step 0" in err, err


@pytest.mark.parametrize("max_steps", [20, 30])
def test_resume_with_max_steps_lowered_below_the_last_checkpoint_is_refused(tmp_path, monkeypatch, capsys, max_steps):
    """training.max_steps lowered to 20 under a run checkpointed at step 30, then `train --resume`: the trainer
    saved the adapter of step 30 and said 'done 30/20', under a config (and an export card) that says 20 steps.
    Refused, naming the key and the checkpoint; set to the checkpoint's step, the run finishes from it."""
    from engine import cli
    from engine.train import launch, resume_check

    run = tmp_path / "run"
    _checkpoint(run, 30)
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\n"
                                     f"training: {{max_steps: {max_steps}}}\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 30, "max_steps": 40}))
    spawned = []
    monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
    monkeypatch.setattr(resume_check, "refuse_before_load", lambda *a, **k: [])   # model "m": none to build here
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
    rc = cli.main(["train", "--resume", str(run), "--detach"])
    err = unwrapped(capsys.readouterr().err)
    if max_steps == 30:
        assert rc == 0 and spawned, err
        return
    assert rc == 2 and not spawned and "Traceback" not in err, err
    assert f"{run / 'config.yaml'}: training.max_steps is 20, below the run's last checkpoint at step 30" in err, err
    assert "set training.max_steps to 30 to finish the run now" in err, err
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"


def test_resume_with_num_epochs_lowered_below_the_last_checkpoint_is_refused_by_the_trainer(tmp_path, demo_model_dir):
    """The same with the step count from training.num_epochs (no max_steps): only the trainer knows the steps an
    epoch takes (its data's real lengths), so it refuses, before loading the model, naming num_epochs."""
    import torch
    import yaml

    from conftest import DEMO_CONFIG
    from engine.config import config_from_dict
    from engine.errors import UserError
    from engine.train.run import train
    from engine.train.signals import StopFlag

    run = tmp_path / "run"
    ckpt = _checkpoint(run, 100_000)
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")   # one the resume's pickle check passes
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["training"].pop("max_steps")
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = config_from_dict(raw, source=str(run / "config.yaml"))
    with pytest.raises(UserError) as e:
        train(cfg, run, resume=True, stop=StopFlag(run))
    assert e.value.message.startswith(f"{run / 'config.yaml'}: training.num_epochs 1 is ") and \
        "below the run's last checkpoint at step 100000" in e.value.message, e.value.message
    assert "set training.max_steps to 100000" in e.value.fix


@pytest.mark.parametrize("kept", ["checkpoint-4-keep", "checkpoint-4.bak"])
def test_resume_refuses_a_copy_of_a_checkpoint_transformers_would_delete(tmp_path, monkeypatch, capsys, kept):
    """A user keeps a good checkpoint as checkpoints/checkpoint-4-keep and resumes: transformers reads the number
    after checkpoint- in any folder's name, counted the copy as the run's checkpoint 4, and deleted it with the oldest
    once save_total_limit was passed. Refused before anything starts, naming the folder; lorapilot's own checkpoints
    (checkpoint-N) are untouched by the check."""
    import shutil

    from engine import cli
    from engine.train import launch, resume_check

    run = tmp_path / "run"
    (run / "config.yaml").parent.mkdir()
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\ntraining: {{max_steps: 8}}\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 4, "max_steps": 8}))
    shutil.copytree(_checkpoint(run, 4), run / "checkpoints" / kept)
    spawned = []
    monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
    monkeypatch.setattr(resume_check, "refuse_before_load", lambda *a, **k: [])   # model "m"
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
    assert cli.main(["train", "--resume", str(run), "--detach"]) == 2 and not spawned
    err = unwrapped(capsys.readouterr().err)
    assert f"{run / 'checkpoints' / kept}: transformers counts this folder as one of the run's checkpoints" in err, err
    assert "fix: move it out of" in err and "Traceback" not in err
    shutil.move(run / "checkpoints" / kept, tmp_path / kept)
    assert cli.main(["train", "--resume", str(run), "--detach"]) == 0 and spawned


def test_resume_of_a_run_directory_with_a_link_is_refused(tmp_path, monkeypatch, capsys):
    from engine import cli
    from engine.train import launch

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 4, "max_steps": 8}))
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    (run / "trainer.lock").symlink_to(precious)
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: pytest.fail("a trainer was started"))
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "trainer.lock: is a symbolic link" in unwrapped(err) and "Traceback" not in unwrapped(err), err
    assert precious.read_text() == "precious\n"


@pytest.mark.parametrize("target", ["a file", "a folder of the user's"])
def test_train_into_a_file_or_a_users_folder_is_refused_and_leaves_it_as_it_was(tmp_path, monkeypatch, capsys,
                                                                               target):
    """--run-dir naming a file was a FileExistsError traceback; a non-empty folder was refused, but kept the
    trainer.lock the refused launcher had made in it."""
    from conftest import DEMO_CONFIG
    from engine import cli
    from engine.train import launch

    mine = tmp_path / "mine"
    if target == "a file":
        mine.write_text("precious\n")
    else:
        mine.mkdir()
        (mine / "notes.txt").write_text("precious\n")
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: pytest.fail("a trainer was started"))
    monkeypatch.setattr(launch, "check_inputs", lambda cfg: None)
    assert cli.main(["train", str(DEMO_CONFIG), "--run-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert str(mine) in unwrapped(err) and "Traceback" not in unwrapped(err), err
    if target == "a file":
        assert "is a file" in unwrapped(err) and mine.read_text() == "precious\n"
    else:
        assert "not empty" in unwrapped(err) and os.listdir(mine) == ["notes.txt"]


def test_a_new_run_takes_the_next_name_when_another_launcher_made_it_first(tmp_path, monkeypatch):
    """Two `train` of one config in the same second: the folder the second saw free was made before its mkdir
    (simulated: the check for the name never sees it), which was a FileExistsError traceback."""
    from engine.config import Config
    from engine.train.launch import new_run_dir

    cfg = Config(model="m", run_name="same", runs_dir=str(tmp_path / "runs"))
    first = new_run_dir(cfg)
    (first / "config.yaml").write_text("theirs\n")
    monkeypatch.setattr(Path, "exists", lambda self: False)
    second = new_run_dir(cfg)
    assert first.name == "same" and second.name == "same-2"
    assert (first / "config.yaml").read_text() == "theirs\n"


def test_runs_dir_with_a_tilde_is_the_users_home(tmp_path, monkeypatch):
    """YAML does not expand ~: `runs_dir: ~/runs` made a folder named '~' in the working directory (where
    `lorapilot runs` does not look, and `rm -rf ~` to tidy it up deletes the home)."""
    from engine.config import Config
    from engine.settings import runs_root
    from engine.train.launch import new_run_dir

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    run = new_run_dir(Config(model="m", run_name="r", runs_dir="~/runs"))
    assert run == home / "runs" / "r" and os.listdir(work) == []
    monkeypatch.setenv("LORAPILOT_RUNS", "~/elsewhere")
    assert runs_root() == home / "elsewhere"


# ------------------------------------------------------------------ 11. names in a run directory that are not files

def _special(path: Path, what: str) -> None:
    if what == "a named pipe":
        os.mkfifo(path)
    elif what == "a folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["a named pipe", "a folder", "a link to /dev/zero"])
def test_status_and_metrics_that_are_not_files_cost_their_run_only(tmp_path, capsys, what):
    """A run directory from elsewhere whose status.json or metrics.jsonl is a named pipe, a folder or /dev/zero:
    `runs`, `stop` and the readers hung on the pipe (opening it waits for a writer), read /dev/zero until memory ran
    out, or, for a folder, ended `runs` with "Is a directory" (exit 2) for every run. Now the file is refused as
    a corrupt one is: `runs` lists the others and names it, `stop` answers, `resume` refuses before writing."""
    from engine.cli import main
    from engine.errors import UserError
    from engine.rundir import load_status, tail_lines

    root = tmp_path / "runs"
    good = root / "good"
    good.mkdir(parents=True)
    (good / "status.json").write_text(json.dumps({"state": "done", "step": 3, "max_steps": 3}))
    _write(good / "metrics.jsonl", [{"kind": "train", "step": 3, "time": 1.0, "loss": 0.5}])
    bad_status, bad_metrics = root / "bad-status", root / "bad-metrics"
    for run in (bad_status, bad_metrics):
        run.mkdir()
        (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl}\n")
    _special(bad_status / "status.json", what)
    _write(bad_status / "metrics.jsonl", [{"kind": "train", "step": 1, "time": 1.0, "loss": 0.5}])
    (bad_metrics / "status.json").write_text(json.dumps({"state": "stopped", "step": 1, "max_steps": 3}))
    _special(bad_metrics / "metrics.jsonl", what)

    with pytest.raises(Exception) as e:
        load_status(bad_status)
    assert str(bad_status / "status.json") in str(e.value)
    assert {"a named pipe": "a named pipe", "a folder": "a folder", "a link to /dev/zero": "a device"}[what] in str(e.value)
    assert read_metrics(bad_metrics) == [] and tail_lines(bad_metrics / "metrics.jsonl") == []

    assert main(["runs", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and "bad-metrics" in out and "bad-status" not in out
    assert str(bad_status / "status.json") in unwrapped(err) and "Traceback" not in err
    for run in (bad_status, bad_metrics):
        assert main(["stop", str(run)]) == 0 and "not running" in unwrapped(capsys.readouterr().out)
        with pytest.raises(UserError) as refused:  # resume takes the lock first: nothing is written into either
            RunLock.acquire(run).release()
        assert "not a regular file" in str(refused.value) or "symbolic link" in str(refused.value), refused.value
    assert not (bad_status / "trainer.lock").exists() and not (bad_metrics / "trainer.lock").exists()


@pytest.mark.timeout(60)
def test_a_lock_file_that_is_a_named_pipe_neither_hangs_stop_nor_is_taken(tmp_path, capsys):
    from engine.cli import main
    from engine.errors import UserError

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    os.mkfifo(run / "trainer.lock")
    assert not lock_held(run)
    assert main(["stop", str(run)]) == 0 and "not running" in unwrapped(capsys.readouterr().out)
    with pytest.raises(UserError) as e:
        RunLock.acquire(run).release()
    assert str(run / "trainer.lock") in str(e.value) and "named pipe" in str(e.value)


# ------------------------------------------------------------------ 12. two writers of one status.json

def test_status_writes_of_the_launcher_and_its_trainer_keep_each_others_fields(tmp_path, monkeypatch):
    """The launcher records the trainer's pid (`pid`, `pid_start`) while the trainer, just started, writes its first
    status (`state`, `launched`): each read status.json, merged its fields and wrote it back whole, so the one that
    read first and wrote last dropped the other's fields (no pid: the live run shows as lost and `stop` finds no
    trainer). Forced here: the trainer's write reads, then waits until the launcher's write has either finished
    (the fields are lost) or is blocked on the status lock (they cannot be)."""
    import fcntl
    import threading

    from engine import rundir

    rundir.write_status(tmp_path, state="starting", step=0)
    trainer_read = threading.Event()
    launcher_went = threading.Event()  # the launcher's write has finished, or waits for the lock
    real_read, real_flock = rundir.read_status, fcntl.flock

    def read_then_let_the_launcher_write(run_dir):
        status = real_read(run_dir)
        if threading.current_thread().name == "trainer":
            trainer_read.set()
            assert launcher_went.wait(60), "the launcher's write neither finished nor waited"
        return status

    def flock_saying_when_it_waits(fd, op):
        try:
            return real_flock(fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            launcher_went.set()
            return real_flock(fd, op)

    def launcher():
        assert trainer_read.wait(60)
        rundir.write_status(tmp_path, pid=1234, pid_start=5678)
        launcher_went.set()

    monkeypatch.setattr(rundir, "read_status", read_then_let_the_launcher_write)
    monkeypatch.setattr(fcntl, "flock", flock_saying_when_it_waits)
    launcher_thread = threading.Thread(target=launcher, name="launcher")
    trainer_thread = threading.Thread(target=rundir.write_status, args=(tmp_path,),
                                      kwargs={"state": "loading", "launched": 1.0}, name="trainer")
    launcher_thread.start()
    trainer_thread.start()
    trainer_thread.join()
    launcher_thread.join()
    status = rundir.load_status(tmp_path)
    assert (status["pid"], status["pid_start"], status["state"], status["launched"]) == (1234, 5678, "loading", 1.0)
    assert status["step"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json", "status.lock"]  # no temp file left behind


def test_a_status_lock_that_is_a_link_is_not_written_through(tmp_path):
    """status.lock is opened for writing in a run directory that may come from anyone: a link there is refused."""
    precious = tmp_path / "notes.txt"
    precious.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.lock").symlink_to(precious)
    with pytest.raises(OSError):
        write_status(run, state="starting")
    assert precious.read_text() == "precious\n" and not (run / "status.json").exists()


# ------------------------------------------------------------------ 13. a disk already full when the trainer starts

def test_a_disk_too_full_for_the_space_reserve_fails_the_run_and_says_so(tmp_path):
    """The trainer's first act on the disk is its space reserve (256 KiB): on a disk with less left it raised
    before its error handling, its traceback could not be written either, so the run stayed `starting` (then
    `lost`) with an empty train.log, the half-written reserve still taking the last space, and `lorapilot train`
    ended with exit 1 and no word. The disk is full for real only on a small filesystem; here the reserve's write
    fails as the OS fails it (ENOSPC) after a part of it was written."""
    from conftest import REPO
    from engine.rundir import SPACE_RESERVE_FILE, read_status

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl}\n")
    code = ("import errno, sys\nfrom pathlib import Path\nimport engine.rundir as rd\n"
            "def full(run_dir):\n"
            "    path = Path(run_dir) / rd.SPACE_RESERVE_FILE\n"
            "    path.write_bytes(bytes(4096))\n"
            "    raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
            "rd.keep_space_reserve = full\n"
            "from engine.train.run import main\nsys.exit(main([sys.argv[1]]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(run)], cwd=REPO, capture_output=True, text=True, timeout=300)
    status = read_status(run)
    assert r.returncode == 1 and status["state"] == "failed", (r.stderr, status)
    assert status["error"].startswith("no space left on device") and "free space" in status["hint"], status
    assert not (run / SPACE_RESERVE_FILE).exists()
    # the run's folder named, not the reserve, a file of lorapilot's own ("free space on .../space.reserve's disk")
    assert status["error"] == f"no space left on device: {run}" and SPACE_RESERVE_FILE not in status["hint"], status
    # no checkpoint to continue from, nor any to keep fewer of
    assert "no checkpoint was saved" in status["hint"] and "save_total_limit" not in status["hint"], status


@pytest.mark.parametrize("stage", ["lock", "status"])
def test_a_run_directory_moved_in_the_trainers_first_second_is_said_without_a_traceback(tmp_path, stage):
    """`mv runs/a runs/b` just as the trainer starts: its lock and its first status write sat outside the guard
    that says a move, so the trainer died on a FileNotFoundError traceback, and runs/b's status.json never said
    why. The move is said as one later is, in the moved folder's status.json."""
    from conftest import REPO
    from engine.rundir import read_status

    run, moved = tmp_path / "run", tmp_path / "moved"
    run.mkdir()
    code = ("import sys\nfrom pathlib import Path\nimport engine.rundir as rd\n"
            "run, moved = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "class Place(rd.RunPlace):\n"   # moved once the trainer holds the folder, before it takes the lock
            "    def __init__(self, d):\n"
            "        super().__init__(d)\n"
            "        run.rename(moved)\n"
            "real = rd.RunLock.acquire\n"
            "def acquire(d):\n"             # moved once it holds the lock, before its first status
            "    lock = real(d)\n"
            "    run.rename(moved)\n"
            "    return lock\n"
            + ("rd.RunPlace = Place\n" if stage == "lock" else "rd.RunLock.acquire = staticmethod(acquire)\n")
            + "from engine.train.run import main\nsys.exit(main([str(run)]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(run), str(moved)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert not run.exists()
    status = read_status(moved)
    assert status["state"] == "failed" and status["error"] == f"the run directory {run} was moved to {moved} " \
                                                               "while training", status


@pytest.mark.parametrize("rc", [-9, 1])
def test_a_trainer_that_ended_without_a_final_state_is_said(tmp_path, capsys, rc):
    """A trainer killed (the kernel's out-of-memory killer sends SIGKILL) or dead before it could record why:
    `lorapilot train` returned its exit status (-9 became 247) and printed nothing."""
    from engine.cli import _report_end
    from engine.rundir import write_status

    write_status(tmp_path, state="training", step=3, max_steps=8)
    assert _report_end(tmp_path, rc) == 1
    err = unwrapped(capsys.readouterr().err)
    assert "training" in err and "step 3" in err and str(tmp_path / "train.log") in err, err
    assert ("signal 9" in err) == (rc == -9), err


@pytest.mark.parametrize("how", ["moved", "deleted"])
def test_a_foreground_train_whose_run_directory_moved_says_why_the_run_ended_and_where_it_is(tmp_path, capsys, how):
    """`lorapilot train` in the foreground, its run directory moved while it trained: it read status.json at the
    old path, found none, and said 'exited with 1 ... without recording why', though the trainer had recorded
    why in the moved folder. It follows the folder and prints that reason, with the moved folder's log."""
    import shutil

    from engine.cli import _report_end
    from engine.rundir import RunPlace, write_status

    run, moved = tmp_path / "run", tmp_path / "moved"
    run.mkdir()
    write_status(run, state="training", step=3, max_steps=8)
    place = RunPlace(run)
    if how == "moved":
        run.rename(moved)   # what the trainer writes there once it finds the move (engine.train.run._moved)
        write_status(moved, state="failed", error=f"the run directory {run} was moved to {moved} while training",
                     hint=f"continue from its last checkpoint where it is now: lorapilot train --resume {moved}")
    else:
        shutil.rmtree(run)
    assert _report_end(run, 1, place) == 1
    err = unwrapped(capsys.readouterr().err)
    assert "without recording why" not in err, err
    if how == "moved":
        assert f"was moved to {moved}" in err and f"lorapilot train --resume {moved}" in err, err
        assert str(moved / "train.log") in err, err
    else:
        assert f"the run directory {run} was deleted while training" in err, err


def test_a_foreground_train_follows_its_moved_run_directorys_records(tmp_path):
    """`lorapilot train` in the foreground printed the records of metrics.jsonl at the old path: once the folder was
    moved, the trainer's last records (written in the moved folder) were not shown, and Ctrl-C asked the old path
    for a stop and said to monitor it. It follows the folder where it went."""
    import io

    from engine.rundir import MetricsWriter, RunPlace
    from engine.train.launch import RunHandle, follow

    run, moved = tmp_path / "run", tmp_path / "moved"
    run.mkdir()
    MetricsWriter(run).write("train", 1, loss=2.0)
    place = RunPlace(run)
    code = ("import json, sys, time\nfrom pathlib import Path\nrun, moved = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "run.rename(moved)\n"
            "with open(moved / 'metrics.jsonl', 'a') as f:\n"
            "    f.write(json.dumps({'kind': 'train', 'step': 2, 'time': time.time(), 'loss': 1.5}) + '\\n')\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run), str(moved)])
    handle = RunHandle(run, proc.pid, proc)
    out = io.StringIO()
    assert follow(handle, out=out, poll_s=0.01, place=place) == 0
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["step", "1"], ["step", "2"]], lines
    assert handle.run_dir == moved


def test_a_disk_full_while_the_launcher_creates_the_run_is_said_and_the_folder_can_be_used_again(tmp_path, monkeypatch,
                                                                                                capsys):
    """Checked on a 4 KiB tmpfs: config.yaml fitted, status.json did not, and `lorapilot train` ended in an OSError
    traceback, leaving config.yaml behind, so the same --run-dir, once space was freed, was refused as not empty.
    The OS's ENOSPC is raised here where status.json is written."""
    import errno

    from conftest import DEMO_CONFIG
    from engine import cli
    from engine.train import launch

    def full(run_dir, **fields):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: pytest.fail("a trainer was started"))
    monkeypatch.setattr(launch, "check_inputs", lambda cfg: None)
    monkeypatch.setattr(launch, "write_status", full)
    run = tmp_path / "run"
    assert cli.main(["train", str(DEMO_CONFIG), "--run-dir", str(run), "--detach"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "no space left on device" in err and str(run) in err and "Traceback" not in err, err
    assert [p.name for p in run.iterdir()] == ["trainer.lock"]
    launch.check_new_run_dir(run)  # free to start in again

    # A resume on that disk: the same traceback, where it marks the run starting again; now said, the run untouched.
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 4, "max_steps": 8}))
    assert cli.main(["train", "--resume", str(run), "--detach"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "no space left on device" in err and "Traceback" not in err, err
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"


def test_train_prints_a_finding_with_its_evidence_and_fix_as_inspect_data_does():
    """`lorapilot train` (and train.log) printed a pre-flight warning as its one headline: the fix the wizard and
    inspect-data show under it was left out. One formatter (engine.diagnose.finding) for every verb."""
    rec = {"kind": "finding", "step": 0, "time": 1.0, "code": "lora_alpha_unusual", "severity": "warning",
           "message": "lora.alpha 300 is 18.8 x r", "evidence": "alpha/r = 18.8", "fix": "set lora.alpha to 32"}
    assert format_record(rec) == ("pre-flight  [warning] lora_alpha_unusual: lora.alpha 300 is 18.8 x r\n"
                                  "            evidence: alpha/r = 18.8\n"
                                  "            fix: set lora.alpha to 32")


@pytest.mark.parametrize("kept", [True, False])
def test_resume_shows_the_step_it_resumes_from_while_the_trainer_loads(tmp_path, monkeypatch, kept):
    """Stopped at step 37 with its last checkpoint at 30, then `train --resume`: status.json kept step 37 while the
    resumed trainer loaded, so the monitor showed the stopped life's step until the first new log. Now it says the
    checkpoint's step (or 0, with no checkpoint left) from the start."""
    from engine import cli
    from engine.train import launch, resume_check

    run = tmp_path / "run"
    run.mkdir()
    if kept:
        _checkpoint(run, 30)
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\ntraining: {{max_steps: 40}}\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "step": 37, "max_steps": 40}))
    monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
    monkeypatch.setattr(resume_check, "refuse_before_load", lambda *a, **k: [])   # model "m"
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: subprocess.Popen(["true"]))
    assert cli.main(["train", "--resume", str(run), "--detach"]) == 0
    assert json.loads((run / "status.json").read_text())["step"] == (30 if kept else 0)


def test_the_launchers_resume_checks_judge_the_checkpoint_the_trainer_resumes_from(tmp_path, monkeypatch):
    """The newest checkpoint holds a pickle the trainer will not load (it skips it, as damaged): the launcher's
    checks (steps, config changes, tokens, adapter) judged that one while the trainer resumed from the one before."""
    import zipfile

    from engine.train import launch, resume_check

    run = tmp_path / "run"
    _checkpoint(run, 4)
    unsafe = _checkpoint(run, 8)
    with zipfile.ZipFile(unsafe / "optimizer.pt", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)          # not what a trainer saves
    (run / "config.yaml").write_text(f"model: m\ndataset: {{path: {tmp_path / 'd.jsonl'}}}\ntraining: {{max_steps: 40}}\n")
    monkeypatch.setattr(launch, "check_inputs", _no_model_or_data_here)
    judged: list = []
    monkeypatch.setattr(resume_check, "refuse_before_load", lambda rd, cfg, ckpt=None, **k: judged.append(ckpt) or [])
    found = launch.check_resume(run, {"state": "stopped", "step": 9, "max_steps": 40})
    assert Path(found.ckpt).name == "checkpoint-4" and judged == [found.ckpt]
    assert any("checkpoint-8" in note and "skipped" in note for note in found.notes), found.notes


@pytest.mark.parametrize("checkpoint", ["recorded", "unrecorded", "none"])
def test_a_resume_whose_data_is_gone_is_refused_in_the_foreground_saying_so(tmp_path, monkeypatch, capsys,
                                                                          demo_model_dir, checkpoint):
    """The run's data file deleted (or moved) since it stopped: `train --resume --detach` said 0 and the run failed
    later in its trainer (a run stopped before its first checkpoint, or one an earlier lorapilot saved), or was refused
    as data that "changed". The resume checks its inputs as a start does (check_inputs): exit 2, the path said to be
    missing, nothing started."""
    import shutil

    from engine import cli
    from engine.train import launch

    run, _ = _resumable_run(tmp_path, demo_model_dir, record=checkpoint == "recorded")
    if checkpoint == "none":
        shutil.rmtree(run / "checkpoints")
    (tmp_path / "d.jsonl").unlink()
    before = _files(run)
    spawned = []
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: spawned.append(1) or subprocess.Popen(["true"]))
    rc = cli.main(["train", "--resume", str(run), "--detach"])
    err = unwrapped(capsys.readouterr().err)
    assert rc == 2 and not spawned and "Traceback" not in err, err
    assert f"{tmp_path / 'd.jsonl'}: no such file or directory" in err and "changed" not in err, err
    assert _files(run) == before
