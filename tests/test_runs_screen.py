"""The runs list in the app: what `lorapilot runs` lists (sweeps included), within 80 columns."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_fakerun import make_run  # noqa: E402
from tui.header_path import header_path  # noqa: E402
from test_runs_cli import _sweep  # noqa: E402

from tui.app import LorapilotApp  # noqa: E402

pytestmark = pytest.mark.timeout(120)


async def listed(pilot, app) -> None:
    """Until the runs screen has read the root (it reads in a worker)."""
    for _ in range(100):
        await pilot.pause(0.05)
        if app.screen.runs:
            break


async def test_runs_screen_fits_80_columns_and_opens_a_sweep(tmp_path):
    make_run(tmp_path / "my-long-experiment-name-on-llama-3.1-8b-20261203-101500", state="done", steps_done=1200,
             max_steps=1200, now=time.time() - 60)
    _sweep(tmp_path, "sweep-demo-20261203-102000")
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await listed(pilot, app)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 4  # the run, the sweep and its two trials
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80
        names = [r.name for r in app.screen.runs]
        assert names[0] == "sweep-demo-20261203-102000" and names[1].startswith("  · ")
        await pilot.press("enter")   # the sweep, the newest: its own monitor
        for _ in range(100):
            await pilot.pause(0.05)
            if type(app.screen).__name__ == "SweepMonitorScreen":
                break
        assert type(app.screen).__name__ == "SweepMonitorScreen"


@pytest.mark.parametrize("start", ["monitor", "playground"])
async def test_a_screen_that_opens_a_run_with_none_named_opens_the_runs_list(tmp_path, start):
    # mypy found it: start="playground" without a run_dir pushed PlaygroundScreen("None"), a run named "None".
    from tui.screens.runs import RunsScreen

    app = LorapilotApp(start=start, run_dir=None, runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert app.screen.root == tmp_path


async def test_a_run_with_a_corrupt_status_json_is_named_not_silently_left_out(tmp_path):
    # `lorapilot runs` warns that it skipped it; the list in the app said nothing and the run just vanished.
    make_run(tmp_path / "good-20261203-101500", state="done", steps_done=40, max_steps=40, now=time.time() - 60)
    broken = tmp_path / "broken-20261203-101600"
    make_run(broken, state="done", steps_done=40, max_steps=40, now=time.time() - 60)
    (broken / "status.json").write_text('{\n "state": "done",\n "step": 40,\n "max_s')
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await listed(pilot, app)
        assert [r.name for r in app.screen.runs] == ["good-20261203-101500"]
        note = app.screen.query_one("#runs-problems")
        text = str(note.render())
        assert note.display and "left out:" in text and "broken-20261203-101600" in text
        assert "status.json: not valid JSON (line 4" in text
        assert note.region.height >= 1 and note.region.bottom <= 23  # on screen, above the footer


async def test_the_header_names_the_runs_folder_in_full_not_runs_twice(tmp_path, monkeypatch):
    from tui.screens.runs import RunsScreen

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    app = LorapilotApp(start="monitor", run_dir=None, runs_root="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert (app.screen.title, app.screen.sub_title) == ("runs", header_path(tmp_path / "runs"))


def test_every_state_word_the_engine_can_show_has_a_colour_and_a_meaning():
    """A copied live run directory is listed as `copy` (engine.runs_list): it had no style and showed plain, unlike
    every other state; so did `stalled?` and a sweep's `planned` and `running`. Each state the engine can write or
    work out (engine.runs_list.SHOWN_STATES: the run's, lost, a sweep's, a trial's) has a style and a plain-words
    meaning, so a new one cannot reach the screen without both."""
    from engine.rundir import STATES
    from engine.runs_list import COPY, SHOWN_STATES, STALLED, STATE_MEANINGS
    from engine.sweep.sweepdir import SWEEP_STATES, TRIAL_PENDING, TRIAL_SKIPPED
    from tui.widgets.progress_panel import STATE_STYLES

    assert set(STATES) | set(SWEEP_STATES) | {"lost", "unknown", COPY, STALLED, TRIAL_PENDING, TRIAL_SKIPPED} \
        <= set(SHOWN_STATES)
    assert [s for s in SHOWN_STATES if s not in STATE_STYLES] == []
    assert [s for s in SHOWN_STATES if not STATE_MEANINGS.get(s)] == []
    assert STATE_STYLES[COPY] == STATE_STYLES["stopped"]


async def test_a_live_run_that_went_quiet_is_listed_stalled_as_lorapilot_runs_lists_it(tmp_path):
    """The app's list called every live run `training`, a stuck one too, where `lorapilot runs` says `stalled?`;
    it now uses the same rule and says what the word means under the table."""
    import os

    from engine.runs_list import STALLED, STATE_MEANINGS
    from tui.widgets.progress_panel import STATE_STYLES

    make_run(tmp_path / "quiet", steps_done=50, pid=os.getpid(), now=time.time() - 900)
    make_run(tmp_path / "fresh", steps_done=50, pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await listed(pilot, app)
        assert {r.name: r.state for r in app.screen.runs} == {"quiet": STALLED, "fresh": "training"}
        table = app.screen.query_one("#runs-table")
        cell = table.get_cell("/".join([str(tmp_path), "quiet"]), "state")
        assert cell.plain == STALLED and str(cell.style) == STATE_STYLES[STALLED]
        note = app.screen.query_one("#runs-notes")
        assert note.display and f"{STALLED}: {STATE_MEANINGS[STALLED]}" in str(note.render())
        await pilot.pause(0.1)
        assert note.region.height == 1  # the CLI's 79-column line, whole at 80 columns
        app.exit()


async def test_folder_names_with_brackets_are_listed_as_they_are(tmp_path):
    """A DataTable reads a str cell as markup: a run folder named `lora[v2]-[bold]x` was listed as `lora-x`; an
    empty runs folder with brackets in its path lost them too."""
    root = tmp_path / "runs[v2]"
    make_run(root / "lora[v2]-[bold]x", state="done", steps_done=40, max_steps=40, now=time.time() - 60)
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await listed(pilot, app)
        table = app.screen.query_one("#runs-table")
        await pilot.pause(0.1)
        assert table.render_line(1).text.split()[0] == "lora[v2]-[bold]x", table.render_line(1).text
        app.exit()
    (tmp_path / "empty[b]").mkdir()
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path / "empty[b]"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert f"No runs under {tmp_path / 'empty[b]'}." in str(app.screen.query_one("#runs-empty").render())
        app.exit()


async def test_the_wizard_reaches_the_runs_list_from_the_palette(tmp_path):
    """A newcomer in the wizard had no way to the runs already started (ctrl+p "runs" found nothing): only quitting
    and typing `lorapilot monitor`. The palette's "Runs" opens the list the monitor opens, of the same root."""
    from textual.command import CommandPalette

    from tui.screens.runs import RunsScreen

    make_run(tmp_path / "earlier-run", state="done", steps_done=40, max_steps=40, now=time.time() - 60)
    app = LorapilotApp(runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, CommandPalette):
                break
        await pilot.press(*"runs")
        for _ in range(100):
            await pilot.pause(0.05)
            options = app.screen.query_one("CommandList")
            if options.option_count and "Runs" in str(options.get_option_at_index(0).prompt):
                break
        await pilot.press("enter")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, RunsScreen):
                break
        assert isinstance(app.screen, RunsScreen)
        await listed(pilot, app)
        assert [r.name for r in app.screen.runs] == ["earlier-run"]
        # and back to the wizard as it was left (the list had no way back: only quitting)
        step = app.screen_stack[-2]
        await pilot.press("escape")
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen is step:
                break
        assert app.screen is step
