"""An app that has exited is freed: nothing of the engine's helpers keeps it (and its screens) alive."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tui.app import LorapilotApp
from wizard_pilot import settle


def test_the_app_that_started_the_data_helper_is_freed_once_it_exits(monkeypatch):
    """The data helper's threads start under the app's print capture (Textual's sys.stderr while it runs); a thread
    keeps the sys.stderr of its start, so the first app to tokenize data lived as long as the helper: the whole
    session, screens and all, in a process that opens apps one after another (the test suite)."""
    from tui.models import data_inspection

    monkeypatch.setattr(data_inspection, "_pool", None)  # a helper of this app's own, started by this app

    async def tokenize_and_exit(app):
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            assert app.wizard.data_rows == 400  # the helper tokenized the demo's data
            app.exit()

    app = LorapilotApp()
    try:
        # A loop of its own, ended here: asyncio's own worker threads (started under the capture too) end with it.
        asyncio.run(tokenize_and_exit(app))
        assert data_inspection._pool is not None
        freed = weakref.ref(app)
        del app
        gc.collect()
        assert freed() is None
    finally:
        if data_inspection._pool is not None:
            data_inspection._pool.shutdown(wait=True, cancel_futures=True)


def test_quitting_while_the_data_helper_is_busy_ends_it_rather_than_waiting(monkeypatch, tmp_path):
    """A hub model typed offline: the helper's tokenizer fetch retries for a minute and more. ctrl+q left a blank
    terminal for 85 s: Python joins the app's worker threads at exit, and the one waiting on the helper waited out
    the fetch. Quitting now ends a helper that is still working; its callers get an error, not a second helper."""
    import time
    from concurrent.futures.process import BrokenProcessPool

    from tui.models import data_inspection

    monkeypatch.setattr(data_inspection, "_pool", None)  # a helper of this test's own, ended by it
    outcome: dict = {}

    def wait_on_helper() -> None:
        try:
            outcome["answer"] = data_inspection.answer(time.sleep, 20)   # the fetch that does not end soon
        except BrokenProcessPool as e:
            outcome["ended"] = e

    async def quit_mid_call(app):
        async with app.run_test(size=(80, 24)) as pilot:
            app.run_worker(wait_on_helper, thread=True)
            while not data_inspection.busy():
                await pilot.pause(0.05)
            app.exit()

    asyncio.run(quit_mid_call(LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path))))
    assert "ended" in outcome and "answer" not in outcome, outcome
    assert data_inspection._pool is None   # the next app starts a helper of its own


def test_a_caller_of_an_ended_helper_stops_waiting_even_when_no_answer_ever_comes(monkeypatch):
    """Ending the helper terminates its process; one killed while writing its answer leaves the pool's manager
    thread reading the rest of the message for good, and the caller's future unresolved: the suite hung at a wizard
    test's teardown (asyncio joining the worker thread that waited). Here a pool whose answer never comes."""
    import threading
    import time
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from tui.models import data_inspection

    class NeverAnswers:
        _processes: dict = {}

        def submit(self, fn, *args, **kwargs) -> Future:
            return Future()

        def shutdown(self, **kwargs) -> None:
            pass

    monkeypatch.setattr(data_inspection, "_pool", NeverAnswers())
    monkeypatch.setattr(data_inspection, "_ended", None)
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["answer"] = data_inspection.answer(int)
        except BrokenProcessPool as e:
            outcome["ended"] = e

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    while not data_inspection.busy():
        time.sleep(0.01)
    data_inspection.end_if_busy()
    caller.join(timeout=120)   # at once, in fact: a bound for a loaded machine, not a timing
    assert not caller.is_alive() and "ended" in outcome, outcome
