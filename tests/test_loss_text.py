"""One loss reads the same in every view of a run (engine.rundir.loss_text): the monitor's progress panel and chart,
the app's runs list, `lorapilot runs`, train.log and `lorapilot train`. A loss of 1.2 read 1.2 in the monitor and
1.2000 in `lorapilot runs` and train.log; 0.0123 read 0.0123 there but 0.01230 nowhere, and a loss near zero read
0.0000 in the CLI."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import records  # noqa: E402

from engine.rundir import format_record, loss_text  # noqa: E402


def test_four_significant_digits_their_zeros_kept():
    assert [loss_text(v) for v in (1.2, 1.23456, 0.5, 0.0123, 12.3456, 1234.5, 0.0)] == \
        ["1.200", "1.235", "0.5000", "0.01230", "12.35", "1234", "0.000"]
    assert loss_text(2.4e-6) == "2.400e-06"                       # memorised: not 0.0000
    assert [loss_text(v) for v in (None, float("nan"), float("inf"), "1.2")] == ["-", "nan", "nan", "-"]
    assert format_record({"kind": "train", "step": 10, "loss": 1.2}) == "step    10  loss 1.200"
    assert format_record({"kind": "eval", "step": 10, "eval_loss": 0.0123}) == "step    10  eval_loss 0.01230"


async def test_the_monitor_the_runs_lists_and_the_log_say_one_loss_alike(tmp_path, capsys):
    from test_monitor_screen import loaded, monitor, text_of, until

    from engine.cli import main
    from tui.app import LorapilotApp
    from tui.screens.runs import RunsScreen

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    recs = list(records(1, 100, 100, t0=time.time() - 300))
    last_train = max(i for i, r in enumerate(recs) if r["kind"] == "train")
    last_eval = max(i for i, r in enumerate(recs) if r["kind"] == "eval")
    recs[last_train]["loss"], recs[last_eval]["eval_loss"] = 1.2, 0.5
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "status.json").write_text(json.dumps({"state": "done", "step": 100, "max_steps": 100}))

    assert main(["runs", "--root", str(tmp_path / "runs")]) == 0
    assert "1.200  0.5000" in capsys.readouterr().out
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        progress = " ".join(text_of(monitor(app).query_one("#progress")).split())
        assert "loss 1.200 eval 0.5000" in progress, progress
        assert "last train 1.200 · eval 0.5000" in str(monitor(app).query_one("#loss").border_subtitle)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one("DataTable").row_count)
        table = app.screen.query_one("DataTable")
        assert [str(c) for c in table.get_row_at(0)][3:5] == ["1.200", "0.5000"], table.get_row_at(0)
