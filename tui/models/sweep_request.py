"""The quick sweep's grid as `lorapilot sweep` arguments: each field checked by the engine's own parsers, the
verb called in-process, the sweep directory read from what it printed. No Textual: the panel
(tui.screens.sweep_panel) shows what these say.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from typing import Any, Callable

from engine.errors import UserError

# The panel's fields and the verb's flags, in the order shown.
FIELDS = (("lr", "--lr", "learning rates"), ("r", "--r", "LoRA ranks (alpha = 2r)"),
          ("steps", "--steps", "steps per trial"), ("budget", "--budget-minutes", "budget, minutes (optional)"))
SWEEP_DIR_LINE = re.compile(r"^sweep directory: (.+)$", re.M)


def default_values(model: str | None = None) -> dict[str, str]:
    """The verb's defaults for a config of `model` (the demo's learning rates for the demo)."""
    from engine.sweep.plan import DEFAULT_RS, DEFAULT_STEPS, default_lrs, lr_text
    return {"lr": ",".join(lr_text(x) for x in default_lrs(model)), "r": ",".join(str(r) for r in DEFAULT_RS),
            "steps": str(DEFAULT_STEPS), "budget": ""}


def field_errors(values: dict[str, str]) -> dict[str, str]:
    """Each grid field checked by the engine's own parsers; the message as the CLI gives it."""
    from engine.sweep.plan import parse_lrs, parse_rs, round_steps

    checks: dict[str, Callable[[str], Any]] = {"lr": parse_lrs, "r": parse_rs,
                                               "steps": lambda text: round_steps(int(text))}
    errors = {}
    for name, check in checks.items():
        try:
            check(values[name].strip())
        except UserError as e:
            errors[name] = str(e)
        except ValueError:
            errors[name] = f"{FIELDS[2][1]}: {values[name].strip() or 'empty'} is not a whole number"
    budget = values["budget"].strip()
    if budget:
        try:
            if not float(budget) > 0:
                raise ValueError
        except ValueError:
            errors["budget"] = f"--budget-minutes: {budget} must be a number of minutes above 0 (or empty)"
    return errors


def sweep_argv(config_path: str, values: dict[str, str], gpu: str | None, price: float | None) -> list[str]:
    argv = [config_path]
    for name, flag, _ in FIELDS:
        if values[name].strip():
            argv += option(flag, values[name].strip().replace(" ", ""))
    if gpu:
        argv += option("--gpu", gpu)
    if price is not None:
        argv += option("--price-per-hour", f"{price:g}")
    return argv


def option(flag: str, value: str) -> list[str]:
    """`--flag value`, or `--flag=value` for a value that starts with "-": argparse would read `--r -1,x` as a flag
    with no value, in this process and in the shell the "same as" line is pasted into."""
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]


# What the verb prints for the panel: lines whole, for the panel to fit to its own width (engine.wrap.fit), not
# wrapped at 80 columns and wrapped again by the panel, narrower, continuations at column 0.
UNWRAPPED = 10_000


def run_sweep_verb(argv: list[str]) -> str:
    """`lorapilot sweep ARGV` in this process; what it printed, each line whole. Raises the verb's UserError."""
    from engine.sweep.command import add_arguments, run
    from engine.wrap import fit_width

    parser = argparse.ArgumentParser(prog="lorapilot sweep")
    add_arguments(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), fit_width(UNWRAPPED):
        run(parser.parse_args(argv))
    return out.getvalue()
