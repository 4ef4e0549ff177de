"""The diagnostics verbs: diagnose (text and --json), prepare and inspect-data."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.diagnose import command
from engine.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def parse(add_arguments, argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def write_metrics(run_dir: Path) -> None:
    """A run that explodes to NaN at step 60, and a finding recorded by the trainer that metrics cannot show."""
    run_dir.mkdir(parents=True)
    lines = [{"kind": "train", "step": s, "time": 1000.0 + s, "loss": 2.0 - s / 100, "grad_norm": 0.4}
             for s in range(10, 60, 10)]
    lines += [{"kind": "train", "step": 60, "time": 1060.0, "loss": math.nan, "grad_norm": math.inf},
              {"kind": "finding", "step": 60, "time": 1060.0, "code": "nan_loss", "severity": "error",
               "message": "recorded live", "evidence": "", "fix": ""},
              {"kind": "finding", "step": 30, "time": 1030.0, "code": "copies_training_data", "severity": "warning",
               "message": "copied", "evidence": "e", "fix": "f"}]
    text = "\n".join(json.dumps(r) for r in lines) + "\n" + '{"kind": "train", "st'  # half-written last line
    (run_dir / "metrics.jsonl").write_text(text, encoding="utf-8")


def test_diagnose_json_on_a_dir_with_only_metrics(tmp_path):
    write_metrics(tmp_path / "run")
    code = ("import sys, argparse; from engine.diagnose.command import run_diagnose, add_diagnose_arguments; "
            "p = argparse.ArgumentParser(); add_diagnose_arguments(p); "
            "sys.exit(run_diagnose(p.parse_args(sys.argv[1:])))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    findings = json.loads(out.stdout)
    assert [(f["code"], f["step"]) for f in findings] == [("nan_loss", 60), ("copies_training_data", 30)]
    assert set(findings[0]) == {"kind", "step", "time", "code", "severity", "message", "evidence", "fix",
                                "count", "first_step", "last_step"}  # each finding once, with how often
    assert findings[0]["severity"] == "error" and findings[0]["message"] != "recorded live"  # recomputed, once


def test_diagnose_prints_findings_for_a_person(tmp_path, capsys):
    write_metrics(tmp_path / "run")
    assert command.run_diagnose(parse(command.add_diagnose_arguments, [str(tmp_path / "run")])) == 0
    out = capsys.readouterr().out
    assert out.index("Loss is NaN") < out.index("Copies training data")  # newest first
    assert "fix:" in out and "evidence:" in out


def test_diagnose_healthy_run_says_so(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(
        "".join(json.dumps({"kind": "train", "step": s, "loss": 2 / (1 + s / 50)}) + "\n" for s in range(1, 30)))
    assert command.run_diagnose(parse(command.add_diagnose_arguments, [str(tmp_path / "run")])) == 0
    assert "No problems found in 29 records, last step 29" in capsys.readouterr().out


def test_diagnose_missing_dir_or_metrics_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        command.run_diagnose(parse(command.add_diagnose_arguments, [str(tmp_path / "nowhere")]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="metrics.jsonl"):
        command.run_diagnose(parse(command.add_diagnose_arguments, [str(tmp_path / "empty")]))


def test_prepare_verb(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("q,a\nhi,hello\nhi,hello\nyo,as an AI language model I refuse\n")
    args = parse(command.add_prepare_arguments, [str(tmp_path / "a.csv"), "--out", str(tmp_path / "o.jsonl"),
                                                 "--instruction-column", "q", "--output-column", "a",
                                                 "--filter-slop"])
    assert command.run_prepare(args) == 0
    out = capsys.readouterr().out
    assert "dropped 1 (duplicate)" in out and "dropped 1 (slop phrase)" in out and "wrote 1 records" in out
    assert json.loads((tmp_path / "o.jsonl").read_text()) == {"instruction": "hi", "output": "hello"}


@pytest.mark.parametrize("name", ["a_dataset_folder_whose_name_is_long_enough/to_pass_the_end_of_the_line/"
                                  "train_set.jsonl", "[old]/train.jsonl"], ids=["long path", "brackets"])
def test_inspect_data_shows_the_file_it_read_whole(tmp_path, monkeypatch, capsys, name):
    """The report's file line was a table cell: rich cut a long path with "…" (and read "[old]" as markup, leaving
    /tmp//train.jsonl): the user could not see which file was read."""
    import engine.data
    from engine.data.types import DataReport

    path = str(tmp_path / name)
    monkeypatch.setattr(engine.data, "inspect_config", lambda cfg, *, model=None: (
        DataReport(path=str(cfg.dataset.path), format="alpaca", n_rows=1, dropped={"empty response": 1}), []))
    assert command.run_inspect(parse(command.add_inspect_arguments, [path])) == 2
    out = capsys.readouterr().out
    assert path in "\n".join(out.splitlines()[:2]), out
    assert "…" not in out


def test_inspect_data_shows_the_model_and_notes_it_names_as_typed(tmp_path, monkeypatch, capsys):
    """A tokenizer path or a note's path with a folder named like rich markup ([old]) lost that folder."""
    import engine.data
    from engine.data.types import DataReport

    def fake_inspect(cfg, *, model=None):
        return DataReport(path=str(cfg.dataset.path), format="alpaca", n_rows=1, dropped={"empty response": 1},
                          notes=["validation from v/[old]/val.jsonl (1 rows)"]), []

    monkeypatch.setattr(engine.data, "inspect_config", fake_inspect)
    assert command.run_inspect(parse(command.add_inspect_arguments, ["d.jsonl", "--model", "m/[old]/tok"])) == 2
    out = capsys.readouterr().out
    assert "m/[old]/tok" in out and "v/[old]/val.jsonl" in out, out


def test_inspect_data_report_lines_carry_no_trailing_spaces(tmp_path, monkeypatch, capsys):
    """rich pads a table's rows to the width: the report copied from the terminal carried a tail of spaces."""
    import engine.data
    from engine.data.types import DataReport

    monkeypatch.setattr(engine.data, "inspect_config", lambda cfg, *, model=None: (
        DataReport(path=str(cfg.dataset.path), format="alpaca", n_rows=1, dropped={"empty response": 1}), []))
    command.run_inspect(parse(command.add_inspect_arguments, ["d.jsonl"]))
    lines = capsys.readouterr().out.splitlines()
    assert any(line.strip().startswith("format") for line in lines), lines
    assert [line for line in lines if line != line.rstrip()] == []


def test_inspect_data_runs_the_doctor_on_what_the_data_layer_returns(tmp_path, monkeypatch, capsys):
    import engine.data
    from engine.data.types import DataReport

    seen = {}

    def fake_inspect(cfg, *, model=None):
        seen.update(path=cfg.dataset.path, model=model, max_seq_length=cfg.training.max_seq_length,
                    fmt=cfg.dataset.format, train_on=cfg.dataset.train_on)
        return DataReport(path=str(cfg.dataset.path), format="alpaca", n_rows=4, dropped={"empty response": 4}), []

    monkeypatch.setattr(engine.data, "inspect_config", fake_inspect)
    args = parse(command.add_inspect_arguments, ["d.jsonl", "--model", "m", "--max-seq-length", "256", "--json",
                                                 "--train-on", "all"])
    assert command.run_inspect(args) == 2  # nothing to train: bad input
    assert seen == {"path": "d.jsonl", "model": "m", "max_seq_length": 256, "fmt": "auto", "train_on": "all"}
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"]["n_rows"] == 4
    assert [f["code"] for f in printed["findings"]] == ["no_target_tokens"]


@pytest.mark.parametrize("num_gpus,steps", [(None, 12), (2, 6)])
def test_inspect_data_with_a_config_counts_the_steps_of_the_plan_over_its_processes(tmp_path, monkeypatch, capsys,
                                                                                  num_gpus, steps):
    """`inspect-data --config` counted the settings checks' steps for one process where training.num_gpus 2 trains
    on two (half the steps): the checks now read the plan the estimate, the checklist and the trainer read."""
    import engine.data
    import engine.estimate
    from engine.data.types import DataReport, TokenizedExample
    from engine.estimate import get_gpu

    examples = [TokenizedExample(input_ids=[1] * 40, labels=[-100] * 20 + [1] * 20, source=f"d.jsonl:{i + 1}",
                                 full_length=40, trained_tokens=20, trained_tokens_full=20) for i in range(64)]
    monkeypatch.setattr(engine.data, "inspect_config", lambda cfg, *, model=None: (
        DataReport(path=str(cfg.dataset.path), format="alpaca", n_rows=64), examples))
    monkeypatch.setattr(engine.estimate, "detect_gpu", lambda: get_gpu("h100-80"))  # a GPU present
    config = tmp_path / "c.yaml"
    config.write_text("model: llama-2-7b\ndataset: {path: d.jsonl}\ntraining:\n  num_epochs: 3\n  save_steps: 100\n"
                      + (f"  num_gpus: {num_gpus}\n" if num_gpus else ""))
    command.run_inspect(parse(command.add_inspect_arguments, ["d.jsonl", "--config", str(config), "--json"]))
    findings = {f["code"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    # 64 examples, 16 a step on each process, 3 epochs
    assert findings["no_checkpoint"]["evidence"] == f"save every 100 steps; {steps} steps in all"


def test_diagnose_takes_an_integer_too_large_for_a_float_as_no_number(tmp_path, capsys):
    """A line edited by hand can hold an integer JSON allows and a float cannot (float() raises on it): no number,
    as a string would be, not a traceback (engine.rundir.json_number, every reader's rule)."""
    write_metrics(tmp_path / "run")
    with open(tmp_path / "run" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('\n{"kind": "train", "step": 70, "time": 1070.0, "loss": 1' + "0" * 400 + ', "grad_norm": 0.4}\n')
    assert command.run_diagnose(parse(command.add_diagnose_arguments, [str(tmp_path / "run")])) == 0
    assert "Loss is NaN" in capsys.readouterr().out
