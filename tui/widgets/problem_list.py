"""Findings as the user reads them: what is wrong, the numbers that show it, and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from textual.content import Content
from textual.widgets import Static

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
        from engine.config_edit import fix_setting
        # The wizard's ctrl+g applies every fix that names a setting: say which ones it would change.
        key = Content.styled("  (ctrl+g applies)", "$text-muted") if fix_setting(f.fix) else Content("")
        lines.append(Content.assemble(indent, Content.styled("→ ", style), f.fix, key))
    return lines


def render_finding(f: Any) -> Content:
    mark, style = MARK.get(f.severity, ("·", ""))
    head = Content.assemble(Content.styled(f"{mark} {title_of(f.code)}", f"bold {style}"), "  ", f.message)
    return Content("\n").join([head, *finding_details(f)])


class ProblemList(Static):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, findings: Sequence[Any], errors: Sequence[str] = (), empty: str = "No problems found.") -> None:
        blocks = [Content.styled(f"✗ {e}", "$text-error") for e in errors]
        blocks += [render_finding(f) for f in findings]
        if not blocks:
            blocks = [Content.styled(f"✓ {empty}", "$text-success")]
        self.update(Content("\n\n").join(blocks))
