"""train.log's own lines: a record of several lines (a finding's evidence and fix, an error's problems) keeps its
continuation lines aligned under the first one's text, as `less train.log` and the monitor's log pane show them."""

from __future__ import annotations

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
