"""A modal file browser for the dataset path (Textual's DirectoryTree); Enter picks, Esc cancels."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Footer, Label

from engine.settings import DATA_SUFFIXES, PRESETS_DIR


class DataTree(DirectoryTree):
    """Only directories and the file types the data reader accepts (hidden files left out)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in DATA_SUFFIXES)]


class FilePicker(ModalScreen[str | None]):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("backspace", "up", "Up a folder"),
                Binding("ctrl+d", "pick_dir", "Use this directory")]

    def __init__(self, start: str | Path) -> None:
        super().__init__()
        start = Path(start).expanduser()
        # The demo's data lies inside lorapilot's own folder: one's own is looked for where one works.
        if start.resolve().is_relative_to(PRESETS_DIR):
            start = Path.cwd()
        while not start.is_dir() and start != start.parent:
            start = start.parent
        self.start = start if start.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Label(self._title(), id="picker-title")
            yield DataTree(self.start, id="picker-tree")
        yield Footer()

    def _title(self) -> Content:
        # The folder on a line of its own: at 80 columns it was cut off after the file types.
        return Content(f"Pick a data file ({', '.join(DATA_SUFFIXES)}) under\n{self.start}")

    def action_up(self) -> None:
        """The folder above: a tree shows only what is under its root, and data may lie beside the folder shown."""
        tree = self.query_one(DataTree)
        parent = Path(tree.path).resolve().parent
        if parent != Path(tree.path).resolve():
            self.start = parent
            tree.path = parent
            self.query_one("#picker-title", Label).update(self._title())

    def on_mount(self) -> None:
        self.query_one(DataTree).focus()

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_pick_dir(self) -> None:
        # A directory of data files is a valid dataset.path too.
        node = self.query_one(DataTree).cursor_node
        if node is not None and node.data is not None and Path(node.data.path).is_dir():
            self.dismiss(str(node.data.path))

    def action_cancel(self) -> None:
        self.dismiss(None)
