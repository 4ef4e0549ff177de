"""What the app says about an error, and where it keeps the ones that are bugs.

A UserError (a bad path, a bad value) or an OSError (a full disk, a missing file) is the user's to fix: its
own words are shown. Anything else is a bug in lorapilot: the toast or line says so in one line and names the
log file that holds the traceback, so that it is never only a passing toast.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

from engine.errors import UserError
from engine.settings import cache_root

APP_LOG_NAME = "app.log"
_lock = threading.Lock()  # workers log from their threads


def app_log_path() -> Path:
    return cache_root() / APP_LOG_NAME


def log_error(error: BaseException, during: str) -> Path | None:
    """Appends the error and its traceback to the app's log; the file, or None where it cannot be written."""
    path = app_log_path()
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {during}\n{text}")
    except OSError:
        return None
    return path


def say(error: BaseException, during: str = "the app") -> str:
    """The error as one line for a toast or a checklist line; a bug is logged first and the line names the log."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, ImportError):
        return f"not available yet ({error})"
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}"
    path = log_error(error, during)
    where = f"traceback in {path}" if path else "the app's log could not be written"
    return f"a bug in lorapilot ({type(error).__name__}: {error}); {where}"
