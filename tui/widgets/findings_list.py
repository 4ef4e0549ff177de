"""The diagnostics: findings in plain words, worst first then newest first, coloured by severity."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.diagnose.finding import finding_where
from tui.models.run_history import FINDINGS, RepeatedFinding, RunHistory

SEVERITY_STYLES = {"error": "bold red", "warning": "bold yellow", "info": "bold cyan"}
SEVERITY_MARKS = {"error": "✖", "warning": "▲", "info": "●"}


def render_finding(f: RepeatedFinding) -> Group:
    """The headline and message, then the evidence and the fix, each wrapped under its own start (a label column),
    not back at the pane's edge."""
    style = SEVERITY_STYLES.get(f.severity, "bold")
    repeat = f"  ×{f.count} since step {f.first_step}" if f.count > 1 else ""
    head = Text.assemble((f"{SEVERITY_MARKS.get(f.severity, '●')} {f.severity} ", style), (f.code, "bold"),
                         (f"  {finding_where(f)}{repeat}", "dim"), "\n", f.message)
    details = Table.grid(padding=(0, 1, 0, 0))
    details.add_column(style="bold", no_wrap=True)
    details.add_column(ratio=1)
    if f.evidence:
        details.add_row(Text("  evidence", "dim bold"), Text(f.evidence, "dim"))
    if f.fix:
        details.add_row(Text("  fix", "green bold"), Text(f.fix))
    return Group(head, details) if details.row_count else Group(head)


class FindingsList(VerticalScroll):
    DEFAULT_CSS = """
    FindingsList { height: 1fr; }
    FindingsList > Static { width: 1fr; }
    """

    def __init__(self, history: RunHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self._drawn: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="findings-body")

    def on_mount(self) -> None:
        self.sync()

    def sync(self) -> None:
        version = self.history.versions[FINDINGS]
        if version == self._drawn:
            return
        self._drawn = version
        # Worst first (errors, then warnings, then infos), newest first within each: an info about the
        # learning curve must not push a warning out of a 24-row pane.
        rank = {"error": 0, "warning": 1, "info": 2}
        found = sorted(self.history.findings_newest_first(), key=lambda f: rank.get(f.severity, 3))
        counts = {s: sum(1 for f in found if f.severity == s) for s in SEVERITY_STYLES}
        summary = "  ".join(f"[{SEVERITY_STYLES[s]}]{n} {s}[/]" for s, n in counts.items() if n)
        self.border_title = f"Diagnostics  {summary}" if summary else "Diagnostics"
        body = self.query_one("#findings-body", Static)
        if not found:
            body.update(Text("No findings. The trainer checks loss, gradients, memory and overfitting as it goes; "
                             "problems appear here with what to change.", style="dim"))
        else:
            blocks: list = []
            for f in found:
                blocks += [render_finding(f), Text("")]
            body.update(Group(*blocks[:-1]))
        self.scroll_home(animate=False)
