"""A list of findings one walks with the keys: each finding its own focusable block, enter applies its fix.

Review's checklist and the Dataset step's Problems list are built on this. tab (or ↑↓ once inside) moves from
finding to finding, the focused one is highlighted and its footer shows enter; enter posts `Apply` with that
finding, and the wizard step sets the one value the fix names. Lines that are no finding (a ticked check, an
error that is not a finding, a title) are blocks too, but not focusable.

The blocks are reused by position on every refresh (the wizard refreshes on each keystroke): rebuilding them
would flicker and lose the focus. When the focused finding goes (its fix applied), the focus moves to the
finding now in its place, or the nearest one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

HINT = "tab to a finding, ↑↓ to move, enter applies its fix; ctrl+g applies them all"


def settable(finding: Any) -> bool:
    """Does the finding's fix name one setting of the config (`Set training.x to y`)?"""
    from engine.config_edit import fix_setting
    return fix_setting(getattr(finding, "fix", "")) is not None


class FindingBlock(Static):
    """One finding (focusable: enter applies its fix) or one plain line (finding None: not focusable)."""

    BINDINGS = [
        Binding("enter", "apply", "Apply fix"),
        Binding("up", "move(-1)", "Previous finding", show=False),
        Binding("down", "move(1)", "Next finding", show=False),
        # The screen's ctrl+g (apply all) still works here, out of the footer: enter's key takes its place at 80
        # columns, and the hint line above the findings names it.
        Binding("ctrl+g", "screen.apply_fixes", "Apply all", show=False),
    ]

    def __init__(self, content: Content, finding: Any = None) -> None:
        super().__init__(content)
        self.finding = finding
        self.can_focus = finding is not None
        self._drawn = _key(content)

    def set(self, content: Content, finding: Any) -> None:
        self.finding = finding
        self.can_focus = finding is not None
        if _key(content) != self._drawn:  # the same text again is the common case: no relayout for it
            self._drawn = _key(content)
            self.update(content)

    def action_apply(self) -> None:
        if self.finding is not None:
            self.post_message(FindingBlocks.Apply(self.finding))

    def action_move(self, step: int) -> None:
        parent = self.parent
        if isinstance(parent, FindingBlocks):
            parent.move_focus(self, step)


def _key(content: Content) -> tuple:
    # Content compares by its text only: a finding turning from warning to error keeps its text, not its colour.
    return content.plain, tuple(content.spans)


class FindingBlocks(Vertical):
    """The container: `show_blocks` lays out (content, finding or None) pairs; `Apply` carries the finding."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    class Apply(Message):
        """enter on a finding: apply its fix (the wizard step that shows the list handles it)."""

        def __init__(self, finding: Any) -> None:
            super().__init__()
            self.finding = finding

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._blocks: list[FindingBlock] = []  # ours in order; children may still hold some being removed
        self._parked: tuple[Any, int] | None = None  # (where the focus waits, the finding's place) while rechecking

    def show_blocks(self, blocks: Sequence[tuple[Content, Any]]) -> None:
        findings = [f for _, f in blocks if f is not None]
        if any(settable(f) for f in findings):
            blocks = [(Content.styled(HINT, "$text-muted"), None), *blocks]
        focused = self.screen.focused if self.is_attached else None
        was = self._blocks.index(focused) if focused in self._blocks else None
        for block, (content, finding) in zip(self._blocks, blocks):
            block.set(content, finding)
        extra = [FindingBlock(content, finding) for content, finding in blocks[len(self._blocks):]]
        gone, self._blocks = self._blocks[len(blocks):], self._blocks[:len(blocks)] + extra
        if was is not None and not (was < len(self._blocks) and self._blocks[was].can_focus):
            self._focus_near(was, leaving=gone)
        elif self._parked is not None:
            parked_on, index = self._parked
            if focused is not parked_on:
                self._parked = None  # the user has moved on: leave the focus where they put it
            elif any(b.can_focus for b in self._blocks):
                self._parked = None
                self._focus_near(index, leaving=gone)
        if extra:
            self.mount_all(extra)
        if gone:
            self.remove_children(gone)

    def _focus_near(self, index: int, leaving: Sequence[FindingBlock] = ()) -> None:
        """The focused finding went (fixed): the next finding takes the focus, else the one before it. While the
        checks run again the list may hold no finding at all: the focus waits just above it, and comes back to
        the finding at the same place once the checks are in (unless the user has moved it meanwhile)."""
        after = [b for b in self._blocks[index:] if b.can_focus]
        before = [b for b in self._blocks[:index] if b.can_focus]
        target = after[0] if after else (before[-1] if before else None)
        if target is not None:
            # A block mounted just now has no place on screen yet: scroll to it once it has one.
            target.focus(scroll_visible=False)
            self.call_after_refresh(target.scroll_visible, animate=False)
            return
        # Never a block on its way out: a removed widget that keeps the focus takes the footer's keys with it.
        ours = set(self._blocks) | set(leaving)
        chain = self.screen.focus_chain
        first = next((i for i, w in enumerate(chain) if w in ours), len(chain))
        outside = [w for w in chain[:first] if w not in ours] or [w for w in chain[first:] if w not in ours]
        parking = outside[-1] if first and outside else (outside[0] if outside else None)
        self._parked = (parking, index) if parking is not None else None
        self.screen.set_focus(parking, scroll_visible=False)  # the view stays on the list, not on what is above

    def move_focus(self, block: FindingBlock, step: int) -> None:
        """↑↓ within the list; past either end, the focus leaves it as tab and shift+tab would."""
        ours = [b for b in self._blocks if b.can_focus]
        i = ours.index(block) + step if block in ours else -1
        if 0 <= i < len(ours):
            ours[i].focus()
        elif step > 0:
            self.screen.focus_next()
        else:
            self.screen.focus_previous()

    @property
    def findings_shown(self) -> list[Any]:
        return [b.finding for b in self._blocks if b.finding is not None]
