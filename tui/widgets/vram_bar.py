"""The memory estimate as one stacked bar against the card, with a legend by component.

Each component has its own colour *and* fill character, so the bar reads in
256 colours, in a light theme and in a monochrome tmux capture alike. The
90 % line is where the engine's fit test draws the line. On this machine's CPU
there is no card: no fit line, and the last line says the peak is RAM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.content import Content
from textual.widgets import Static

from engine.settings import mem_text

# (style, fill) per segment in order; cycles if the engine ever adds more components.
LOOKS = [("$primary", "█"), ("$secondary", "▓"), ("$accent", "█"), ("$success", "▓"), ("$warning", "█"),
         ("$error", "▓"), ("$primary-lighten-2", "▒"), ("$secondary-lighten-2", "▒"), ("$accent-lighten-2", "▒")]
OUTSIDE = "outside the peak"  # context, allocator slack, paged states: what nvidia-smi adds


def segments(est: Any) -> list[tuple[str, float, str]]:
    """(name, GiB, note) that add up to the device total: the peak's components, then the rest."""
    parts = [(c.name, c.gib, c.note) for c in est.components if c.mark == " " and c.gib > 0]
    rest = est.device_total_gib - est.peak_allocated_gib
    if rest > 0.005:
        names = [c.name for c in est.components if c.mark == "+" and c.gib > 0]
        parts.append((OUTSIDE, rest, ", ".join(names) + " (nvidia-smi sees them)" if names else ""))
    return parts


def elsewhere(est: Any) -> list[tuple[str, float, str]]:
    """The components `lorapilot estimate` marks '~': at another moment than the peak, listed but not added."""
    return [(c.name, c.gib, c.note) for c in est.components if c.mark == "~" and c.gib > 0]


def bar_line(parts: list[tuple[str, float, str]], card_gib: float | None, fraction: float, width: int) -> Content:
    total = sum(g for _, g, _ in parts)
    scale = max(total, card_gib or 0.0) or 1.0
    counts: list[int] = []
    used = 0
    acc = 0.0
    for _, gib, _ in parts:
        acc += gib
        end = round(acc / scale * width)
        n = max(end - used, 1 if gib / scale * width >= 0.25 else 0)
        counts.append(n)
        used += n
    # A component too small for a cell still gets one: the largest give those cells back, so the bar keeps its width.
    while used > width and max(counts, default=0) > 1:
        counts[counts.index(max(counts))] -= 1
        used -= 1
    cells = [Content.styled(LOOKS[i % len(LOOKS)][1] * n, LOOKS[i % len(LOOKS)][0]) for i, n in enumerate(counts)]
    if card_gib:
        card_end = round(card_gib / scale * width)
        mark = round(fraction * card_gib / scale * width)
        free = []
        for x in range(used, max(card_end, used)):
            free.append("┊" if x == mark else "·")
        cells.append(Content.styled("".join(free), "$text-muted"))
        if card_end < used:  # over the card: show where it ends
            cells.append(Content.styled(" ← card ends at " + f"{card_end * 100 // max(used, 1)} %", "$text-error"))
    return Content.assemble(*cells)


class VramBar(Static):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    _shown: tuple[Any, int | None] = (None, None)  # the estimate last shown, and the width asked for (None: fit)

    def show(self, est: Any, width: int | None = None) -> None:
        self.display = est is not None  # the verdict line above says why there is none
        self._shown = (est, width)
        if est is None:
            return
        # The bar fills the width the widget has; before its first layout that is unknown, so it is drawn again on
        # resize (drawn for 80 columns, its last cell wrapped onto a line of its own in a pane of 80).
        width = width or max(20, (self.size.width or 80) - 4)
        card = est.gpu.memory_gib if est.gpu is not None else None
        parts = segments(est)
        lines = [bar_line(parts, card, est.fit_fraction, width)]
        legend = []
        for i, (name, gib, note) in enumerate(parts):
            style, fill = LOOKS[i % len(LOOKS)]
            legend.append(Content.assemble(Content.styled(fill * 2, style), f" {name} ",
                                           Content.styled(mem_text(gib), "bold"), "  " if note else "",
                                           Content.styled(note or "", "$text-muted")))
        if card is None:  # the CPU: no card to fit under, and no CUDA context or allocator slack on top
            legend.append(Content.styled(f"= {mem_text(est.device_total_gib)} at the peak, in this machine's RAM "
                                         "(no GPU to fit)", "$text-muted"))
        else:
            legend.append(Content.styled(f"┊ {est.fit_fraction:.0%} of the card: the fit line", "$text-muted"))
        for name, gib, note in elsewhere(est):   # below the total and without fill: not in the bar, not added
            legend.append(Content.assemble(Content.styled("~~", "$text-muted"), f" {name} ",
                                           Content.styled(mem_text(gib), "bold"), "  ",
                                           Content.styled(f"another moment, not added: {note}", "$text-muted")))
        self.update(Content("\n").join(lines + legend))

    def on_resize(self) -> None:
        est, width = self._shown
        if est is not None and width is None:
            self.show(est)

