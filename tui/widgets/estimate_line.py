"""The line under every wizard step: batch, steps, memory and time, as the engine estimates them now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.content import Content
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


class EstimateLine(Widget):
    """One fixed line: redrawn without a layout pass (it changes on every keystroke)."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self) -> None:
        super().__init__()
        self._content = Content("")

    def render(self) -> Content:
        return self._content

    def show(self, state: Any) -> None:
        cfg, est = state.cfg, state.estimate
        parts: list[Content] = []
        n_problems = len(state.blockers())  # a model or dataset that cannot be read counts too
        if n_problems:
            parts.append(Content.styled(f"✗ {n_problems} problem{'s' * (n_problems > 1)}", "$text-error bold"))
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
            if getattr(est, "gpu", "?") is None:
                # No GPU: the plan is this machine's CPU (fp32, plain kernels), and the time below is for it.
                parts.append(Content.styled("no GPU: trains on this CPU", "$text-warning"))
            elif used is not None:
                fits = getattr(est, "fits", None)
                mem = f"VRAM {used:.1f}" + (f"/{card:.0f} GiB" if card else " GiB")
                style = "$text-success" if fits else "$text-error bold" if fits is False else ""
                parts.append(Content.styled(mem + (" fits" if fits else " too big" if fits is False else ""),
                                            style))
            parts.append(Content(fmt_duration(getattr(est, "time_s", None))))
            cost = fmt_cost(getattr(est, "cost", None))
            if cost:
                parts.append(Content(cost))
        elif state.estimate_error:
            parts.append(Content.styled("estimate: " + state.estimate_error.splitlines()[0], "$text-warning"))
        if state.busy:
            parts.append(Content.styled("updating…", "dim italic"))
        content = Content(" · ").join(parts)
        if content.markup != self._content.markup:
            self._content = content
            self.refresh()
