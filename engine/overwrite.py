"""An existing output file is replaced only when the user says so: a flag, or yes at the terminal's prompt."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import UserError


def may_overwrite(out: Path, force: bool, *, flag: str, example: str) -> None:
    """Returns when OUT may be written (absent, --force, or yes at the terminal); else a UserError naming it.

    `flag` is the option that named OUT (`--out`), `example` a file name to suggest for it."""
    if out.is_dir():
        raise UserError(f"{flag} {out}: is a directory", fix=f"give {flag} a file name, such as {example}")
    if not out.exists() or force:
        return
    if sys.stdin.isatty() and sys.stderr.isatty():
        print(f"{out} exists; overwrite it? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() in ("y", "yes"):
            return
    raise UserError(f"{out}: exists; not overwritten", fix=f"choose another {flag}, or add --force to replace it")
