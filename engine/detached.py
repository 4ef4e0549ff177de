"""Starting a process that outlives whoever started it: the trainer, the sweep driver."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def spawn_detached(cmd: list[str], log_path: Path, **env: str) -> subprocess.Popen:
    """Starts cmd in its own session, its output appended to log_path, with env added to ours.

    Its own session: the terminal's SIGHUP/SIGINT (an SSH drop, Ctrl-C, closing the app) never reach it.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, env=dict(os.environ, **env),
                                cwd=os.getcwd())
