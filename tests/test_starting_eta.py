"""The monitor's ETA while a run starts (engine.eta.starting_eta): before its first train records no step time is
measured. It said `-` for the whole start-up (loading the model, tokenising the data, the compile: minutes of a rented
GPU); then the estimate's time counted down from the launch, as if training, while the model loaded or the layers
compiled. Now it says what is true: what the trainer is doing, an ETA after the first steps, and the estimate's time
of the whole run, as the estimate's; the measured ETA once two train records time a step."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from engine.eta import Starting, starting_eta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import hold_run_lock  # noqa: E402

LAUNCHED = round(time.time()) - 10.0   # elapsed reads the clock: a launch 10 s ago
ESTIMATE = {"time_s": 3600.0, "startup_s": 60.0, "compile_s": 70.0, "basis": "measured on H200"}


def status(**fields) -> dict:
    return {"state": "loading", "phase": "model", "launched": LAUNCHED, "estimate": ESTIMATE} | fields


def test_before_a_step_time_it_says_what_the_trainer_does_and_the_estimates_time_never_counted_down():
    assert starting_eta(status()) == Starting(3600.0, "loading the model")
    assert starting_eta(status(phase="data", estimate=None)) == Starting(None, "reading the data")
    assert starting_eta({"state": "starting"}).doing == "starting"
    assert starting_eta(None) == Starting(None, "")
    # broken values in status.json are no estimate
    for bad in ({"time_s": "soon"}, {"time_s": float("nan")}, {"time_s": -1}, "3600", [3600]):
        assert starting_eta(status(estimate=bad)).estimate_s is None
    # training, no train record yet: its first steps, the first compiling the layers where the plan compiles them
    assert starting_eta(status(state="training", phase=None)) == Starting(3600.0, "first steps")
    compiled = status(state="training", phase=None, plan={"compile_layers": True})
    assert starting_eta(compiled).doing == "first steps (compiling the layers)"
    # between the first train record and a measured step time: nothing more to say than the estimate
    assert starting_eta(compiled, trained=True) == Starting(3600.0, "")


def starting_run(run_dir: Path, **fields) -> Path:
    """A run directory as the trainer leaves it while loading its model: status.json, no train record yet."""
    from engine.rundir import process_start

    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("")
    (run_dir / "train.log").write_text("[lorapilot] hardware: NVIDIA H200 (cuda, 1 GPU); compute dtype bf16\n")
    (run_dir / "config.yaml").write_text("model: meta-llama/Llama-2-7b-hf\ndataset:\n  path: data/train.jsonl\n")
    fields = {"launched": time.time() - 10.0} | fields   # elapsed reads the clock: a launch 10 s before the test
    st = status(pid=os.getpid(), pid_start=process_start(os.getpid()), step=0, max_steps=1200, updated=LAUNCHED + 9,
                error=None, **fields)
    (run_dir / "status.json").write_text(json.dumps(st))
    return hold_run_lock(run_dir)


@pytest.mark.parametrize("fields,shown", [
    ({}, ("state loading the model", "ETA after first steps run estimated 1h00m checkpoint")),
    ({"phase": "data", "estimate": None}, ("state loading · reading the data", "ETA after first steps checkpoint")),
    ({"state": "training", "phase": None, "plan": {"compile_layers": True}},
     ("state training · first steps (compiling the layers)", "ETA after first steps run estimated 1h00m")),
])
async def test_the_monitor_shows_it_while_the_run_starts(fields, shown, tmp_path, monkeypatch):
    import tui.widgets.progress_panel as panel
    from test_monitor_screen import loaded, monitor, text_of, until
    from tui.app import LorapilotApp

    monkeypatch.setattr(panel, "wall_clock", lambda: LAUNCHED + 10)
    run = starting_run(tmp_path / "starting", **fields)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        await until(pilot, lambda: "ETA" in text_of(monitor(app).query_one("#progress")))
        progress = " ".join(text_of(monitor(app).query_one("#progress")).split())
        assert all(words in progress for words in shown), progress
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:   # the panel beside the chart: the estimate left out, not cut
        await until(pilot, lambda: loaded(app))
        await until(pilot, lambda: "ETA" in text_of(monitor(app).query_one("#progress")))
        progress = " ".join(text_of(monitor(app).query_one("#progress")).split())
        assert "ETA after first steps checkpoint" in progress, progress


async def test_a_long_start_in_the_narrow_panel_puts_the_eta_on_its_own_row(tmp_path, monkeypatch):
    """A model downloading for a quarter of an hour: "elapsed 16m40s" and the ETA's words do not fit the 40 columns
    beside the chart, and the ETA was cut ("after first ste…"): it gets a row of its own."""
    import tui.widgets.progress_panel as panel
    from test_monitor_screen import loaded, monitor, text_of, until
    from tui.app import LorapilotApp

    monkeypatch.setattr(panel, "wall_clock", lambda: LAUNCHED + 10)
    run = starting_run(tmp_path / "starting", launched=time.time() - 1000)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        await until(pilot, lambda: "ETA" in text_of(monitor(app).query_one("#progress")))
        lines = text_of(monitor(app).query_one("#progress")).splitlines()
        assert any(line.split() == ["ETA", "after", "first", "steps"] for line in lines), lines
        assert any(line.split()[0] == "elapsed" and line.split()[1].startswith("16m") for line in lines), lines
