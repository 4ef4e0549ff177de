"""The tail of train.log: as many of its last lines as fit, newest at the bottom.

A tail, not a scrollable log: the whole file is one `less` away, and a
scrolling Log widget changes its virtual size with every line, which makes
Textual lay out and repaint the whole screen once a second during training.
"""

from __future__ import annotations

from rich.text import Text
from textual.visual import VisualType

from engine.rundir import LOG_FILE
from tui.models.run_history import LOG
from tui.widgets.monitor_panel import MonitorPanel


class LogTail(MonitorPanel):
    DEFAULT_CSS = """
    LogTail { height: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    TITLE = LOG_FILE

    def key(self) -> tuple:
        return self.history.versions[LOG], self.size.height

    @property
    def lines(self) -> list[str]:
        """The lines shown now."""
        rows = max(1, self.content_size.height)
        return list(self.history.log_lines)[-rows:]

    def build(self) -> Text:
        lines = self.lines
        self.border_subtitle = "" if lines else "empty so far"
        # One row per line, cut at the edge: wrapping would push the newest line out of view.
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")

    def show(self, content: VisualType) -> None:
        # The height comes from the layout (1fr), never from the content.
        self.update(content, layout=False)
