"""Starting a helper process from inside the app (tokenizer, playground model) without disturbing the terminal.

Importing transformers and loading a model hold the GIL for seconds; in a thread
of the app that freezes the keyboard. A helper process costs a pipe instead.
Nothing here imports Textual, so a spawned child stays light to start.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def real_stderr() -> Iterator[None]:
    """multiprocessing hands its child sys.stderr's descriptor; under Textual sys.stderr is a capture
    object without a usable one ("bad value(s) in fds_to_keep"): lend it the real one while starting."""
    captured = sys.stderr
    try:
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        yield
    finally:
        sys.stderr = captured


def quiet_child() -> None:
    """The helper shares our terminal: its warnings and progress bars must not print over the UI."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
