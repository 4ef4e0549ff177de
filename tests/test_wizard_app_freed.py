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
