"""A path given where a run directory is wanted, refused in one wording by every verb: 'no such run directory' for a
typo, 'not a folder' for a file, else what the folder lacks; with where the runs are listed."""

from __future__ import annotations

import json

import pytest
from conftest import unwrapped

from engine.cli import main
from engine.errors import UserError
from tui.launch_app import app_options


@pytest.fixture
def places(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    return tmp_path


@pytest.mark.parametrize("argv", [["stop"], ["chat"], ["train", "--resume"], ["export"],
                                  ["export", "--merged", "/nowhere/out"]])
def test_every_verb_says_a_missing_run_directory_is_not_there(places, capsys, argv):
    """`stop` said 'not a run directory' and `chat` / `train --resume` / `export --merged` 'not a run directory (no
    config.yaml)' for a typo; `export` of an empty folder said it had no finished adapter and advised resuming it."""
    assert main([*argv, str(places / "nope")]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert f"{places / 'nope'}: no such run directory" in err and "`lorapilot runs` lists them" in err, err
    assert main([*argv, str(places / "file")]) == 2
    assert f"{places / 'file'}: not a folder" in unwrapped(capsys.readouterr().err)
    assert main([*argv, str(places / "empty")]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert f"{places / 'empty'}: not a run" in err and "resume" not in err, err


def test_the_monitor_refuses_a_folder_that_holds_no_run(places):
    """It opened on any folder, showing a run of state 'unknown' at step 0 (`lorapilot monitor runs`, the root)."""
    with pytest.raises(UserError, match=r": not a run or sweep directory \(no status.json, metrics.jsonl or "
                                        r"sweep.json\)") as e:
        app_options(["monitor", str(places / "empty")])
    assert "`lorapilot monitor` alone picks from the runs" in str(e.value)
    with pytest.raises(UserError, match=r": no such run directory"):
        app_options(["monitor", str(places / "nope")])
    for name, file, text in (("run", "status.json", "{}"), ("starting", "config.yaml", "model: x\n"),
                             ("sweep", "sweep.json", json.dumps({}))):
        (places / name).mkdir()
        (places / name / file).write_text(text)
        assert app_options(["monitor", str(places / name)])["run_dir"] == str(places / name)


def test_the_playground_refuses_a_folder_that_holds_no_run(places):
    """`lorapilot playground EMPTY` said 'no adapter/ yet (the run has not finished)' and advised `lorapilot monitor
    EMPTY`, which refuses that folder: a folder that is no run is named as one, as chat and export name it."""
    with pytest.raises(UserError, match=r"empty: not a run directory \(no config.yaml\)") as e:
        app_options(["playground", str(places / "empty")])
    assert "monitor" not in str(e.value) and "`lorapilot runs` lists them" in str(e.value)
    with pytest.raises(UserError, match=r"nope: no such run directory"):
        app_options(["playground", str(places / "nope")])
    with pytest.raises(UserError, match=r"file: not a folder"):
        app_options(["playground", str(places / "file")])
