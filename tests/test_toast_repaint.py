"""A toast that expires is followed by a repaint of the screen under it (LorapilotApp.notify): Textual removed an
expired toast over the monitor's chart without redrawing the cells it covered, seen in tmux."""

from __future__ import annotations

import time

import pytest

from tui.app import LorapilotApp

pytestmark = pytest.mark.timeout(120)


async def test_the_screen_is_repainted_after_a_toast_expires(tmp_path):
    app = LorapilotApp(start="monitor", run_dir=str(tmp_path / "none"), runs_root=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        repaints: list[float] = []
        real = screen.refresh

        def refresh(*args, **kwargs):
            if not args and not kwargs:
                repaints.append(time.monotonic())
            return real(*args, **kwargs)
        screen.refresh = refresh  # type: ignore[method-assign]
        shown = time.monotonic()
        app.notify("The run is done.", title="run", timeout=0.5)
        deadline = time.monotonic() + 30
        while not any(t >= shown + 0.5 for t in repaints):
            assert time.monotonic() < deadline, "no repaint after the toast expired"
            await pilot.pause(0.1)
