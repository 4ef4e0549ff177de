"""The command palette's Screenshot: into ~/Downloads when there is one, else the working directory (a rented
pod often has no ~/Downloads); the notification says where it went."""

from __future__ import annotations

import pytest

from tui.app import LorapilotApp

SIZE = (80, 24)


async def _screenshot_from_the_palette(app, pilot) -> str:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"Screenshot")
    await pilot.pause(0.3)
    await pilot.press("enter")
    for _ in range(100):  # the palette saves after a 0.1 s timer
        await pilot.pause(0.05)
        said = [n for n in app._notifications if n.title.startswith("Screenshot")]
        if said:
            return said[-1]
    raise AssertionError("the Screenshot command said nothing")


@pytest.mark.parametrize("has_downloads", [False, True], ids=["no-downloads", "downloads"])
async def test_palette_screenshot_goes_to_downloads_or_falls_back_here(tmp_path, monkeypatch, has_downloads):
    home, here = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    here.mkdir()
    if has_downloads:
        (home / "Downloads").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    # The runs screen (an empty runs root): the palette is the app's, and nothing here tokenizes or trains.
    app = LorapilotApp(start="monitor", runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        note = await _screenshot_from_the_palette(app, pilot)
        assert note.title == "Screenshot saved", (note.title, note.message)
        where = home / "Downloads" if has_downloads else here
        saved = list(where.glob("*.svg"))
        assert len(saved) == 1 and str(saved[0]) == note.message
        assert "<svg" in saved[0].read_text(encoding="utf-8")[:500]
        app.exit()
