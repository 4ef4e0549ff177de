"""The line under every wizard step: batch, steps, memory and time, as the engine estimates them now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget


def fmt_duration(seconds: float | None) -> str:
    """An estimated duration, worded as `lorapilot estimate` and the sweep word it."""
    from engine.estimate.timing import duration_text
    return duration_text(seconds)


def fmt_cost(cost: Any) -> str:
    if cost is None:
        return ""
    if isinstance(cost, (int, float)):
        return f"${cost:.2f}"
    return str(cost)


# The most lines a long problem or estimate error takes: the rest of the screen is the step's.
HEAD_LINES = 2


class EstimateLine(Widget):
    """The estimate, one line when it fits the width (it changes on every keystroke: redrawn without a layout
    pass), else the problems and any estimate error on a line of their own and the numbers wrapped between items,
    never cut (a tmux pane of 80 columns)."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self) -> None:
        super().__init__()
        self._head: list[Content] = []   # what is wrong: problems, an estimate that failed
        self._items: list[Content] = []  # the numbers
        self._busy = False
        self._shown: tuple[str, ...] = ()

    def lines(self, width: int) -> list[Content]:
        """The line(s) shown in `width` cells."""
        width = max(width, 1)
        sep = Content(" · ")
        whole = sep.join(self._head + self._items)
        if whole.cell_length <= width:
            lines = [whole]
        else:
            lines = sep.join(self._head).wrap(width) if self._head else []
            if len(lines) > HEAD_LINES:  # the Review step and the field rows say it in full
                lines = lines[:HEAD_LINES - 1] + [Content(" ").join(lines[HEAD_LINES - 1:]).truncate(width, ellipsis=True)]
            current: Content | None = None
            for item in self._items:
                if current is None:
                    current = item
                elif current.cell_length + sep.cell_length + item.cell_length <= width:
                    current = Content.assemble(current, sep, item)
                else:
                    lines.append(current)
                    current = item
            if current is not None:
                lines.append(current)
        # "updating…" comes and goes with every keystroke: only where it fits, so the height never flickers.
        busy = Content.styled("updating…", "dim italic")
        if self._busy and lines and lines[-1].cell_length + sep.cell_length + busy.cell_length <= width:
            lines[-1] = Content.assemble(lines[-1], sep, busy) if lines[-1].cell_length else busy
        return lines or [Content("")]

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Content:
        return Content("\n").join(self.lines(self.content_region.width))

    def show(self, state: Any) -> None:
        cfg, est = state.cfg, state.estimate
        head: list[Content] = []
        parts: list[Content] = []
        n_problems = len(state.blockers())  # a model or dataset that cannot be read counts too
        if n_problems:
            head.append(Content.styled(f"✗ {n_problems} problem{'s' * (n_problems > 1)}", "$text-error bold"))
        parts.append(Content(f"eff. batch {cfg.effective_batch_size}"))
        if est is not None:
            steps = getattr(est, "total_steps", None)
            per_epoch = getattr(est, "steps_per_epoch", None)
            if steps is None:  # no readable dataset and no max_steps: nothing to count
                parts.append(Content.styled("steps: need the data", "$text-warning"))
            else:
                parts.append(Content(f"{steps} steps" + (f" ({per_epoch}/epoch)" if per_epoch else "")))
            # What nvidia-smi will show against the card: the numbers the fit verdict compares.
            used = getattr(est, "need_gib", None)
            card = est.gpu.memory_gib if getattr(est, "gpu", None) is not None else None
            time_text = fmt_duration(getattr(est, "time_s", None))
            if getattr(est, "gpu", "?") is None:
                # No GPU: the plan is this machine's CPU (fp32, plain kernels), and the time is for it: a quiet one's
                # (the Review step says "a busy machine takes several times longer").
                if getattr(est, "time_s", None) is None:
                    parts.append(Content.styled("no GPU: trains on this CPU", "$text-warning"))
                else:
                    from engine.estimate.timing import CPU_TIME_CAVEAT_SHORT

                    caveat = f" {CPU_TIME_CAVEAT_SHORT}" if getattr(est, "time_caveat", "") else ""
                    parts.append(Content.assemble(Content.styled("no GPU:", "$text-warning"),
                                                  f" {time_text} on this CPU{caveat}"))
                    time_text = ""
            elif used is not None:
                fits = getattr(est, "fits", None)
                mem = f"VRAM {used:.1f}" + (f"/{card:.0f} GiB" if card else " GiB")
                style = "$text-success" if fits else "$text-error bold" if fits is False else ""
                parts.append(Content.styled(mem + (" fits" if fits else " too big" if fits is False else ""),
                                            style))
            if time_text:
                parts.append(Content(time_text))
            cost = fmt_cost(getattr(est, "cost", None))
            if cost:
                parts.append(Content(cost))
        elif state.estimate_error:
            head.append(Content.styled("estimate: " + state.estimate_error.splitlines()[0], "$text-warning"))
        shown = tuple(c.markup for c in head) + ("|",) + tuple(c.markup for c in parts) + (str(state.busy),)
        if shown == self._shown:
            return
        width = self.content_region.width
        before = len(self.lines(width)) if width else 0
        self._head, self._items, self._busy, self._shown = head, parts, state.busy, shown
        # A layout pass only when the number of lines changes, not on every keystroke.
        self.refresh(layout=not width or len(self.lines(width)) != before)
