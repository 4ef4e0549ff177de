"""Run folder names the trainer accepts: the launcher names or refuses them before anything is detached (the trainer
re-reads config.yaml, whose run_name is the folder's name, and refuses a name run_name_problem refuses)."""

from __future__ import annotations

import os
import re

import pytest

from conftest import DEMO_CONFIG, unwrapped
from engine.config import MAX_RUN_NAME_BYTES, Config, run_name_problem
from engine.errors import UserError


@pytest.mark.parametrize("stem", ["a\tb", "x" * 240, "ü" * 150])
def test_a_folder_named_after_the_config_file_is_a_name_the_trainer_accepts(tmp_path, stem):
    """No run_name: the folder is named after the config file. A config named 'a<TAB>b.yaml' made 'a<TAB>b-<time>',
    `train --detach` said 0 and its trainer failed on its own config.yaml ('run_name holds a control character'); a
    240-character file name failed in mkdir ('File name too long', fix: set runs_dir to a folder you can write)."""
    from engine.train.launch import new_run_dir

    rd = new_run_dir(Config(model="m", runs_dir=str(tmp_path / "runs")), config_name=stem)
    assert rd.is_dir() and run_name_problem(rd.name) is None
    assert rd.name.startswith(stem[:4].replace("\t", "-"))
    # the next in the same second too
    again = new_run_dir(Config(model="m", runs_dir=str(tmp_path / "runs")), config_name=stem)
    assert again != rd and again.name.endswith("-2") and run_name_problem(again.name) is None


def test_the_next_free_name_of_a_long_run_name_is_one_the_trainer_accepts(tmp_path):
    """run_name of 200 bytes is allowed; its second run became '<name>-2', 202 bytes, which the trainer refused."""
    from engine.train.launch import new_run_dir

    name = "r" * MAX_RUN_NAME_BYTES
    cfg = Config(model="m", run_name=name, runs_dir=str(tmp_path / "runs"))
    assert new_run_dir(cfg).name == name
    second = new_run_dir(cfg)
    assert second.name.endswith("-2") and run_name_problem(second.name) is None


@pytest.mark.parametrize("name", ["c\td", "y" * 230])
def test_a_run_dir_whose_name_the_trainer_refuses_is_refused_before_the_detach(tmp_path, name):
    """`train --run-dir 'runs/c<TAB>d' --detach` (or a 230-byte name) returned 0 and the trainer failed at once on its
    config.yaml's run_name; now refused in the launcher, naming --run-dir, nothing made."""
    from engine.config import load_config
    from engine.train.launch import start_run

    with pytest.raises(UserError) as e:
        start_run(load_config(DEMO_CONFIG), run_dir=tmp_path / "runs" / name, check=False)
    text = unwrapped(str(e.value))
    assert text.startswith("--run-dir") and "\t" not in text and "run_name" not in text.split(":")[0]
    assert not (tmp_path / "runs").exists()


def test_cli_run_dir_name_refused_exit_2(tmp_path):
    from conftest import run_cli

    r = run_cli("train", str(DEMO_CONFIG), "--run-dir", str(tmp_path / "c\td"), "--detach")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--run-dir" in unwrapped(r.stderr) and "control character" in unwrapped(r.stderr)
    assert os.listdir(tmp_path) == []


def test_a_sweep_folder_named_after_a_long_config_file_is_made(tmp_path):
    """`sweep` of a config with a 240-character file name failed in mkdir: 'runs root ...: cannot create ... (File name
    too long)', fix: set runs_dir to a folder you can write."""
    from pathlib import Path

    from engine.sweep.command import _make_sweep_dir

    path, lock = _make_sweep_dir(Config(model="m", runs_dir=str(tmp_path / "runs")), Path("x" * 240 + ".yaml"), None)
    lock.release()
    assert path.is_dir() and path.name.startswith("sweep-xxx") and len(path.name.encode()) <= MAX_RUN_NAME_BYTES
    assert re.search(r"-\d{8}-\d{6}$", path.name), path.name   # its time kept, the file's name cut


def _a_run(folder):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: m\n")
    (folder / "status.json").write_text('{"state": "done"}')
    (folder / "checkpoints").mkdir()
    return folder


@pytest.mark.parametrize("inside", ["checkpoints/checkpoint-99", "nested", "adapter/x"])
def test_a_run_dir_inside_another_run_is_refused(tmp_path, inside):
    """`train --run-dir RUN/checkpoints/checkpoint-99` trained a run inside another's checkpoints (its resume then
    refused the look-alike, or its rotation deleted the new run); any folder inside a run mixed two runs' files."""
    from engine.config import load_config
    from engine.train.launch import start_run

    other = _a_run(tmp_path / "other")
    with pytest.raises(UserError) as e:
        start_run(load_config(DEMO_CONFIG), run_dir=other / inside, check=False)
    assert f"inside the run directory {other}" in unwrapped(str(e.value))
    assert sorted(os.listdir(other)) == ["checkpoints", "config.yaml", "status.json"]
    assert os.listdir(other / "checkpoints") == []


def test_a_run_dir_inside_a_sweep_is_refused(tmp_path):
    """`train --run-dir SWEEP/lr9_r4` made a folder the sweep's readers take for one of its trials."""
    from engine.config import load_config
    from engine.train.launch import start_run

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    with pytest.raises(UserError) as e:
        start_run(load_config(DEMO_CONFIG), run_dir=sweep / "lr9_r4", check=False)
    assert f"inside the sweep directory {sweep}" in unwrapped(str(e.value))
    assert os.listdir(sweep) == ["sweep.json"]
