"""The run's time and what it ran, as the monitor and the export's model card say them, read from the run
directory: elapsed counts from the launch (the start-up included, as the estimate's time does), never jumps back
when the first record lands; the card names the optimizer the trainer ran, not only the one the config asked for."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import fake_adapter

from engine.export.card import training_table
from engine.export.facts import run_facts
from engine.run_clock import RunClock
from tui.models.run_history import RunHistory

LAUNCHED = 1_000_000.0
PLAN = {"device": "cpu", "optimizer": "adamw_torch", "max_steps": 4}


def _finished_run(run_dir: Path, status: dict | None) -> Path:
    """A run directory as a finished CPU run leaves it: its first record 9 s after the launch (model and data
    loading), its last 20 s later."""
    fake_adapter(run_dir / "adapter", "{}")
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
    # Launched again (a resume) after its last record: the first life's span, then the new one from its launch.
    h.status = {"state": "loading", "launched": LAUNCHED + 500}
    assert h.elapsed_s(now=LAUNCHED + 510) == 0.0 + 10.0


def test_the_clock_reads_what_is_there():
    clock = RunClock()
    assert clock.elapsed(None, live=False) is None
    clock.add({"kind": "train", "step": 1, "time": 5.0})
    assert clock.elapsed({"launched": "soon"}, live=True, now=7.0) == 2.0
    assert RunClock().elapsed({"launched": 3.0}, live=True, now=4.0) == 1.0
    assert RunClock().elapsed({"launched": float("nan")}, live=True, now=4.0) is None


# Two lives: launched, loaded for 9 s, trained to +100 and stopped; resumed 10 hours later (+36,100), loaded for
# 9 s, trained to +36,200 and finished. 100 s + 100 s trained; the night between is no training.
NIGHT = 36_000.0
TWO_LIVES = [{"kind": "train", "step": 1, "time": LAUNCHED + 9, "loss": 2.5},
             {"kind": "event", "step": 5, "time": LAUNCHED + 100, "code": "stopped", "message": "stopped"},
             {"kind": "event", "step": 5, "time": LAUNCHED + NIGHT + 109, "code": "resumed", "message": "resumed",
              "launched": LAUNCHED + NIGHT + 100},
             {"kind": "train", "step": 10, "time": LAUNCHED + NIGHT + 200, "loss": 2.0}]


def test_elapsed_sums_the_lives_of_a_stopped_and_resumed_run_without_the_night_between():
    h = RunHistory(run_dir="r")
    h.apply_records(TWO_LIVES[:2])
    h.status, h.state = {"state": "stopped", "launched": LAUNCHED}, "stopped"
    assert h.elapsed_s(now=LAUNCHED + NIGHT) == 100.0                  # stopped: its time stands still
    relaunched = {"launched": LAUNCHED + NIGHT + 100, "first_launched": LAUNCHED}
    h.status, h.state = {"state": "loading"} | relaunched, "loading"
    assert h.elapsed_s(now=LAUNCHED + NIGHT + 104) == 104.0            # resumed: counting on from 100 s
    h.apply_records(TWO_LIVES[2:])
    h.status, h.state = {"state": "training"} | relaunched, "training"
    assert h.elapsed_s(now=LAUNCHED + NIGHT + 250) == 250.0
    h.status, h.state = {"state": "done"} | relaunched, "done"
    assert h.elapsed_s(now=LAUNCHED + NIGHT + 9999) == 200.0
    # A run resumed before the trainer kept its launches: each life counts from its first record.
    old = RunHistory(run_dir="r")
    old.apply_records([{k: v for k, v in r.items() if k != "launched"} for r in TWO_LIVES])
    old.status, old.state = {"state": "done", "launched": LAUNCHED + NIGHT + 100}, "done"
    assert old.elapsed_s() == 91.0 + 100.0


def test_the_model_card_of_a_resumed_run_says_the_time_it_trained(tmp_path):
    run = _finished_run(tmp_path / "run", {"state": "done", "step": 10, "max_steps": 10, "plan": PLAN,
                                           "launched": LAUNCHED + NIGHT + 100, "first_launched": LAUNCHED})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TWO_LIVES))
    table = dict(training_table(run_facts(run, need_data=False)))
    assert table["Training time"] == "3 min 20 s"   # 100 s + 100 s, not 10 hours


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
