"""A one-shot timer that always fires: the wizard's and the quick sweep's debounces, the monitor's redraw.

Textual's set_timer drops a one-shot timer whose moment has passed by the time its task first reads the clock
(Timer skips missed ticks, and for a one-shot that is every tick): on a busy 2-core machine a 10 ms debounce
never fired, and the wizard waited for ever for an estimate it never asked for. asyncio's call_later always
runs; the callback is then posted to the target like any Textual callback (call_later), so it runs on the
target's message queue and an error in it is handled as a handler's is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from textual.message_pump import MessagePump


class OneShot:
    def __init__(self, target: MessagePump, delay: float, callback: Callable[[], Any]):
        """Calls `callback` on `target`'s queue after `delay` seconds, unless stopped first (from the app's loop)."""
        self._stopped = False
        self._handle = asyncio.get_running_loop().call_later(max(delay, 0.0), target.call_later, self._run, callback)

    def _run(self, callback: Callable[[], Any]) -> Any:
        # Stopped after its moment came but before the queue reached it: as Textual's stop, nothing runs.
        return None if self._stopped else callback()

    def stop(self) -> None:
        self._stopped = True
        self._handle.cancel()
