"""Graceful stop: SIGTERM/SIGINT or a stop request file set a flag the callback polls each step."""

from __future__ import annotations

import signal
from pathlib import Path

from engine.rundir import STOP_REQUEST_FILE


class StopFlag:
    def __init__(self, run_dir: str | Path):
        self.request_file = Path(run_dir) / STOP_REQUEST_FILE
        self.signalled = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        # Only set a flag: the step in flight finishes, then the callback checkpoints and stops.
        self.signalled = True

    def is_set(self) -> bool:
        return self.signalled or self.request_file.exists()
