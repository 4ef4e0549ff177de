"""Graceful stop: SIGTERM/SIGINT/SIGHUP or a stop request file set a flag the callback polls each step.

The launcher starts the trainer with these signals blocked (engine.train.launch); `install` sets the handlers
and only then unblocks them, so a stop that arrived while Python was starting is delivered to the handler.
"""

from __future__ import annotations

import signal
from pathlib import Path

from engine.rundir import STOP_REQUEST_FILE, RunPlace

# SIGHUP too: a trainer whose terminal went away (a shell that forwards the hang-up) stops with a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopFlag:
    def __init__(self, run_dir: str | Path):
        self.request_file = Path(run_dir) / STOP_REQUEST_FILE
        self.signalled = False
        # The trainer's main holds its run directory here (RunPlace), so that each step checks it is still there.
        self.place: RunPlace | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on_signal(self, signum, frame) -> None:
        # Only set a flag: the step in flight finishes, then the callback checkpoints and stops.
        self.signalled = True

    def is_set(self) -> bool:
        return self.signalled or self.request_file.exists()

    def check_place(self) -> None:
        """Raises RunDirMoved when the run directory is no longer at the path the trainer writes."""
        if self.place is not None:
            self.place.check()
