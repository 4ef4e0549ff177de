"""train.log's own lines: a record of several lines (a finding's evidence and fix, an error's problems) keeps its
continuation lines aligned under the first one's text, as `less train.log` and the monitor's log pane show them."""

from __future__ import annotations

import pytest

from engine.diagnose.finding import Finding, finding_text
from engine.errors import ConfigError
from engine.train.run import log


def test_a_findings_evidence_and_fix_stand_under_its_severity(capsys):
    f = Finding(code="lr_high", severity="warning", step=None, message="the learning rate is high",
                evidence="lr 5e-3 for r 16", fix="training.learning_rate: 2e-4")
    log(finding_text(f, "pre-flight"))
    head, evidence, fix = capsys.readouterr().out.splitlines()
    assert head.startswith("[lorapilot] pre-flight  [warning] lr_high")
    column = head.index("[warning]")
    assert evidence.index("evidence:") == column and evidence[:column].isspace()
    assert fix.index("fix:") == column and fix[:column].isspace()


def test_an_errors_problems_and_fix_are_indented_under_its_text(capsys):
    log(f"error: {ConfigError('config.yaml: 1 problem', problems=['training.learning_rate: -1'], fix='set it')}")
    first, *rest = capsys.readouterr().out.splitlines()
    assert first == "[lorapilot] error: config.yaml: 1 problem"
    assert rest == [" " * len("[lorapilot] ") + "  - training.learning_rate: -1",
                    " " * len("[lorapilot] ") + "  fix: set it"]


def test_a_pre_flight_finding_replayed_from_metrics_is_named_pre_flight_not_step_0():
    """metrics.jsonl records the pre-flight findings at step 0; `lorapilot train` and diagnose printed "step 0"."""
    from engine.rundir import format_record

    rec = {"kind": "finding", "step": 0, "code": "few_target_tokens", "severity": "info", "message": "short",
           "evidence": "", "fix": ""}
    assert format_record(rec) == "pre-flight  [info] few_target_tokens: short"
    assert format_record({**rec, "step": 12, "code": "loss_flat"}).startswith("step    12  [info] loss_flat")


def test_train_log_says_step_ones_speed_is_being_measured_as_the_monitor_does(tmp_path, capsys):
    """A launch's first train record holds its warm-up (and compile): train.log printed its '35 tok/s' as the speed
    while the monitor said 'measuring'. The same rule (engine.rundir.LaunchStart) now decides both."""
    from engine.train import callback as cbmod

    cb = cbmod.RunDirCallback(tmp_path, collator=None, steps_per_epoch=10, stop_flag=None, stop_on=[])
    cb._write("train", 1, loss=2.0, tokens_per_s=35.0)
    cb._write("train", 2, loss=1.9, tokens_per_s=3686.4)
    lines = capsys.readouterr().out.splitlines()
    assert "tok/s measuring" in lines[0] and "35" not in lines[0], lines
    assert "3,686 tok/s" in lines[1], lines


def test_lorapilot_train_says_a_resumed_launchs_first_speed_is_being_measured(tmp_path):
    """The foreground `lorapilot train --resume` prints the run's records: the first after the `resumed` event is a
    new launch's warm-up, as the monitor counts it."""
    import io
    import subprocess

    from engine.rundir import RESUMED, MetricsWriter
    from engine.train.launch import RunHandle, follow

    w = MetricsWriter(tmp_path)
    w.write("train", 1, loss=2.0, tokens_per_s=35.0)
    w.write("train", 2, loss=1.9, tokens_per_s=3686.4)
    w.write("event", 2, code=RESUMED, message="resumed from checkpoint-2")
    w.write("train", 3, loss=1.8, tokens_per_s=41.0)
    proc = subprocess.Popen(["true"])
    proc.wait()
    out = io.StringIO()
    follow(RunHandle(tmp_path, proc.pid, proc), out=out, poll_s=0.01)
    trains = [line for line in out.getvalue().splitlines() if "loss" in line]
    assert ["measuring" in line for line in trains] == [True, False, True], trains


def _metrics(run_dir, *seen) -> None:
    """metrics.jsonl of train records at steps 10, 20, ... with these tokens_seen (KeyError: the key left out)."""
    import json

    run_dir.mkdir(exist_ok=True)
    recs = [{"kind": "train", "step": 10 * (i + 1), "time": 1.0, "loss": 2.0}
            | ({} if s is KeyError else {"tokens_seen": s}) for i, s in enumerate(seen)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))  # NaN as Python writes it


GARBLED_COUNTS = {"a string": "12k", "null": None, "NaN": float("nan"), "an infinity": float("inf"),
                  "too large for a float": 10 ** 400, "negative": -5, "true": True, "missing": KeyError}


@pytest.mark.parametrize("case", sorted(GARBLED_COUNTS))
def test_a_resume_with_no_readable_token_count_at_its_checkpoint_says_where_the_count_continues(tmp_path, capsys,
                                                                                                  case):
    """tokens_seen at the checkpoint's step garbled (a line edited by hand, another program): the resumed trainer
    died on int() of it, or took true for 1 token and a missing count for 0, silently. It continues from the last
    readable count and train.log says so."""
    from engine.train.run import _tokens_at

    _metrics(tmp_path, 1000, GARBLED_COUNTS[case])
    assert _tokens_at(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-20")) == 1000
    out = capsys.readouterr().out
    assert out.startswith("[lorapilot] ") and "tokens_seen" in out and "step 20" in out and "1,000 (step 10)" in out


def test_a_resume_with_no_readable_token_count_at_all_counts_from_0_and_says_so(tmp_path, capsys):
    from engine.train.run import _tokens_at

    _metrics(tmp_path, "x", None)
    assert _tokens_at(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-20")) == 0
    assert "from 0" in capsys.readouterr().out


def test_a_resume_continues_the_count_at_its_checkpoint_without_a_word(tmp_path, capsys):
    from engine.train.run import _tokens_at

    _metrics(tmp_path, 1000, 2000, 3000)
    assert _tokens_at(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-20")) == 2000
    assert _tokens_at(tmp_path, None) == 0
    assert capsys.readouterr().out == ""


def test_a_record_with_numbers_no_float_holds_is_still_a_line():
    """A line edited by hand can hold an integer JSON allows and no float does: train.log's replay of it (and
    `lorapilot train`'s output) ended in an OverflowError; true was printed as a learning rate of 1."""
    from engine.rundir import format_record

    huge = 10 ** 400
    rec = {"kind": "train", "step": 3, "loss": huge, "learning_rate": True, "grad_norm": huge, "tokens_per_s": huge}
    assert format_record(rec) == "step     3  loss nan"
    assert format_record({"kind": "eval", "step": 3, "eval_loss": huge}) == "step     3  eval_loss nan"


def test_lorapilot_train_wraps_a_findings_prose_at_words_for_80_columns(tmp_path):
    """The foreground `lorapilot train` printed each pre-flight finding as one long line: an 80-column terminal
    (tmux, SSH) cut it mid-word ('a cr' / 'ash or a stop', 'otherw' / 'ise'). Its lines are wrapped at words now,
    the continuations under the finding's text."""
    import io
    import subprocess

    from engine.rundir import MetricsWriter
    from engine.train.launch import RunHandle, follow

    MetricsWriter(tmp_path).write("finding", 0, code="no_checkpoint", severity="warning",
                                  message="No checkpoint is saved before the end: a crash or a stop loses the whole "
                                          "run.", evidence="save every 20 steps; 6 steps in all",
                                  fix="Set training.save_steps to 1.")
    proc = subprocess.Popen(["true"])
    proc.wait()
    out = io.StringIO()
    follow(RunHandle(tmp_path, proc.pid, proc), out=out, poll_s=0.01)
    lines = out.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines
    assert "a crash or a stop" in " ".join(" ".join(lines).split()), lines


def test_lorapilot_trains_words_on_ctrl_c_fit_80_columns():
    """'stopping: ... (Ctrl-C again to leave it running in the background)' was one line of 103 columns: the
    terminal cut it mid-word ('le' / 'ave')."""
    from engine.train.launch import STOPPING

    assert all(len(line) <= 80 for line in STOPPING.splitlines()), STOPPING
    assert " ".join(STOPPING.split()).endswith("(Ctrl-C again to leave it running in the background)")
