"""A path given on the command line with a leading ~ is the user's home, quoted or not: the shell expands ~ only
where it is not quoted, and a path with a space must be (`--out "~/my exports"` wrote into a folder named '~' in
the working directory, which a later `rm -rf ~` to tidy it up would turn into the loss of the home directory)."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli

from engine.cli import build_parser

# Every argument that names a file or folder, in a command line that parses.
PATH_ARGUMENTS = [
    (["train", "~/a b.yaml", "--run-dir", "~/runs/r"], ["config", "run_dir"]),
    (["train", "--resume", "~/runs/r"], ["resume"]),
    (["monitor", "~/runs/r"], ["run_dir"]),
    (["runs", "--root", "~/runs"], ["root"]),
    (["stop", "~/runs/r"], ["run_dir"]),
    (["chat", "~/runs/r"], ["run_dir"]),
    (["estimate", "~/a b.yaml"], ["config"]),
    (["sweep", "~/a b.yaml", "--sweep-dir", "~/s", "--apply", "~/win.yaml"], ["target", "sweep_dir", "apply"]),
    (["inspect-data", "~/d.jsonl", "--model", "~/m", "--config", "~/c.yaml"], ["path", "model", "config"]),
    (["inspect-data", "~/d.jsonl", "--fix", "~/c.yaml"], ["fix"]),
    (["diagnose", "~/runs/r"], ["run_dir"]),
    (["prepare", "~/raw", "--out", "~/out.jsonl"], ["sources", "out"]),
    (["export", "~/runs/r", "--out", "~/my exports/x"], ["run_dir", "out"]),
    (["export", "~/runs/r", "--merged", "~/m", "--llama-cpp", "~/llama.cpp"], ["merged", "llama_cpp"]),
]


@pytest.mark.parametrize(("argv", "names"), PATH_ARGUMENTS, ids=lambda v: v[0] if isinstance(v[0], str) else None)
def test_every_path_argument_reads_a_leading_tilde_as_home(argv, names, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(argv)
    for name in names:
        value = getattr(args, name)
        for one in value if isinstance(value, list) else [value]:
            assert one.startswith(str(tmp_path) + os.sep), (name, one)


def test_prepare_writes_a_quoted_home_path_into_the_home(tmp_path):
    """The whole way, in a real process: the file lands in the home, and no folder named '~' appears here."""
    home, here = tmp_path / "home", tmp_path / "here"
    (home / "raw").mkdir(parents=True)
    here.mkdir()
    (home / "raw" / "notes.txt").write_text("A first paragraph of notes.\n\nA second one, longer than the first.\n",
                                            encoding="utf-8")
    r = run_cli("prepare", "~/raw/notes.txt", "--out", "~/my data/train.jsonl", cwd=here, env={"HOME": str(home)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (home / "my data" / "train.jsonl").is_file()
    assert not (here / "~").exists()


def test_the_apps_paths_read_a_leading_tilde_as_home(monkeypatch, tmp_path):
    """`lorapilot "~/cfg.yaml"` opens the wizard on the home's config (it fell through to the headless verbs'
    'invalid choice'), and the monitor's and playground's run directories read ~ the same way."""
    from tui.entry import _wants_app
    from tui.launch_app import app_options

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cfg.yaml").write_text("model: lorapilot-demo\n", encoding="utf-8")
    (tmp_path / "runs" / "r" / "adapter").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "status.json").write_text("{}", encoding="utf-8")
    (tmp_path / "runs" / "r" / "config.yaml").write_text("model: lorapilot-demo\n", encoding="utf-8")
    assert _wants_app(["~/cfg.yaml"])
    assert app_options(["~/cfg.yaml"]) == {"start": "wizard", "config_path": str(tmp_path / "cfg.yaml")}
    assert app_options(["monitor", "~/runs/r"])["run_dir"] == str(tmp_path / "runs" / "r")
    assert app_options(["playground", "~/runs/r"])["run_dir"] == str(tmp_path / "runs" / "r")


def test_a_mistyped_config_for_the_wizard_is_named_not_an_invalid_verb(tmp_path, monkeypatch, capsys):
    """`lorapilot CONFIG.yaml` with a typo in the name: before, argparse answered "invalid choice: 'my.yml' (choose
    from 'train', ...)", as if the user had mistyped a verb; a beginner could not tell the file was the problem."""
    from tui.entry import main

    monkeypatch.chdir(tmp_path)
    for name in ("my.yml", "presets/dem.yaml"):
        assert main([name]) == 2
        err = capsys.readouterr().err
        assert f"{name}: config file not found" in err and "invalid choice" not in err, err
