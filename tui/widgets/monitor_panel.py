"""The base of the monitor's text panels: draws one part of a RunHistory, and only when it changed."""

from __future__ import annotations

from typing import Any, Hashable, Protocol, runtime_checkable

from textual.visual import VisualType
from textual.widgets import Static

from tui.models.run_history import RunHistory


@runtime_checkable
class HistoryView(Protocol):
    """A monitor widget (panel or chart) that redraws from the RunHistory when the screen says so."""

    def sync(self) -> None: ...


class MonitorPanel(Static):
    """Subclasses say what their drawing depends on (`key`) and how to draw it (`build`).

    A height-auto Static that updates with layout=True makes Textual lay out
    and repaint the whole screen; a panel's numbers change every second or
    two while its height almost never does, so the layout pass is asked for
    only when the new content has a different height. That is most of what
    keeps watching a run under a few % of a core.
    """

    DEFAULT_CSS = """
    MonitorPanel { height: auto; }
    """

    TITLE = ""

    def __init__(self, history: RunHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self._drawn: tuple | None = None

    def on_mount(self) -> None:
        self.border_title = self.TITLE
        self.sync()

    def on_resize(self) -> None:
        self.sync()

    def key(self) -> Hashable:
        raise NotImplementedError

    def build(self) -> VisualType:
        raise NotImplementedError

    def sync(self) -> None:
        key = (self.key(), self.size.width)
        if key == self._drawn:
            return
        self._drawn = key
        self.show(self.build())

    def show(self, content: VisualType) -> None:
        self.update(content, layout=False)
        width = self.content_size.width
        if not width or self._height_at(width) != self.content_size.height:
            self.clear_cached_dimensions()
            self.refresh(layout=True)

    def _height_at(self, width: int) -> int:
        # Textual's own Widget.get_content_height passes self.styles here too: Visual.get_height's annotation
        # names RulesMap (a TypedDict), whose keys RenderStyles answers through its own get().
        return self._render().get_height(self.styles, width)  # type: ignore[arg-type]
