"""The quick sweep panel on the hyperparameter step: the engine's plan follows the grid; bad grids are refused inline."""

from __future__ import annotations

import re
import time

from tui.app import LorapilotApp
from wizard_pilot import type_into

SIZE = (100, 32)


async def plan_settled(pilot, panel, limit: float = 300.0) -> str:
    """The plan once the panel has it; `limit` is a hang guard only (the verb plans in seconds idle, far longer
    beside a full suite)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if not panel.planning:
            return str(panel.query_one("#sweep-plan").render())
    raise AssertionError("no sweep plan")


async def open_panel(pilot):
    """The quick sweep panel, opened from the hyperparameter step as a user does."""
    await pilot.press("ctrl+n", "ctrl+n", "ctrl+t")
    await pilot.pause(0.1)
    panel = pilot.app.screen
    assert type(panel).__name__ == "SweepPanel"
    return panel


def trials(plan: str) -> int:
    found = re.search(r"(\d+) trials", plan)
    assert found, plan
    return int(found.group(1))


async def test_grid_edits_change_the_plan_and_a_bad_lr_is_an_inline_error():
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(pilot)
        plan = await plan_settled(pilot, panel)
        assert trials(plan) == 9 and "time" in plan  # the default grid: 3 x 3

        await type_into(pilot, "#sweep-r", "8,16")
        plan = await plan_settled(pilot, panel)
        assert trials(plan) == 6
        assert "--r 8,16" in str(panel.query_one("#sweep-command").render())

        await type_into(pilot, "#sweep-lr", "-1")
        await plan_settled(pilot, panel)
        error = panel.query_one("#sweep-row-lr .sweep-error")
        assert error.display and "out of range" in str(error.render())
        assert panel.query_one("#sweep-lr").value == "-1"  # kept as typed
        assert panel.query_one("#sweep-start").disabled
        await pilot.press("ctrl+l")  # refused: still the panel
        await pilot.pause(0.1)
        assert app.screen is panel

        await type_into(pilot, "#sweep-r", "[/]8")  # the error quotes it: text, never markup (it raised)
        await pilot.pause(0.1)
        r_error = panel.query_one("#sweep-row-r .sweep-error")
        assert "--r: '[/]8' is not a whole number" in str(r_error.render())
        await type_into(pilot, "#sweep-r", "8,16")

        await type_into(pilot, "#sweep-lr", "2e-4")
        plan = await plan_settled(pilot, panel)
        assert not error.display and trials(plan) == 2
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        app.exit()


async def test_the_panel_title_wraps_whole_at_80_columns():
    # At 80x24 the one-line title was cut at the border: "... hopeless ones sto".
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await open_panel(pilot)
        title = panel.query_one("#sweep-title")
        assert title.region.right <= panel.query_one("#sweep").content_region.right
        shown = " ".join(strip.text.strip() for strip in title.render_lines(title.region.reset_offset))
        assert shown.endswith("hopeless ones stop early"), shown


async def test_the_plan_wraps_under_its_labels_in_the_panel_at_80_columns():
    """The plan is the verb's text, wrapped at 80 columns with its continuations under the text; the panel, 72 wide
    at 80x24, wrapped it again: "99" / "steps" at column 0, "halving at steps 33 and" / "66: a" / "        trial"."""
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await open_panel(pilot)
        await plan_settled(pilot, panel)
        await pilot.pause(0.1)
        box = panel.query_one("#sweep-plan")
        lines = [strip.text.rstrip() for strip in box.render_lines(box.region.reset_offset)]
        lines = [line for line in lines if line]
        assert lines[0].startswith("sweep   ") and len(lines) >= 3, lines
        for line in lines:   # each line a "label  text" line or a continuation under the text
            assert re.match(r"(sweep|stops|runs|time|cost|note|speed|budget) {2,}\S| {8}\S", line), lines
        words = " ".join(line.split(None, 1)[1] if not line.startswith(" ") else line.strip() for line in lines)
        assert "rounded to a multiple of 3" in words and "halving at steps" in words
        app.exit()


async def test_the_same_as_command_line_parses_to_the_panel_s_grid():
    # `--r -1,x` pasted into a shell: argparse reads `-1,x` as a flag, not as the ranks the panel shows.
    import argparse
    import shlex

    from engine.sweep.command import add_arguments

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(pilot)
        await type_into(pilot, "#sweep-lr", "-1e-4, 2e-4")
        await type_into(pilot, "#sweep-r", "-1,x")
        await type_into(pilot, "#sweep-budget", "-3")
        shown = str(panel.query_one("#sweep-command").render())
        prefix = "same as: lorapilot sweep "
        assert shown.startswith(prefix), shown
        parser = argparse.ArgumentParser(prog="lorapilot sweep", exit_on_error=False)
        add_arguments(parser)
        args = parser.parse_args(shlex.split(shown.removeprefix(prefix)))
        values = panel.values()
        assert args.target == "CONFIG"
        assert (args.lr, args.r) == ("-1e-4,2e-4", "-1,x") == (values["lr"].replace(" ", ""), values["r"])
        assert args.steps == int(values["steps"]) and args.budget_minutes == -3.0
        # The panel's own call takes the same argv.
        assert parser.parse_args(panel.argv()[1:]) == argparse.Namespace(**{**vars(args), "target": None})
        app.exit()


async def test_the_plan_is_made_outside_the_app_s_process(monkeypatch):
    """The plan tokenizes the data (transformers). In a thread of the app, a plan still running when the grid was
    typed on ran beside the next: both imported transformers at once, "cannot import name 'AutoTokenizer'" ended the
    app, and each redirected the other's stdout. It is made in the wizard's data helper: the verb in this process
    (here refusing to run) is never called, and the plan comes."""
    import engine.sweep.command

    def in_the_app(_args):
        raise RuntimeError("the sweep verb ran in the app's process")

    monkeypatch.setattr(engine.sweep.command, "run", in_the_app)
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(pilot)
        plan = await plan_settled(pilot, panel)
        assert panel.plan_error is None and trials(plan) == 9
        app.exit()


async def test_ctrl_l_twice_starts_one_sweep(monkeypatch):
    """A start takes seconds (the data is tokenized): ctrl+l pressed again meanwhile started a second sweep."""
    import threading

    import tui.models.data_inspection as data_inspection

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(pilot)
        await plan_settled(pilot, panel)
        calls, release = [], threading.Event()

        def start(_verb, argv):   # the data helper's call, which starts the sweep
            calls.append(argv)
            release.wait(30)
            return ""   # no sweep directory said: the panel stays, and says so

        monkeypatch.setattr(data_inspection, "answer", start)
        await pilot.press("ctrl+l")
        await pilot.pause(0.2)
        await pilot.press("ctrl+l")
        await pilot.pause(0.5)
        release.set()
        await pilot.pause(0.2)
        assert len(calls) == 1 and "--yes" in calls[0]
        assert app.screen is panel and not panel.query_one("#sweep-start").disabled   # it may be tried again
        app.exit()


async def test_one_plan_at_a_time_then_the_grid_as_it_is(monkeypatch):
    """Each pause in typing asked the data helper (one process) for a whole plan (the tokenizer, the dataset read),
    and a superseded one ran on there: on a large dataset plans queued, the newest and the wizard's data checks last.
    Now one plan is made at a time; when it returns for a grid since edited, the grid as it is then is planned once."""
    import threading

    import tui.models.data_inspection as data_inspection
    from tui.models.sweep_request import run_sweep_verb

    real_answer, calls = data_inspection.answer, []

    def answer(fn, *args, **kwargs):   # the helper's call: a plan waits until released, the rest as ever
        if fn is not run_sweep_verb:
            return real_answer(fn, *args, **kwargs)
        release = threading.Event()
        calls.append((args[0], release))
        release.wait(60)
        return f"sweep   planned {len(calls)}"

    async def wait_for(what, limit: float = 60.0):   # a hang guard only
        deadline = time.monotonic() + limit
        while not what() and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert what()

    monkeypatch.setattr(data_inspection, "answer", answer)
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        try:
            panel = await open_panel(pilot)
            await wait_for(lambda: len(calls) == 1)
            for text in ("8", "8,16", "8,16,32"):   # three pauses in typing while the first plan is made
                await type_into(pilot, "#sweep-r", text)
                await pilot.pause(2 * panel.DEBOUNCE_S)
            assert len(calls) == 1 and panel.planning
            calls[0][1].set()   # the first returns, for a grid since edited: the grid as it is now is planned
            await wait_for(lambda: len(calls) == 2)
            assert calls[1][0] == [*panel.argv(), "--dry-run"] and "8,16,32" in calls[1][0], calls[1][0]
            assert panel.planning and "planned" not in str(panel.query_one("#sweep-plan").render())
            calls[1][1].set()
            await wait_for(lambda: not panel.planning)
            assert panel.plan_text == "sweep   planned 2" and len(calls) == 2
        finally:
            for _argv, release in calls:
                release.set()
        app.exit()


async def test_quitting_while_the_sweep_starts_says_where_it_would_be(monkeypatch, tmp_path):
    """Quitting while the start runs ends the data helper it runs in, and the start is made whole or not at all: a
    sweep may go on that the user never saw start. The terminal said nothing; it names where to look."""
    import threading

    import tui.models.data_inspection as data_inspection
    from test_quit_keys import watch_exit

    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "my runs"))
    app = LorapilotApp()
    notes = watch_exit(app)
    release = threading.Event()
    try:
        async with app.run_test(size=SIZE) as pilot:
            panel = await open_panel(pilot)
            await plan_settled(pilot, panel)
            monkeypatch.setattr(data_inspection, "answer", lambda _verb, _argv: release.wait(30) and "")
            await pilot.press("ctrl+l")
            await pilot.pause(0.1)
            assert app.screen is panel and panel._starting
            await pilot.press("ctrl+q")
            await pilot.pause(0.05)
    finally:
        release.set()
    printed = "\n".join(getattr(note, "plain", str(note)) for note in notes if note)
    assert "the sweep was starting as you quit" in printed, printed
    assert f"lorapilot runs --root '{tmp_path / 'my runs'}'" in printed, printed


async def test_the_demo_is_swept_over_its_own_learning_rates():
    """The panel's grid was the pretrained models' 1e-4,2e-4,5e-4 on the demo, whose checklist says 2e-4 is far
    below its 1e-3 to 5e-3: every trial barely moved, the winner at the grid's edge. `lorapilot sweep` on the demo
    config without --lr sweeps the same rates."""
    from engine.learning_rate import DEMO_RANGE
    from engine.sweep.plan import parse_lrs

    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(pilot)
        assert app.wizard.cfg.model == "lorapilot-demo"
        lrs = parse_lrs(panel.query_one("#sweep-lr").value)
        assert len(lrs) == 3 and all(DEMO_RANGE[0] <= lr <= DEMO_RANGE[1] for lr in lrs)
        plan = await plan_settled(pilot, panel)
        assert "lr 1e-3, 3e-3, 5e-3" in plan
        app.exit()
    assert parse_lrs(None, "lorapilot-demo") == lrs and parse_lrs(None, "some/model") == [1e-4, 2e-4, 5e-4]


START_SCRIPT = """
import asyncio, json, sys, time
import tui.app

async def main():
    app = tui.app.LorapilotApp()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+t")
        await pilot.pause(0.1)
        panel = app.screen
        deadline = time.monotonic() + 300
        while panel.planning and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.press("ctrl+l")
        # started: the sweep's monitor opens (mounted whole before the app exits)
        while type(app.screen).__name__ != "SweepMonitorScreen" and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.pause()
        print(json.dumps({"screen": type(app.screen).__name__, "plan_error": panel.plan_error,
                          "heavy": [m for m in %r if m in sys.modules]}))
        app.exit()

asyncio.run(main())
"""


def test_a_sweep_started_from_the_panel_imports_no_torch_into_the_app(tmp_path):
    """The start tokenizes the data: it ran in a thread of the app, which imported transformers and torch into the
    app's process (its keys froze meanwhile, and an import beside another could collide, as the plan's did). It runs
    in the wizard's data helper: the sweep starts and the app's process holds none of them. A process of its own:
    this one has imported them for other tests."""
    import json
    import os
    import subprocess
    import sys

    from conftest import stop_detached_runs

    from test_wizard_startup import HEAVY

    env = {**os.environ, "LORAPILOT_RUNS": str(tmp_path / "runs")}
    try:
        r = subprocess.run([sys.executable, "-c", START_SCRIPT % (HEAVY,)], capture_output=True, text=True,
                           timeout=600, env=env)
    finally:
        stop_detached_runs(tmp_path)   # the sweep's driver, in a session of its own
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["screen"] == "SweepMonitorScreen" and out["plan_error"] is None, (out, r.stderr[-2000:])
    assert list((tmp_path / "runs").rglob("sweep.json")), "no sweep started"
    assert out["heavy"] == [], out
