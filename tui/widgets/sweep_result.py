"""The finished sweep at a glance: the eval-loss heatmap (lr x r, the engine's rendering) beside the winner
and the commands to run next."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from engine.rundir import loss_text
from engine.sweep.plan import lr_text
from engine.sweep.report import NO_WINNER, render_heatmap, unfinished_text

DEFAULT_APPLY = "best.yaml"


def winner_text(summary: dict, sweep_arg: str) -> Text:
    w = summary.get("winner")
    out = Text()
    if not w:
        out.append("No winner: ", style="bold red")
        out.append(f"{NO_WINNER}.")
        return out
    out.append("Winner  ", style="bold")
    out.append(f"lr {lr_text(w['learning_rate'])} · r {w['r']} (alpha {w['alpha']})", style="bold green")
    out.append(f"\neval loss {loss_text(w['eval_loss'])}")
    if not w.get("finished"):
        out.append(f"\n({unfinished_text(w)})", style="yellow")
    for note in summary.get("winner_notes") or []:   # at the grid's edge, on more GPUs than its trial: as the CLI
        out.append(f"\n{note[0].upper()}{note[1:]}.", style="yellow")
    out.append("\n\nNext:", style="bold")
    # One argument a line: the folder, long, wrapped inside "lorapilot sweep DIR \\" at 80 columns (the panel is half
    # the screen), and a soft-wrapped command copied from the terminal runs `lorapilot sweep` alone.
    out.append(f"\n  lorapilot sweep \\\n    {shlex.quote(command_path(sweep_arg))} \\\n    --apply {DEFAULT_APPLY}",
               style="cyan")
    out.append(f"\n  lorapilot train {DEFAULT_APPLY}", style="cyan")
    out.append("\n\na", style="bold")
    out.append(" writes the winner's config from here.", style="dim")
    return out


def command_path(folder: str) -> str:
    """The folder as a command typed here names it: relative to the working directory when inside it (the app's
    launch names it in full), else as given."""
    try:
        return str(Path(folder).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return folder


class SweepResult(Horizontal):
    """Hidden until the sweep is finished; `show(summary)` fills it."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, sweep_arg: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.sweep_arg = sweep_arg

    def compose(self) -> ComposeResult:
        yield Static(id="sweep-heatmap")
        yield Static(id="sweep-winner")

    def show(self, summary: dict) -> None:
        finished = summary.get("table") is not None
        self.display = finished
        if not finished:
            return
        self.query_one("#sweep-heatmap", Static).update(Group(render_heatmap(summary)))
        self.query_one("#sweep-winner", Static).update(winner_text(summary, self.sweep_arg))
