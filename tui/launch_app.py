"""Turns the interactive command line into an app start; user errors exit 2 without a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import EXIT_BAD_INPUT, UserError, print_error, shell_word
from engine.rundir import (ADAPTER_DIR, CONFIG_FILE, FINAL_STATES, effective_state, is_run_dir, not_a_run_dir,
                           read_status, require_run_dir)
from engine.settings import user_path


def run_app(argv: list[str]) -> int:
    from tui.app import LorapilotApp

    try:
        app = LorapilotApp(**app_options(argv))
    except UserError as e:
        print_error(e)
        return EXIT_BAD_INPUT
    app.run()
    return app.return_code or 0


def app_options(argv: list[str]) -> dict[str, Any]:
    """The app's start from its command line; every path through user_path, as the headless verbs' are (a quoted
    "~/cfg.yaml" is the home's, not a folder named '~')."""
    if argv and argv[0] == "monitor":
        target = user_path(argv[1]) if len(argv) > 1 else None
        if target and not _watchable(Path(target)):  # a folder that holds no run opened as a run of state unknown
            raise not_a_run_dir(target, "not a run or sweep directory (no status.json, metrics.jsonl or sweep.json)",
                                fix="`lorapilot monitor` alone picks from the runs; `lorapilot runs` lists them")
        return {"start": "monitor", "run_dir": target}
    if argv and argv[0] == "playground":
        return {"start": "playground", "run_dir": _finished_run(argv[1:])}
    config = user_path(argv[0]) if argv else None
    if config is not None and not Path(config).is_file():
        raise UserError(f"{argv[0]}: config file not found", fix="`lorapilot` alone opens the wizard on the demo")
    return {"start": "wizard", "config_path": config}


def _watchable(path: Path) -> bool:
    """A run the monitor can follow: one that has begun (status.json or metrics.jsonl) or is being made (its
    config.yaml is written first), or a sweep."""
    from engine.sweep.sweepdir import is_sweep_dir

    try:
        return path.is_dir() and (is_run_dir(path) or (path / CONFIG_FILE).is_file() or is_sweep_dir(path))
    except OSError as e:   # a folder this user may not read (another user's): the OS's reason, not a traceback
        raise UserError(f"{path}: {e.strerror}",
                        fix="monitor it as the user who trained it, or ask them to make it readable") from None


def _finished_run(args: list[str]) -> str:
    """`lorapilot playground RUN_DIR`: a run directory with an adapter in it."""
    if len(args) != 1:
        raise UserError("playground needs one RUN_DIR (a finished run)", fix="try: lorapilot playground runs/<name>")
    # a folder that is no run is named so (as chat and export name it), not "not finished" with a monitor to watch it
    run_dir = require_run_dir(user_path(args[0]))
    if not (run_dir / ADAPTER_DIR).is_dir():
        status = read_status(run_dir)
        state = effective_state(status, run_dir)
        if state in (*FINAL_STATES, "lost"):   # nothing will finish it: watching it waits for nothing
            raise UserError(f"{run_dir}: no adapter/ (the run is {state} at step {(status or {}).get('step', 0)})",
                            fix=f"resume it: `lorapilot train --resume {shell_word(run_dir)}`; the playground opens "
                                "once it is done")
        raise UserError(f"{run_dir}: no adapter/ yet (the run has not finished)",
                        fix=f"watch it with `lorapilot monitor {shell_word(run_dir)}`; the playground opens once it is done")
    return str(run_dir)
