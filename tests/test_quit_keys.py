"""Quitting without a manual: ctrl+q in every footer, ctrl+c says how (and quits on a second press), and the
monitor's label says whether the run goes on."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run  # noqa: E402
from sweep_fakerun import make_sweep  # noqa: E402

from tui.app import LorapilotApp  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def footer_quit(app) -> str:
    """The description the footer shows for ctrl+q ('' when the footer does not show it)."""
    active = app.screen.active_bindings.get("ctrl+q")
    return active.binding.description if active and active.binding.show else ""


async def test_every_wizard_step_shows_ctrl_q_and_q_types_into_the_field():
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        for step in ("ModelScreen", "DatasetScreen", "HyperparamsScreen", "ReviewScreen"):
            await pilot.pause(0.05)
            assert type(app.screen).__name__ == step
            assert footer_quit(app) == "Quit", step
            await pilot.press("ctrl+n")
        await pilot.press("escape", "escape", "escape")
        await pilot.pause(0.05)
        await pilot.press("end", "q")  # `q` is a letter in a field, never a quit
        assert app.is_running and app.screen.query_one("#field-model").value.endswith("q")


async def test_ctrl_c_says_how_to_quit_then_quits_on_a_second_press():
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause(0.05)
        assert app.is_running
        assert any("ctrl+c again" in n.message and "ctrl+q" in n.message for n in app._notifications)
        await pilot.press("ctrl+c")
        await pilot.pause(0.05)
    assert not app.is_running


async def test_ctrl_q_quits_the_wizard():
    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause(0.05)
    assert not app.is_running


@pytest.mark.parametrize("state, label", [("training", "Quit (run continues)"), ("done", "Quit"), ("lost", "Quit")])
async def test_the_monitor_says_whether_the_run_continues(tmp_path, state, label):
    import os
    import subprocess

    # "lost": status says training, but no trainer has that pid any more.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = {"lost": dead.pid, "training": os.getpid()}.get(state)
    run = make_run(tmp_path / "r", state="training" if state == "lost" else state,
                   steps_done=1200 if state == "done" else 900, pid=pid)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen.history.state == state:
                break
        await pilot.pause(0.1)
        assert footer_quit(app) == label
        await pilot.press("ctrl+q")
        await pilot.pause(0.05)
    assert not app.is_running


def watch_exit(app) -> list:
    """What the app leaves printed in the terminal when it exits (Textual prints and clears it at the end)."""
    messages = []
    real = app.exit
    app.exit = lambda *a, message=None, **kw: (messages.append(message), real(*a, message=message, **kw))[1]
    return messages


async def quit_when_ready(path, keys, ready, while_open=None) -> str:
    """Opens the monitor on `path`, waits until `ready(screen)`, runs `while_open(app)`, presses `keys`; returns what
    the app left printed in the terminal ("" for nothing)."""
    app = LorapilotApp(start="monitor", run_dir=str(path))
    notes = watch_exit(app)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if ready(app.screen):
                break
        if while_open is not None:
            while_open(app)
        await pilot.press(*keys)
        await pilot.pause(0.05)
    assert not app.is_running
    return "\n".join(getattr(note, "plain", str(note)) for note in notes if note)


@pytest.mark.parametrize("keys", [("ctrl+q",), ("q",), ("ctrl+c", "ctrl+c")])
async def test_quitting_the_monitor_mid_run_leaves_the_way_back_in_the_terminal(tmp_path, keys):
    """A beginner who quits while the run trains must not think the run went with the app: the terminal keeps
    the command that watches it again (and the one that stops it); a finished run's quit prints nothing."""
    import os

    run = make_run(tmp_path / "my run", state="training", steps_done=900, pid=os.getpid())  # a live trainer's pid
    printed = await quit_when_ready(run, keys, lambda screen: screen.history.state == "training")
    assert "in the background" in printed
    assert f"lorapilot monitor '{run}'" in printed and f"lorapilot stop '{run}'" in printed

    done = make_run(tmp_path / "done", state="done", steps_done=1200)
    assert await quit_when_ready(done, keys, lambda screen: screen.history.state == "done") == ""


@pytest.mark.parametrize("keys", [("ctrl+q",), ("q",), ("ctrl+c", "ctrl+c")])
async def test_quitting_the_sweep_monitor_mid_sweep_leaves_the_way_back_in_the_terminal(tmp_path, keys):
    """The sweep monitor's quit, as the run monitor's: the sweep goes on, and the terminal keeps how to watch it
    again and how to stop it; a finished sweep's quit prints nothing."""

    def running(app):
        assert app.screen.summary["state"] == "running"
        assert footer_quit(app) == "Quit (sweep continues)"

    def ended(app):
        assert footer_quit(app) == "Quit"

    def has_summary(screen):
        return bool(getattr(screen, "summary", None))

    sweep = make_sweep(tmp_path, state="running", name="my sweep")  # this test's pid stands in for the driver
    printed = await quit_when_ready(sweep, keys, has_summary, running)
    assert "the sweep goes on in the background" in printed
    assert f"lorapilot monitor '{sweep}'" in printed and f"lorapilot stop '{sweep}'" in printed

    done = make_sweep(tmp_path / "later", state="done")
    assert await quit_when_ready(done, keys, has_summary, ended) == ""


async def test_a_run_that_ends_while_watched_rings_and_sets_the_title(tmp_path, monkeypatch):
    import json

    import os

    run = make_run(tmp_path / "r", state="training", steps_done=900, pid=os.getpid())  # a live trainer's pid
    app = LorapilotApp(start="monitor", run_dir=str(run))
    rang = []
    monkeypatch.setattr(app, "bell", lambda: rang.append(1))
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen.history.state != "unknown":
                break
        assert app.screen.announced is None and not rang  # a run already going: nothing to announce
        # p while training, before the first checkpoint: says when it can open, opens nothing.
        await pilot.press("p")
        for _ in range(100):
            await pilot.pause(0.05)
            if any("first comes at step 100" in n.message for n in app._notifications):
                break
        assert type(app.screen).__name__ == "MonitorScreen"
        assert any("first comes at step 100 (save_steps), at step 900/1200 now" in n.message
                   for n in app._notifications)
        status = json.loads((run / "status.json").read_text())
        (run / "status.json").write_text(json.dumps({**status, "state": "done", "updated": status["updated"] + 1}))
        for _ in range(200):
            await pilot.pause(0.05)
            if app.screen.announced:
                break
        assert app.screen.announced == "lorapilot: r done" and rang == [1]
        await pilot.pause(0.1)
        assert footer_quit(app) == "Quit"


async def test_diagnostics_list_warnings_before_infos(tmp_path):
    import json

    run = make_run(tmp_path / "r", state="done", steps_done=900)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:  # the newest finding is only an info
        f.write(json.dumps({"kind": "finding", "step": 890, "time": 1.0, "code": "no_progress", "severity": "info",
                            "message": "a late info", "evidence": "", "fix": ""}) + "\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen.history.findings:
                break
        await pilot.pause(1.5)
        from rich.console import Console

        console = Console(width=100, record=True, color_system=None, file=io.StringIO())
        console.print(app.screen.query_one("#findings-body").content)
        text = console.export_text()
        # monitor_fakerun: an info at 200, a warning at 430, an error at 850; and the info at 890 added above
        assert text.index("error") < text.index("warning") < text.index("a late info"), text[:400]


async def test_quitting_the_monitor_of_a_stopped_run_leaves_the_command_that_continues_it(tmp_path):
    """A run stopped with x: the monitor said "stopped" and nothing more; quitting left the terminal empty, and
    the beginner had to find `train --resume` and the run's folder. The terminal now keeps the command."""
    run = make_run(tmp_path / "my run", state="stopped", steps_done=300)
    printed = await quit_when_ready(run, ("ctrl+q",), lambda screen: screen.history.state == "stopped")
    assert "stopped at step 300" in printed and f"lorapilot train --resume '{run}'" in printed, printed
