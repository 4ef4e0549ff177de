"""One-line meters as Rich Text, shared by the GPU and system panels (no widget here)."""

from __future__ import annotations

from rich.text import Text

WARN_AT, DANGER_AT = 0.75, 0.90


def level_style(frac: float) -> str:
    return "red" if frac >= DANGER_AT else "yellow" if frac >= WARN_AT else "green"


def meter(frac: float, width: int, *, mark_at: float | None = None, style: str | None = None) -> Text:
    """A bar `width` cells wide; `mark_at` draws a tick (the 90 % line) where a user must not cross.

    Coloured by level (a fuller memory bar is worse) unless `style` says otherwise: a fuller
    progress bar is good news.
    """
    frac = min(max(frac, 0.0), 1.0)
    width = max(width, 3)
    filled = round(frac * width)
    mark = min(width - 1, int(mark_at * width)) if mark_at is not None else -1
    style = style or level_style(frac)
    t = Text()
    for i in range(width):
        if i == mark:
            # Drawn over the fill too, so the line stays visible once memory passes it.
            t.append("│" if i >= filled else "┃", style=f"bold red on {style}" if i < filled else "bold red")
        elif i < filled:
            t.append("█", style=style)
        else:
            t.append("░", style="grey37")
    return t


def gib(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
