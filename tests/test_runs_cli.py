"""`lorapilot runs`: fits 80 columns, lists sweeps, and `--watch` prints one line per state change."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run  # noqa: E402

from conftest import run_cli  # noqa: E402
from engine.rundir import loss_text  # noqa: E402
from engine.runs_list import watch_lines  # noqa: E402


def _sweep(root: Path, name: str) -> Path:
    d = root / name
    make_run(d / "lr2e-4_r8", state="done", steps_done=40, max_steps=40)
    make_run(d / "lr1e-3_r16", state="training", steps_done=10, max_steps=40)
    (d / "sweep.json").write_text(json.dumps({
        "state": "done", "driver_pid": None, "updated": time.time(), "steps": 40,
        "trials": [{"id": "lr2e-4_r8", "state": "done"}, {"id": "lr1e-3_r16", "state": "stopped"}],
        "winner": {"id": "lr2e-4_r8", "eval_loss": 1.2346}}), encoding="utf-8")
    return d


def test_runs_fits_80_columns_and_lists_sweeps(tmp_path):
    long = "my-long-experiment-name-on-llama-3.1-8b-20261203-101500"
    make_run(tmp_path / long, state="done", steps_done=1200, max_steps=1200)
    make_run(tmp_path / "demo-20261203-101600", state="training", steps_done=900, max_steps=1200, pid=None)
    _sweep(tmp_path, "sweep-demo-20261203-102000")
    r = run_cli("runs", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    text = r.stdout
    assert "20261203-101500" in text  # a long name keeps its end (the timestamp)
    assert "1200/1200" in text
    at = next(i for i, line in enumerate(lines) if line.startswith("sweep-demo-20261203-102000 "))
    assert "done" in lines[at] and "2/2 trials" in lines[at] and "1.235" in lines[at]
    # Its trials follow it, indented.
    assert lines[at + 1].startswith("  · lr1e-3_r16 ") and lines[at + 2].startswith("  · lr2e-4_r8 "), lines


def test_watch_prints_one_line_per_state_change(tmp_path):
    alive = os.getpid()  # a live pid: a training run whose trainer is gone reads "lost"
    run = make_run(tmp_path / "demo-1", state="training", steps_done=10, max_steps=40, pid=alive)
    changes = iter([
        lambda: None,                                                                    # nothing changed
        lambda: make_run(run, state="done", steps_done=40, max_steps=40),                # finished
        lambda: make_run(tmp_path / "demo-2", state="training", steps_done=1, max_steps=40, pid=alive),  # a new run
    ])
    lines = list(watch_lines(tmp_path, poll_s=0, sleep=lambda s: next(changes)(), rounds=3))
    assert len(lines) == 2, lines
    assert "demo-1" in lines[0] and "training -> done" in lines[0] and "40/40" in lines[0]
    assert "demo-2" in lines[1] and "new, training" in lines[1]


def test_a_name_with_control_characters_is_escaped_before_the_columns_are_laid_out(tmp_path):
    """A run folder named with an escape sequence (from someone else's runs): the table escaped it after padding the
    name to its column, so that row ran 8 columns past the others and past 80."""
    from engine.runs_list import NAME_W, collect, format_table

    make_run(tmp_path / "plain", state="done", steps_done=40, max_steps=40)
    make_run(tmp_path / "a\x1b]0;TITLE\x07b", state="done", steps_done=40, max_steps=40)
    lines = format_table(collect(tmp_path))
    assert len(lines) == 3 and not any("\x1b" in line or "\x07" in line for line in lines), lines
    assert all(len(line) <= 80 and line[NAME_W + 1:].startswith("done ") for line in lines[1:]), lines
    assert any(line.startswith("a\\x1b]0;TITLE\\x07b ") for line in lines), lines


@pytest.mark.parametrize("loss, shown", [(1.23e-06, "1.2e-06"), (0.0001234, "1.2e-04"), (0.001234, "0.00123"),
                                         (12345.0, "1.2e+04"), (-1.23e-06, "-1e-06"), (1.234, "1.234")])
def test_a_row_with_losses_of_any_size_keeps_to_80_columns(loss, shown):
    """A loss below 0.01 or from 10000 is 8 or 9 characters as loss_text writes it (0.0001230, 1.000e-06) in the
    7-column loss and eval columns: with both that small, the row ran past 80 columns. Shortened to fit."""
    from engine.runs_list import Row, format_table

    row = Row("k", "x" * 40, "training", "123456/1234567", loss, loss, 9e6)
    lines = format_table([row])
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert lines[1].split()[-3:-1] == [shown, shown], lines[1]


def _strict(text: str):
    """JSON as jq, JavaScript or Go read it: NaN and Infinity are not JSON."""
    def refuse(word: str):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def test_json_for_scripts_is_json_a_strict_parser_reads_when_a_loss_diverged(tmp_path):
    """A run whose loss went NaN (an eval loss to Infinity): `runs --json` and `diagnose --json` printed the bare
    words NaN and Infinity, which jq refuses, for the one run a script most wants to see. Written null instead."""
    run = tmp_path / "diverged"
    make_run(run, state="stopped", steps_done=10, max_steps=40)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "step": 11, "time": 1, "loss": NaN}\n'
                '{"kind": "eval", "step": 11, "time": 1, "eval_loss": Infinity}\n')
    r = run_cli("runs", "--root", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    listed = _strict(r.stdout)
    assert (listed[0]["loss"], listed[0]["eval_loss"]) == (None, None)
    r = run_cli("diagnose", str(run), "--json")
    assert r.returncode in (0, 1), r.stderr
    _strict(r.stdout)


def test_runs_shows_the_loss_the_monitor_reads_past_lines_that_are_not_records(tmp_path, capsys):
    """`lorapilot runs` read the end of metrics.jsonl by its own rule: a last line with a loss that is no number (a
    file edited, or written by another program) ended it in a traceback, and one with no step (which the monitor
    skips, as every reader does) gave its loss. Lines the monitor skips are skipped; the loss is the monitor's."""
    from engine.cli import main
    from engine.rundir import read_metrics

    lines = {"demo-1": '{"kind": "train", "step": 41, "time": 1, "loss": "0.5"}',
             "demo-2": '{"kind": "train", "loss": 7.25}'}
    last = {}
    for name, line in lines.items():
        run = make_run(tmp_path / name, state="done", steps_done=40, max_steps=40)
        with open(run / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
        last[name] = [r["loss"] for r in read_metrics(run) if r["kind"] == "train" and isinstance(r["loss"], float)][-1]
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in lines:
        row = next(line for line in out.splitlines() if line.startswith(f"{name} "))
        assert loss_text(last[name]) in row, row   # as the monitor shows it (engine.rundir.loss_text)
    assert main(["runs", "--root", str(tmp_path), "--json"]) == 0
    assert {Path(r["run_dir"]).name: r["loss"] for r in json.loads(capsys.readouterr().out)} == last


def test_the_demo_command_suggested_names_the_demo_as_it_is_found_from_the_folder_it_is_typed_in(tmp_path, capsys,
                                                                                                   monkeypatch):
    """`lorapilot runs` with no runs said 'start one: lorapilot train presets/demo.yaml' in any folder; outside
    lorapilot's own that answered 'config file not found'. Elsewhere it names the demo by its full path now; `train`
    and `sweep` without a config suggest the same."""
    import shlex

    from engine.cli import main
    from engine.settings import PRESETS_DIR

    for folder, named in ((tmp_path, str(PRESETS_DIR / "demo.yaml")), (PRESETS_DIR.parent, "presets/demo.yaml")):
        monkeypatch.chdir(folder)
        assert main(["runs", "--root", str(tmp_path)]) == 0
        said = " ".join(capsys.readouterr().out.split())
        command = said.split("start one: ", 1)[1]
        assert shlex.split(command)[:2] == ["lorapilot", "train"] and shlex.split(command)[2] == named, said
        assert Path(named).is_file()   # from the folder it is typed in
        for verb in ("train", "sweep"):
            assert main([verb]) == 2
            assert f"try: lorapilot {verb} {named}" in " ".join(capsys.readouterr().err.split())
