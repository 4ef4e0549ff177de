"""The shell scripts an export writes beside what it exports (serve.sh, convert.sh).

Each starts in its own folder and names what the export wrote by paths relative to it, so that the folder still
works when it is moved or copied to another machine.
"""

from __future__ import annotations

from pathlib import Path


def write_script(path: Path, about: str, body: str) -> None:
    path.write_text("#!/bin/sh\n"
                    f"# Written by lorapilot: {about}\n"
                    "# Paths are relative to this folder, so it still works when the folder is moved or copied.\n"
                    "set -e\n"
                    'cd "$(dirname "$0")"\n'
                    f"{body}\n", encoding="utf-8")
    path.chmod(0o755)
