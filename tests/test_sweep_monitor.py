"""The sweep monitor on fabricated sweep directories: trial lines, best, halving, the finished table and
winner, Enter into a trial, growing data, stop and apply."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from engine.config import load_config
from engine.sweep.sweepdir import SWEEP_STOP_FILE, read_sweep, write_sweep
from tui.app import LorapilotApp
from tui.header_path import header_path
from tui.screens.monitor import MonitorScreen
from tui.screens.sweep_monitor import SweepMonitorScreen
from tui.widgets.sweep_trials import SweepTrials

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from sweep_fakerun import advance, make_sweep  # noqa: E402


class SweepApp(LorapilotApp):
    """The real app, its sweep monitor polling fast so the test does not wait."""

    def open_monitor(self, run_dir):
        self.push_screen(SweepMonitorScreen(str(run_dir), poll_s=0.1))


async def until(pilot, cond, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    assert cond()


def row(app, trial_id: str) -> list[str]:
    table = app.screen.query_one(SweepTrials)
    return [str(c) for c in table.get_row(trial_id)]


def column(app, name: str) -> int:
    table = app.screen.query_one(SweepTrials)
    return [str(c.label) for c in table.ordered_columns].index(name)


def footer_descriptions(app) -> list[str]:
    from textual.widgets._footer import FooterKey
    return [k.description for k in app.screen.query(FooterKey)]


def screen_text(app) -> str:
    from textual.widgets import Static
    return "\n".join(str(s.render()) for s in app.screen.query(Static))


async def test_running_sweep_lists_trials_best_and_halving(tmp_path):
    sweep_dir = make_sweep(tmp_path, state="running")
    app = SweepApp(start="monitor", run_dir=str(sweep_dir))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen) and app.screen.summary)
        training = row(app, "lr2e-4_r8")
        assert training[column(app, "state")] == "training" and training[column(app, "step")] == "30/60"
        assert training[0].startswith("★")  # the best so far
        assert training[column(app, "eval")] == "1.428"
        halved = row(app, "lr5e-5_r8")
        assert halved[column(app, "state")] == "stopped" and halved[column(app, "stopped by")] == "halving"
        assert not halved[0].startswith("★")
        assert row(app, "lr1e-3_r32")[column(app, "state")] == "pending"
        assert "running" in screen_text(app) and "best so far" in screen_text(app)
        assert "~3m20s left" in screen_text(app)   # five pending trials of 40 s (the plan's time)
        assert not app.screen.query_one("#sweep-result").display
        assert app.screen.check_action("apply", ()) is False  # no winner yet: `a` is not offered

        # The trainer logs more steps: the line follows.
        advance(sweep_dir, "lr2e-4_r8", 10)
        await until(pilot, lambda: row(app, "lr2e-4_r8")[column(app, "step")] == "40/60")
        assert row(app, "lr2e-4_r8")[column(app, "eval")] != "1.428"

        # Enter opens the trial's own monitor; Escape comes back.
        app.screen.query_one(SweepTrials).move_cursor(row=3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
        assert Path(app.screen.run_dir).name == "lr2e-4_r8"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen))

        # x asks first; y writes the stop request the driver watches for.
        await pilot.press("x")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmStop")
        await pilot.press("y")
        await until(pilot, lambda: (sweep_dir / SWEEP_STOP_FILE).exists())

        # The driver finishes: the table, heatmap and winner replace the live lines.
        done = read_sweep(make_sweep(tmp_path / "later", state="done"))
        done.update(sweep_dir=str(sweep_dir), driver_pid=None)
        for t in done["trials"]:
            t.pop("run_dir", None)
        write_sweep(sweep_dir, done)
        await until(pilot, lambda: app.screen.query_one("#sweep-result").display)
        assert "done" in screen_text(app)
        # Ended while watched: the Stop key goes, as on the run monitor.
        assert "x" not in app.screen.active_bindings
        await until(pilot, lambda: "Stop sweep…" not in footer_descriptions(app))


async def test_finished_sweep_shows_table_heatmap_winner_and_applies(tmp_path, monkeypatch):
    sweep_dir = make_sweep(tmp_path, state="done")
    monkeypatch.chdir(tmp_path)
    app = SweepApp(start="monitor", run_dir=str(sweep_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen) and app.screen.summary)
        await pilot.pause()
        winner = row(app, "lr2e-4_r32")
        assert winner[0].startswith("★") and winner[column(app, "eval")] == "1.182"
        assert winner[column(app, "verdict")] == "underfit" and winner[column(app, "tok/s")] == "2,018"
        assert row(app, "lr1e-3_r32")[column(app, "outcome")] == "nan_loss"
        assert row(app, "lr5e-5_r16")[column(app, "outcome")] == "halving"
        # The train column is a mean of the last logged losses (the runs list shows the last one): it says so,
        # and the table still fits 80 columns.
        table = app.screen.query_one(SweepTrials)
        assert winner[column(app, "train avg")] == "1.143"
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert app.screen.query_one("#sweep-result").display
        text = screen_text(app)
        assert "Winner" in text and "lr 2e-4 · r 32 (alpha 64)" in text
        assert "The best r, 32, was the largest tried" in text and "--r 32,64,128" in text   # the grid's edge
        assert "--apply best.yaml" in text and "lorapilot train best.yaml" in text
        assert "Eval loss, lr x r" in screen_text_rich(app)

        # A finished sweep: nothing to stop, so no `x Stop sweep…` in the footer, and x does nothing.
        assert "x" not in app.screen.active_bindings
        await until(pilot, lambda: "Stop sweep…" not in footer_descriptions(app) and footer_descriptions(app))
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, SweepMonitorScreen) and not (sweep_dir / SWEEP_STOP_FILE).exists()

        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "ApplyWinner")
        await pilot.press("enter")  # the default path
        await until(pilot, lambda: (tmp_path / "best.yaml").exists())
    cfg = load_config(tmp_path / "best.yaml")
    assert (cfg.training.learning_rate, cfg.lora.r, cfg.lora.alpha) == (2e-4, 32, 64)


async def test_write_winner_over_an_existing_file_asks_before_replacing_it(tmp_path, monkeypatch):
    sweep_dir = make_sweep(tmp_path, state="done")
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "best.yaml"
    mine.write_text("# my own config\n")
    app = SweepApp(start="monitor", run_dir=str(sweep_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen) and app.screen.summary)
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "ApplyWinner")
        await pilot.pause()
        assert "best.yaml exists" in str(app.screen.query_one("#apply-exists").render())
        (tmp_path / "[bold]best[v2].yaml").write_text("# mine too\n")  # a path is text, never markup
        app.screen.query_one("#apply-path").value = "[bold]best[v2].yaml"
        await pilot.pause()
        assert "[bold]best[v2].yaml exists" in str(app.screen.query_one("#apply-exists").render())
        app.screen.query_one("#apply-path").value = "best.yaml"
        await pilot.pause()
        await pilot.press("enter")  # Enter in the field: not yet a yes
        await pilot.pause()
        assert type(app.screen).__name__ == "ApplyWinner" and mine.read_text() == "# my own config\n"
        assert str(app.screen.focused.label) == "Replace"
        await pilot.press("enter")  # the Replace button
        await until(pilot, lambda: mine.read_text().startswith("# From sweep"))
    cfg = load_config(mine)
    assert (cfg.training.learning_rate, cfg.lora.r, cfg.lora.alpha) == (2e-4, 32, 64)


def screen_text_rich(app) -> str:
    from rich.console import Console
    console = Console(width=120, record=True, file=open(os.devnull, "w"))
    console.print(app.screen.query_one("#sweep-heatmap").content)
    return console.export_text()


def test_sweep_dir_opens_the_sweep_monitor(tmp_path):
    sweep_dir = make_sweep(tmp_path, state="done")

    async def run():
        app = LorapilotApp(start="monitor", run_dir=str(sweep_dir))
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            return type(app.screen)

    assert asyncio.run(run()) is SweepMonitorScreen


async def test_header_names_the_sweep_folder_in_full_once(tmp_path):
    """'sweep-qwen-alpaca — sweep' said 'sweep' twice and not where the sweep is: now as the runs list."""
    sweep_dir = make_sweep(tmp_path, state="done")
    app = SweepApp(start="monitor", run_dir=str(sweep_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen))
        assert (app.screen.title, app.screen.sub_title) == ("sweep", header_path(sweep_dir))


async def test_a_lost_sweep_says_how_to_go_on(tmp_path):
    """A sweep whose driver died (a pod preempted) read only `lost`: nothing said it could be resumed."""
    sweep_dir = make_sweep(tmp_path, state="running", pid=2 ** 22 + 4321)   # its driver is gone
    app = SweepApp(start="monitor", run_dir=str(sweep_dir))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen) and app.screen.summary)
        await pilot.pause()
        text = screen_text(app)
        assert app.screen.summary["state"] == "lost"
        assert "its driver is gone; to go on: lorapilot sweep --resume" in text and str(sweep_dir.name) in text


def test_the_winner_panels_next_command_keeps_each_argument_on_a_line_of_its_own(tmp_path, monkeypatch):
    """At 80 columns the panel is 39 wide: `lorapilot sweep /tmp/n24/runs/sweep-demo-20261206-121313 \\` wrapped into
    "lorapilot sweep" / the folder / "\\", and copied from the terminal ran `lorapilot sweep` alone. The folder the
    app's launch names in full is named from the working directory, on a line of its own."""
    from engine.sweep import summarize_sweep
    from tui.widgets.sweep_result import winner_text

    sweep_dir = make_sweep(tmp_path)
    monkeypatch.chdir(tmp_path)
    text = winner_text(summarize_sweep(sweep_dir), str(sweep_dir.resolve())).plain
    relative = sweep_dir.resolve().relative_to(tmp_path.resolve())
    assert f"\n  lorapilot sweep \\\n    {relative} \\\n    --apply best.yaml\n" in text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert f"\n    {sweep_dir.resolve()} \\\n" in winner_text(summarize_sweep(sweep_dir), str(sweep_dir.resolve())).plain


def test_the_winner_panel_says_what_the_cli_says_of_a_winner_trained_on_more_gpus(tmp_path):
    """A sweep on 4 GPUs ran each trial on one; the winner's config, trained alone there, runs data parallel on all
    4 (4x the examples a step, where the best lr may differ). `--apply` said so, the monitor's winner panel did not:
    one list of notes (engine.sweep.report.winner_notes), both surfaces."""
    from engine.sweep import summarize_sweep
    from engine.sweep.report import applied_text, batch_notes
    from tui.widgets.sweep_result import winner_text

    sweep_dir = make_sweep(tmp_path)
    assert "GPU" not in winner_text(summarize_sweep(sweep_dir), str(sweep_dir)).plain   # one GPU: nothing to say
    sweep = read_sweep(sweep_dir)
    sweep["devices"] = ["0", "1", "2", "3"]
    write_sweep(sweep_dir, sweep)
    (note,) = batch_notes(sweep)
    assert "on the sweep machine's 4 GPUs this config trains 4 x 16 = 64 a step" in note
    assert f"\n{note[0].upper()}{note[1:]}." in winner_text(summarize_sweep(sweep_dir), str(sweep_dir)).plain
    assert f"  note: {note}" in applied_text(sweep, tmp_path / "best.yaml")
