"""The dataset step's file picker."""

from __future__ import annotations

from textual.app import App

from tui.screens.file_picker import FilePicker


async def test_the_picker_names_its_folder_as_it_is(tmp_path):
    """Its title drew the folder as markup: `data[v2]` read `data`."""
    start = tmp_path / "data[v2]"
    start.mkdir()
    (start / "train.jsonl").write_text("{}\n", encoding="utf-8")
    app = App()
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(FilePicker(start))
        await pilot.pause(0.1)
        title = str(app.screen.query_one("#picker-title").render())
        assert title.endswith(f"under {start}"), title
