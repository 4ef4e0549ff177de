"""Turns the interactive command line into an app start; user errors exit 2 without a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import EXIT_BAD_INPUT, UserError


def run_app(argv: list[str]) -> int:
    from tui.app import LorapilotApp

    try:
        if argv and argv[0] == "monitor":
            target = argv[1] if len(argv) > 1 else None
            if target and not Path(target).is_dir():
                raise UserError(f"{target}: no such run directory")
            app = LorapilotApp(start="monitor", run_dir=target)
        else:
            app = LorapilotApp(start="wizard", config_path=argv[0] if argv else None)
    except UserError as e:
        print(f"lorapilot: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    app.run()
    return app.return_code or 0
