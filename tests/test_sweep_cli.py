"""`lorapilot sweep`: bad input is exit 2 with a clear message before anything starts; the plan, the budget."""

from __future__ import annotations

import re

import pytest

from conftest import HUB_COMMIT, cache_hub_dataset, run_cli, unwrapped
from engine.cli import main
from engine.sweep.sweepdir import read_sweep, write_sweep
from test_estimate_cli import config  # noqa: F401  (a 0.5 B model's config.json and 100 rows)


@pytest.fixture(autouse=True)
def _unwrapped(monkeypatch):
    """These tests read the printed lines whole; the wrapping at 80 columns is tested in test_cli_width."""
    monkeypatch.setattr("engine.wrap.WIDTH", 10_000)


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "runs"))


def _inputs_unchecked(monkeypatch) -> None:
    """The fixture's model is a config.json alone (no weights, no tokenizer): what a start checks and reads of the model
    and data (check_inputs, the examples' tokens) is not what these tests are about."""
    monkeypatch.setattr("engine.train.launch.check_inputs", lambda cfg, **kw: {})
    from engine.train.resume_check import TokensMade

    monkeypatch.setattr("engine.train.resume_check.make_tokens", lambda cfg: TokensMade({}, {}, {}))


def sweep(capsys, *argv):
    code = main(["sweep", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("flags, message", [
    (["--lr", ""], "--lr: the grid is empty"),
    (["--lr=-2e-4"], "--lr: -2e-4 is out of range"),
    (["--r", "0"], "--r: 0 is out of range"),
    (["--r", "4,x"], "--r: 'x' is not a whole number"),
    (["--steps", "2"], "--steps: 2 is too few"),
    (["--budget-minutes", "-5"], "--budget-minutes: -5 must be more than 0"),
    (["--parallel", "0"], "--parallel: 0 must be 1 or more"),
    # a trial of the 0.5 B model is ~12 s, ~10 s of it start-up (engine.estimate.timing.startup_seconds)
    (["--gpu", "h100-80", "--budget-minutes", "0.1"], "too small for even one trial"),
])
def test_bad_input_is_exit_2_before_anything_starts(config, capsys, flags, message):
    code, out, err = sweep(capsys, str(config), "--yes", *flags)
    assert code == 2 and message in unwrapped(err) and "Traceback" not in unwrapped(err)
    assert not (config.parent / "runs").exists()  # nothing was created


def test_a_model_path_that_is_not_there_is_refused_as_the_estimate_refuses_it(config, capsys):
    """The dry run exited 0 with the time unknown; `lorapilot estimate` refuses the same config (one check)."""
    gone = config.parent / "gone"
    config.write_text(config.read_text().replace(f"model: {config.parent / 'model'}", f"model: {gone}"))
    code, _, err = sweep(capsys, str(config), "--gpu", "h100-80", "--dry-run")
    assert code == 2 and "Traceback" not in err
    assert f"{gone}: not a directory, a preset or a hub id (owner/name)" in err
    assert main(["estimate", str(config), "--gpu", "h100-80"]) == 2
    assert f"{gone}: not a directory, a preset or a hub id (owner/name)" in capsys.readouterr().err


def test_a_budget_under_a_minute_says_seconds(config, capsys):
    """"too small for even one trial of 30 steps (about 0 min)": the estimate's wording, in seconds."""
    code, _, err = sweep(capsys, str(config), "--gpu", "h100-80", "--budget-minutes", "0.1", "--dry-run")
    assert code == 2 and "0 min" not in err
    assert re.search(r"too small for even one trial of \d+ steps \(~\d+ s\)", err), err


def test_missing_config_and_plain_directory(tmp_path, capsys):
    code, _, err = sweep(capsys, str(tmp_path / "nope.yaml"), "--yes")
    assert code == 2 and "config file not found" in unwrapped(err)
    code, _, err = sweep(capsys, str(tmp_path))
    assert code == 2 and "not a sweep directory" in unwrapped(err)
    code, _, err = sweep(capsys)
    assert code == 2 and "sweep needs a CONFIG" in unwrapped(err)


def test_not_confirmed_without_a_terminal(config, capsys, monkeypatch):
    _inputs_unchecked(monkeypatch)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, out, err = sweep(capsys, str(config), "--gpu", "a100-80")
    assert code == 2 and "pass --yes" in unwrapped(err) and "sweep   9 trials" in out
    assert not (config.parent / "runs").exists()


def test_dry_run_shows_time_cost_and_the_budget_fit(config, capsys):
    code, out, _ = sweep(capsys, str(config), "--gpu", "h100-80", "--price-per-hour", "3", "--dry-run")
    assert code == 0
    assert "9 trials over lr 1e-4, 2e-4, 5e-4 x r 4, 8, 16 (alpha = 2r), 99 steps each" in out
    assert "halving at steps 33 and 66" in out and "cost about" in out and "time    ~" in out
    code, out, _ = sweep(capsys, str(config), "--gpu", "h100-80", "--budget-minutes", "1", "--dry-run")
    assert code == 0 and "budget  trials 9 -> " in out and "(the grid's centre kept)" in out
    assert "(lr x r: 2e-4 x 8, " in out.splitlines()[0]  # the centre runs first and is kept


def test_a_dry_run_refuses_data_the_sweep_refuses(config, capsys):
    """A broken line in the data: the dry run showed a plan and exited 0; the same command without --dry-run
    printed that plan, then refused the data."""
    data = config.parent / "train.jsonl"
    data.write_text(data.read_text() + '{"text": "cut off\n')
    code, out, err = sweep(capsys, str(config), "--gpu", "h100-80", "--dry-run")
    assert code == 2 and f"{data}:101: invalid JSON" in unwrapped(err) and "sweep " not in out, (out, err)


def test_dry_run_without_a_gpu_times_the_trials_on_this_cpu(config, capsys, monkeypatch):
    # No GPU: the trials train on this machine's CPU, and the plan times them there, as the wizard does.
    monkeypatch.setattr("engine.estimate.detect_gpu", lambda: None)
    code, out, _ = sweep(capsys, str(config), "--lr", "1e-4", "--r", "8", "--steps", "12", "--dry-run")
    assert code == 0 and "1 trials over lr 1e-4 x r 8" in out and "a trial on this machine's CPU" in out
    # the caveat `lorapilot estimate` and the wizard give a CPU time: the sweep's is one too
    assert "speed this machine's CPU; a busy machine takes several times longer" in out, out


def test_trials_sharing_the_cpu_are_timed_as_one_after_another(config, capsys, monkeypatch):
    """--parallel 2 on the CPU halved the plan's time (and fitted a budget to it): two trials on the same cores
    each train at half the speed the estimate timed one at."""
    monkeypatch.setattr("engine.estimate.detect_gpu", lambda: None)
    flags = ["--lr", "1e-4,2e-4", "--r", "8", "--steps", "12", "--dry-run"]
    _, alone, _ = sweep(capsys, str(config), *flags)
    code, shared, _ = sweep(capsys, str(config), *flags, "--parallel", "2")
    assert code == 0 and "on the CPU, 2 at once (sharing its cores: timed as one after another)" in shared
    in_all = re.compile(r"^time .*", re.M)
    assert in_all.findall(shared) == in_all.findall(alone), (alone, shared)


def test_apply_on_a_running_sweep_is_refused_and_stop_answers(tmp_path, capsys):
    d = tmp_path / "sw"
    d.mkdir()
    write_sweep(d, {"state": "running", "driver_pid": 2 ** 22 + 4321, "trials": [], "steps": 12, "rungs": [4, 8],
                    "grid": {}, "name": "sw"})
    code, _, err = sweep(capsys, "--apply", str(tmp_path / "o.yaml"), str(d))
    assert code == 2 and "lost" in unwrapped(err)  # its driver is gone: no winner to apply
    assert main(["stop", str(d)]) == 0 and "not running" in capsys.readouterr().out


def test_progress_of_a_running_sweep_says_the_time_left(tmp_path, capsys):
    import os
    import time

    d = tmp_path / "sw"
    d.mkdir()
    trials = [{"id": "lr1e-3_r4", "learning_rate": 1e-3, "r": 4, "state": "training", "started": time.time() - 120},
              {"id": "lr1e-3_r8", "learning_rate": 1e-3, "r": 8, "state": "pending"}]
    write_sweep(d, {"state": "running", "driver_pid": os.getpid(), "started": time.time() - 120, "trials": trials,
                    "steps": 12, "rungs": [4, 8], "grid": {}, "name": "sw", "lanes": 1, "plan": {"trial_s": 600.0}})
    code, out, _ = sweep(capsys, str(d))
    assert code == 0 and "running, 120 s so far, ~18 min left at most" in out   # 480 s of the first, 600 of the next


def test_real_process_prints_no_traceback(tmp_path):
    r = run_cli("sweep", str(tmp_path / "none.yaml"), "--r", "0", timeout=120)
    assert r.returncode == 2 and "--r: 0 is out of range" in r.stderr and "Traceback" not in r.stderr


def test_apply_to_an_existing_file_is_refused_without_force(tmp_path, capsys, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
    from sweep_fakerun import make_sweep

    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)  # no terminal to ask on
    sweep_dir = make_sweep(tmp_path, state="done")
    mine = tmp_path / "best.yaml"
    mine.write_text("# my own config\n")
    code, out, err = sweep(capsys, str(sweep_dir), "--apply", str(mine))
    assert code == 2 and "best.yaml: exists; not overwritten" in unwrapped(err) and "--force" in unwrapped(err)
    assert mine.read_text() == "# my own config\n" and "Traceback" not in unwrapped(err)
    code, out, err = sweep(capsys, str(sweep_dir), "--apply", str(mine), "--force")
    assert code == 0 and mine.read_text().startswith("# From sweep"), err


def test_a_new_sweep_with_apply_to_an_existing_file_is_refused_before_it_starts(config, capsys, monkeypatch):
    _inputs_unchecked(monkeypatch)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    mine = config.parent / "best.yaml"
    mine.write_text("# my own config\n")
    code, out, err = sweep(capsys, str(config), "--gpu", "a100-80", "--yes", "--apply", str(mine))
    assert code == 2 and "best.yaml: exists; not overwritten" in unwrapped(err)
    assert mine.read_text() == "# my own config\n" and not (config.parent / "runs").exists()


@pytest.mark.parametrize("where", ["file", "under a file", "runs root under a file"])
def test_a_sweep_folder_that_cannot_be_one_is_named(config, capsys, monkeypatch, tmp_path, where):
    """--sweep-dir FILE (or a folder under a file, or a runs root under one) said only "Not a directory": the
    words of train --run-dir, naming the flag or the runs root, and exit 2."""
    _inputs_unchecked(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    flags, said = {"file": (["--sweep-dir", str(afile)], f"--sweep-dir {afile}: is a file, not a folder"),
                   "under a file": (["--sweep-dir", str(afile / "x")],
                                    f"--sweep-dir {afile / 'x'}: cannot create it (Not a directory)"),
                   "runs root under a file": ([], f"runs root {afile / 'runs'}: cannot create sweep-")}[where]
    monkeypatch.setenv("LORAPILOT_RUNS", str(afile / "runs"))
    code, out, err = sweep(capsys, str(config), "--gpu", "a100-80", "--yes", *flags)
    assert code == 2 and said in unwrapped(err) and "Traceback" not in unwrapped(err), err
    assert afile.read_text() == "mine\n"


def test_train_with_a_runs_root_under_a_file_names_it(config, capsys, monkeypatch, tmp_path):
    _inputs_unchecked(monkeypatch)
    (tmp_path / "afile").write_text("mine\n")
    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "afile" / "runs"))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"runs root {tmp_path / 'afile' / 'runs'}: cannot create" in unwrapped(err) and "LORAPILOT_RUNS" in unwrapped(err)


def test_a_sweep_folder_in_use_is_refused_before_the_plan_and_the_question(config, capsys, tmp_path):
    """The dry run said nothing of it, and the real one asked "Start the sweep? [y/N]" before refusing."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "sweep.json").write_text("{}")
    code, out, err = sweep(capsys, str(config), "--gpu", "a100-80", "--dry-run", "--sweep-dir", str(used))
    assert code == 2 and "exists and is not empty" in unwrapped(err) and "--sweep-dir" in unwrapped(err)
    assert "trials over" not in out   # no plan for a sweep that cannot start


def test_a_second_sweep_into_the_same_folder_is_refused(config, capsys, monkeypatch, tmp_path):
    """Two `lorapilot sweep --sweep-dir X` at once both found X empty and both wrote sweep.json and started a
    driver over the same trial folders. The first holds sweep.lock (here: the test) and the second is refused,
    naming the holder, before writing anything."""
    import fcntl
    import os

    _inputs_unchecked(monkeypatch)
    monkeypatch.setattr("engine.sweep.driver.spawn_detached", lambda *a, **k: pytest.fail("a driver was started"))
    folder = tmp_path / "sweep"
    folder.mkdir()
    fd = os.open(folder / "sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        code, out, err = sweep(capsys, str(config), "--gpu", "a100-80", "--yes", "--sweep-dir", str(folder))
    finally:
        os.close(fd)
    assert code == 2 and f"{folder}: another sweep is writing into this folder (pid 4242)" in unwrapped(err), err
    assert os.listdir(folder) == ["sweep.lock"]


def test_the_driver_holds_the_sweep_lock(config, capsys, monkeypatch, tmp_path):
    """The lock goes to the driver with its pid, so a second sweep is refused for the sweep's whole life."""
    import os
    from types import SimpleNamespace

    _inputs_unchecked(monkeypatch)
    given = {}

    def spawn(cmd, log, *, pass_fds=(), **env):
        given["stat"] = [os.fstat(fd) for fd in pass_fds]
        return SimpleNamespace(pid=4243)

    monkeypatch.setattr("engine.sweep.driver.spawn_detached", spawn)
    folder = tmp_path / "sweep"
    code, out, err = sweep(capsys, str(config), "--gpu", "a100-80", "--yes", "--detach", "--sweep-dir", str(folder))
    assert code == 0, err
    lock = os.stat(folder / "sweep.lock")
    assert [(s.st_dev, s.st_ino) for s in given["stat"]] == [(lock.st_dev, lock.st_ino)]
    assert (folder / "sweep.lock").read_text() == "4243\n" and (folder / "sweep.json").exists()


def test_resume_with_the_sweeps_own_command_starts_it_the_first_time(config, capsys, tmp_path):
    """A pod's start-up script runs `sweep CONFIG --sweep-dir DIR --resume` every time: the first time there is no
    sweep to resume, and the same command starts it; a folder holding something else is still refused."""
    new = tmp_path / "sw"
    code, out, _ = sweep(capsys, str(config), "--gpu", "h100-80", "--sweep-dir", str(new), "--resume", "--dry-run")
    assert code == 0 and f"no sweep in {new} yet: starting it" in out and "9 trials over lr" in out
    new.mkdir()
    (new / "notes.txt").write_text("mine")
    code, _, err = sweep(capsys, str(config), "--sweep-dir", str(new), "--resume", "--dry-run")
    assert code == 2 and "not a sweep directory" in unwrapped(err)


def test_the_drivers_writes_of_sweep_json_never_follow_a_link_planted_beside_it(tmp_path):
    """The driver rewrites sweep.json every few seconds for hours, through sweep.json.tmp: a link put there after the
    folder was checked (a shared folder, another user) had the user's file it points to overwritten with the
    record. Each write now makes a temporary file of its own (O_EXCL, never through a link)."""
    import json

    precious = tmp_path / "notes.txt"
    precious.write_text("precious\n")
    d = tmp_path / "sweep"
    d.mkdir()
    write_sweep(d, {"state": "running", "trials": []})
    (d / "sweep.json.tmp").symlink_to(precious)
    write_sweep(d, {"state": "done", "trials": []})
    assert precious.read_text() == "precious\n"
    assert json.loads((d / "sweep.json").read_text())["state"] == "done"
    assert sorted(p.name for p in d.iterdir()) == ["sweep.json", "sweep.json.tmp"]   # the link alone, untouched


def test_a_hub_dataset_is_read_once_as_the_sweep_starts(config, capsys, monkeypatch, hub_out_of_reach, demo_model_dir):
    """The start read a hub dataset twice: every row checked (engine.train.launch.check_inputs), then loaded again for
    the revision sweep.json records (a second read of its whole train split, which could be of a newer commit than
    the rows checked). Loaded once: the revision recorded is the one read."""
    from types import SimpleNamespace

    import engine.data.formats as formats

    import shutil

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):   # the trials' tokens are made
        shutil.copyfile(demo_model_dir / name, config.parent / "model" / name)
    cache_hub_dataset(hub_out_of_reach, "someone/rows", [{"instruction": f"q{i}", "output": "a"} for i in range(20)])
    config.write_text(config.read_text().replace("path: train.jsonl", "path: someone/rows, validation_split: 0.1"))
    loads = []
    load = formats.load_hub_dataset
    monkeypatch.setattr(formats, "load_hub_dataset", lambda repo, notes: loads.append(repo) or load(repo, notes))
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=12345))
    code, out, err = sweep(capsys, str(config), "--gpu", "h100-80", "--lr", "1e-4", "--r", "4", "--yes", "--detach")
    assert code == 0, err
    assert loads == ["someone/rows"]
    sweep_dir = re.search(r"sweep directory: (.+)", out)[1]
    assert read_sweep(sweep_dir)["data"]["hub_revisions"] == {"someone/rows": HUB_COMMIT}
    assert read_sweep(sweep_dir)["tokens"]["train"]["count"] == 18   # made of the rows read


def _with_the_demo_tokenizer(config, demo_model_dir) -> None:
    """The fixture's model folder with the demo's tokenizer: the trials' tokens can be made of its 100 rows."""
    import shutil

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(demo_model_dir / name, config.parent / "model" / name)


def test_a_new_sweep_tokenizes_its_data_once(config, capsys, monkeypatch, demo_model_dir):
    """The start tokenized every row twice before its y/N: once for the plan's lengths (the estimate's token_lengths),
    again for the tokens sweep.json records (tokens_now). One load of the examples serves both."""
    from types import SimpleNamespace

    import engine.data

    _with_the_demo_tokenizer(config, demo_model_dir)
    loads = []
    load = engine.data.load_examples
    monkeypatch.setattr(engine.data, "load_examples", lambda *a, **k: loads.append(1) or load(*a, **k))
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=12345))
    code, out, err = sweep(capsys, str(config), "--gpu", "h100-80", "--lr", "1e-4", "--r", "4", "--yes", "--detach")
    assert code == 0, err
    assert len(loads) == 1
    assert read_sweep(re.search(r"sweep directory: (.+)", out)[1])["tokens"]["train"]["count"] > 0


def test_the_sweeps_tokens_are_the_ones_train_records(config, capsys, monkeypatch, demo_model_dir, tmp_path):
    """The seam: sweep.json's tokens (a resume of the sweep is refused on others) are the record a trial's trainer
    makes of the same config (engine.train.run.load, whose record each checkpoint keeps)."""
    from types import SimpleNamespace

    from engine.config import load_config
    from engine.train.run import load

    _with_the_demo_tokenizer(config, demo_model_dir)
    monkeypatch.setattr("engine.sweep.driver.spawn_driver", lambda sweep_dir, lock: SimpleNamespace(pid=12345))
    code, out, err = sweep(capsys, str(config), "--gpu", "h100-80", "--lr", "1e-4", "--r", "4", "--yes", "--detach")
    assert code == 0, err
    recorded = read_sweep(re.search(r"sweep directory: (.+)", out)[1])["tokens"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained = load(load_config(config), run_dir, resume=False, data=None, tokenizer=None).tokens
    assert trained is not None and recorded["train"]["sha256"] and recorded == trained


def test_the_demo_config_without_lr_is_swept_over_the_demos_rates(capsys, config):  # noqa: F811
    """`lorapilot sweep presets/demo.yaml` swept 1e-4,2e-4,5e-4, all far below the demo model's 1e-3 to 5e-3; a
    pretrained model's config keeps that grid."""
    from tests.conftest import DEMO_CONFIG

    code, out, _ = sweep(capsys, str(DEMO_CONFIG), "--r", "8", "--steps", "12", "--dry-run")
    assert code == 0 and "3 trials over lr 1e-3, 3e-3, 5e-3 x r 8" in out, out
    code, out, _ = sweep(capsys, str(config), "--r", "8", "--steps", "12", "--dry-run")
    assert code == 0 and "3 trials over lr 1e-4, 2e-4, 5e-4 x r 8" in out, out


CUT_SCRIPT = """
import os, signal, sys
from types import SimpleNamespace
import engine.sweep.driver, engine.sweep.sweepdir
from tui.models.sweep_request import run_sweep_verb

real_write = engine.sweep.sweepdir.write_sweep
def write_sweep(*a, **k):   # the app quits here: it ends its data helper, which runs this start, by SIGTERM
    os.kill(os.getpid(), signal.SIGTERM)
    return real_write(*a, **k)
def spawn_detached(cmd, log, **k):   # the driver's start, said rather than done
    open(sys.argv[2], "w").write(" ".join(cmd))
    return SimpleNamespace(pid=os.getpid())
engine.sweep.sweepdir.write_sweep = write_sweep
engine.sweep.driver.spawn_detached = spawn_detached
print(run_sweep_verb(["presets/demo.yaml", "--yes", "--detach", "--steps", "3", "--sweep-dir", sys.argv[1]]))
"""


def test_a_start_cut_by_sigterm_leaves_a_whole_sweep(tmp_path):
    """The wizard's quick sweep starts in its data helper, which the app ends by SIGTERM when it quits during a call.
    Cut between making the folder and starting its driver (a real start on the demo), the folder held a lock and a
    base config and no sweep.json: `lorapilot sweep DIR` said "not a sweep directory"; a little later, a sweep.json
    with no driver. The SIGTERM now waits until the driver runs, then ends the helper as before."""
    import os
    import signal
    import subprocess
    import sys

    from engine.settings import PRESETS_DIR

    folder, spawned = tmp_path / "sweep", tmp_path / "spawned"
    r = subprocess.run([sys.executable, "-c", CUT_SCRIPT, str(folder), str(spawned)], capture_output=True, text=True,
                       timeout=600, cwd=PRESETS_DIR.parent, env={**os.environ, "LORAPILOT_RUNS": str(tmp_path / "runs")})
    assert r.returncode == -signal.SIGTERM, (r.returncode, r.stderr[-2000:])   # ended, as the quit asked
    assert "engine.sweep.driver" in spawned.read_text()   # but only once the driver was started
    assert read_sweep(folder)["trials"] and (folder / "base_config.yaml").exists()


def test_the_sweep_start_hashes_its_data_before_deferring_sigterm(tmp_path, monkeypatch):
    """The start defers SIGTERM from making the folder to starting the driver; sweep.json's data record, made inside
    that, read every data file through sha256 there, so an app quitting mid-start (it ends the data helper by
    SIGTERM and waits for it) waited on the hash of the whole dataset. It is made before."""
    import os
    import signal
    from types import SimpleNamespace

    import engine.data.fingerprint
    import engine.sweep.driver
    from engine.settings import PRESETS_DIR
    from tui.models.sweep_request import run_sweep_verb

    handlers = []
    real = engine.data.fingerprint.data_record

    def data_record(*a, **k):
        handlers.append(signal.getsignal(signal.SIGTERM))
        return real(*a, **k)

    monkeypatch.setattr(engine.data.fingerprint, "data_record", data_record)
    monkeypatch.setattr(engine.sweep.driver, "spawn_detached", lambda cmd, log, **k: SimpleNamespace(pid=os.getpid()))
    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(PRESETS_DIR.parent)
    before = signal.getsignal(signal.SIGTERM)
    run_sweep_verb(["presets/demo.yaml", "--yes", "--detach", "--steps", "3", "--sweep-dir", str(tmp_path / "s")])
    assert read_sweep(tmp_path / "s")["data"] and handlers and all(h == before for h in handlers), handlers
