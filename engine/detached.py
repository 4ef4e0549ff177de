"""Starting a process that outlives whoever started it: the trainer, the sweep driver."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path


def spawn_detached(cmd: list[str], log_path: Path, *, pass_fds: tuple[int, ...] = (),
                   blocked_signals: Iterable[signal.Signals] = (), **env: str) -> subprocess.Popen:
    """Starts cmd in its own session, its output appended to log_path, with env added to ours.

    Its own session: the terminal's SIGHUP/SIGINT (an SSH drop, Ctrl-C, closing the app) never reach it.
    pass_fds: descriptors it inherits (the run lock). blocked_signals: blocked in it from birth (the mask survives
    exec) until it unblocks them itself, so that one arriving before its handlers exist waits for them.
    """
    blocked = list(blocked_signals)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if blocked else None
    try:
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True, pass_fds=pass_fds,
                                    env=dict(os.environ, **env), cwd=os.getcwd())
    finally:
        if old is not None:  # this thread's mask only, and only for the moment of the fork
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """A SIGTERM that arrives inside waits for the block's end, then acts as it would have (ends the process).

    For a folder made and the process that owns it started: done whole, or not begun. The wizard's data helper
    starts a sweep and is ended by SIGTERM when the app quits; cut between the two, it left a folder of a lock and a
    base config that no command reads as a sweep, or a sweep.json with no driver. In the main thread only (where
    handlers are set); elsewhere nothing is deferred. A handler, not a mask: a SIGTERM delivered to another thread
    of the process (a tokenizer's) is caught too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, _frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
        if arrived:
            os.kill(os.getpid(), signal.SIGTERM)
