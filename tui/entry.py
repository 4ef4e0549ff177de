"""The `lorapilot` console script: the app for interactive verbs, the engine CLI for the rest.

Lives in tui/ because the engine never imports the UI; the headless verbs go
straight to engine.cli without importing Textual.
"""

from __future__ import annotations

import sys


APP_VERBS = ("monitor", "playground")


def _wants_app(argv: list[str]) -> bool:
    if not argv:
        return True
    first = argv[0]
    if first in APP_VERBS:
        return "-h" not in argv and "--help" not in argv
    # A config for the wizard, found or not: a mistyped name is the wizard's "config file not found", not an
    # invalid verb.
    return first.endswith((".yaml", ".yml"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _wants_app(argv):
        from engine.cli import main as cli_main
        return cli_main(argv)
    from tui.launch_app import run_app
    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
