"""The dataset step's file picker."""

from __future__ import annotations

from pathlib import Path

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
        assert title.endswith(f"under\n{start}"), title


async def test_from_the_demo_the_picker_opens_where_one_works_and_goes_up_a_folder(tmp_path, monkeypatch):
    """On the demo (the wizard's start), ctrl+o opened the picker on lorapilot's own presets/demo folder, with no key
    to leave it: one's own data, in the folder one works in, could not be reached. It opens in the working folder
    now, backspace goes up a folder, and the title fits 80 columns (the folder was cut off after the file types)."""
    from engine.settings import PRESETS_DIR
    from tui.screens.file_picker import DataTree

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (tmp_path / "mine.jsonl").write_text("{}\n", encoding="utf-8")
    monkeypatch.chdir(work)
    picked: list[str | None] = []
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(FilePicker(PRESETS_DIR / "demo" / "train.jsonl"), picked.append)
        await pilot.pause(0.1)
        assert Path(app.screen.query_one(DataTree).path) == work
        words, folder = str(app.screen.query_one("#picker-title").render()).splitlines()
        assert len(words) <= 68 and folder == str(work)   # the words fit 80 columns' picker; the folder on its own
        await pilot.press("backspace")
        await pilot.pause(0.2)
        tree = app.screen.query_one(DataTree)
        assert Path(tree.path) == tmp_path
        assert str(app.screen.query_one("#picker-title").render()).endswith(f"under\n{tmp_path}")
        for _ in range(100):   # the folder is read in a worker
            names = [node.data.path.name for node in tree.root.children]
            if "mine.jsonl" in names:
                break
            await pilot.pause(0.05)
        await pilot.press(*["down"] * (1 + names.index("mine.jsonl")), "enter")   # below the folder's own line
        await pilot.pause(0.1)
    assert picked == [str(tmp_path / "mine.jsonl")]
