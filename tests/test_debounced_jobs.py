"""tui.debounced_jobs and tui.one_shot: a burst of requests runs the last one, once; an answer to a superseded
request is dropped; and a debounce fires even when the machine is too busy to look at the clock in time."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from textual.app import App

from tui.debounced_jobs import DebouncedJobs

pytestmark = pytest.mark.timeout(120)


async def _until(pilot, done, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit  # a hang guard only
    while not done() and time.monotonic() < deadline:
        await pilot.pause(0.02)


async def test_a_debounce_fires_when_the_clock_jumps_past_its_moment(monkeypatch):
    """Textual's one-shot set_timer never fires when its moment passed before its task read the clock (a loaded
    2-core machine): the wizard then stayed busy for ever. Every read of Textual's clock here is 20 ms later."""
    import textual._time

    heard: list = []
    app = App()
    async with app.run_test() as pilot:
        jobs = DebouncedJobs(app, "t", lambda kind, result, error: heard.append((kind, result, error)))
        real = textual._time.get_time
        reads = itertools.count()
        monkeypatch.setattr(textual._time, "get_time", lambda: real() + 0.02 * next(reads))
        jobs.schedule("data", 0, lambda: jobs.run("data", lambda: 42))
        await _until(pilot, lambda: not jobs.busy)
        assert heard == [("data", 42, None)]
        assert not jobs.busy


async def test_a_burst_runs_the_last_request_once_and_a_stale_answer_is_dropped():
    heard: list = []
    release = threading.Event()
    app = App()
    async with app.run_test() as pilot:
        jobs = DebouncedJobs(app, "t", lambda kind, result, error: heard.append((kind, result, error)))
        started: list = []
        for value in (1, 2, 3):  # typing: each keystroke restarts the wait
            jobs.schedule("model", 0.05, lambda value=value: (started.append(value), jobs.run("model", lambda: value)))
        await _until(pilot, lambda: not jobs.busy)
        assert started == [3] and heard == [("model", 3, None)]

        # A slow request (a hub timeout) is superseded: only the newer answer reaches the state.
        try:
            jobs.run("model", lambda: (release.wait(60), "stale")[1])
            jobs.run("model", lambda: "fresh")
            await _until(pilot, lambda: len(heard) == 2)
            # The superseded one still runs, and the wizard is not busy for it: nothing waits on its answer.
            assert not jobs.busy and "running=[]" not in repr(jobs)
        finally:
            release.set()
        await _until(pilot, lambda: "running=[]" in repr(jobs))
        await pilot.pause(0.1)
        assert heard[1:] == [("model", "fresh", None)]


async def test_an_error_is_handed_over_and_a_stopped_debounce_never_runs():
    heard: list = []
    app = App()
    async with app.run_test() as pilot:
        jobs = DebouncedJobs(app, "t", lambda kind, result, error: heard.append((kind, result, error)))
        jobs.run("rows", lambda: 1 / 0)
        await _until(pilot, lambda: not jobs.busy)
        (kind, result, error), = heard
        assert kind == "rows" and result is None and isinstance(error, ZeroDivisionError)

        from tui.one_shot import OneShot
        ran: list = []
        shot = OneShot(app, 0, lambda: ran.append(1))
        shot.stop()
        await pilot.pause(0.2)
        assert ran == []
