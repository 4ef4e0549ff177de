"""The run's time and what it ran, as the monitor and the export's model card say them, read from the run
directory: elapsed counts from the launch (the start-up included, as the estimate's time does), never jumps back
when the first record lands; the card names the optimizer the trainer ran, not only the one the config asked for."""

from __future__ import annotations

import json
from pathlib import Path

from engine.export.card import training_table
from engine.export.facts import run_facts
from engine.rundir import run_started
from tui.models.run_history import RunHistory

LAUNCHED = 1_000_000.0
PLAN = {"device": "cpu", "optimizer": "adamw_torch", "max_steps": 4}


def _finished_run(run_dir: Path, status: dict | None) -> Path:
    """A run directory as a finished CPU run leaves it: its first record 9 s after the launch (model and data
    loading), its last 20 s later."""
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "config.yaml").write_text("model: org/base-model\ndataset:\n  path: data/train.jsonl\n")
    records = [{"kind": "finding", "step": 0, "time": LAUNCHED + 9, "code": "loss_chart_sparse",
                "severity": "info", "message": "m"},
               {"kind": "train", "step": 4, "time": LAUNCHED + 29, "loss": 2.5}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def test_elapsed_counts_from_the_launch_and_never_jumps_back_when_the_first_record_lands():
    h = RunHistory(run_dir="r")
    h.status, h.state = {"state": "loading", "launched": LAUNCHED}, "loading"
    before = h.elapsed_s(now=LAUNCHED + 8)
    h.apply_records([{"kind": "finding", "step": 0, "time": LAUNCHED + 9, "code": "c", "message": "m"}])
    h.status, h.state = {"state": "training", "launched": LAUNCHED}, "training"
    assert (before, h.elapsed_s(now=LAUNCHED + 10)) == (8.0, 10.0)   # was 8 s, then 1 s
    # A resumed run is launched again: its time began with its first life (the metrics' first record).
    h.status = {"state": "training", "launched": LAUNCHED + 500}
    assert h.elapsed_s(now=LAUNCHED + 510) == 501.0


def test_run_started_reads_what_is_there():
    assert run_started(None, None) is None
    assert run_started({"launched": "soon"}, 5.0) == 5.0
    assert run_started({"launched": 3.0}, None) == 3.0
    assert run_started({"launched": float("nan")}, None) is None


def test_the_model_card_names_the_optimizer_that_ran_and_the_time_from_the_launch(tmp_path):
    run = _finished_run(tmp_path / "run", {"state": "done", "step": 4, "max_steps": 4, "launched": LAUNCHED,
                                           "plan": PLAN})
    table = dict(training_table(run_facts(run, need_data=False)))
    assert table["Learning rate"].endswith(
        "optimizer adamw_torch (config.yaml asks paged_adamw_32bit; train.log says why)")
    assert table["Training time"] == "0 min 29 s"          # launch to last record; the records alone cover 20 s


def test_without_status_json_the_card_says_the_configs_optimizer_and_the_records_time(tmp_path):
    table = dict(training_table(run_facts(_finished_run(tmp_path / "run", None), need_data=False)))
    assert table["Learning rate"].endswith("optimizer paged_adamw_32bit")
    assert table["Training time"] == "0 min 20 s"
