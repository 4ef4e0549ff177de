"""Findings as the user reads them: what is wrong, the numbers that show it, and what to do.

Each finding is a block the keys reach (tui.widgets.finding_blocks): enter on one applies its fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from textual.content import Content

from tui.widgets.finding_blocks import FindingBlocks, settable

MARK = {"error": ("✗", "$text-error"), "warning": ("!", "$text-warning"), "info": ("i", "$text-primary")}


def title_of(code: str) -> str:
    from engine.diagnose.codes import TITLES
    return TITLES.get(code, code.replace("_", " "))


def finding_details(f: Any, indent: str = "  ") -> list[Content]:
    """The evidence and the fix, one line each, under whatever headline the caller gives."""
    _, style = MARK.get(f.severity, ("·", ""))
    lines = []
    if f.evidence:
        lines.append(Content.styled(f"{indent}{f.evidence}", "$text-muted"))
    if f.fix:
        # enter on the finding (or ctrl+g, all at once) applies a fix that names a setting: say which ones do.
        key = Content.styled("  (enter applies)", "$text-muted") if settable(f) else Content("")
        lines.append(Content.assemble(indent, Content.styled("→ ", style), f.fix, key))
    return lines


def render_finding(f: Any) -> Content:
    mark, style = MARK.get(f.severity, ("·", ""))
    head = Content.assemble(Content.styled(f"{mark} {title_of(f.code)}", f"bold {style}"), "  ", f.message)
    return Content("\n").join([head, *finding_details(f)])


class ProblemList(FindingBlocks):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, findings: Sequence[Any], errors: Sequence[str] = (), empty: str = "No problems found.") -> None:
        blocks: list[tuple[Content, Any]] = [(Content.styled(f"✗ {e}", "$text-error"), None) for e in errors]
        blocks += [(render_finding(f), f) for f in findings]
        if not blocks:
            blocks = [(Content.styled(f"✓ {empty}", "$text-success"), None)]
        self.show_blocks(blocks)
