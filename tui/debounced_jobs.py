"""Background jobs by kind, debounced, where only the newest request of a kind counts.

The wizard asks the engine things that take from milliseconds to seconds (a model's config from the hub, a
tokenizer): a burst of typing must start one request, not one per key, and the answer to a superseded request
(a hub timeout still running) must never overwrite the newer one's. Each kind has one timer (the debounce) and
a generation count (the newest wins); a job runs in a Textual worker thread and its result is handed back on
the app's thread.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from textual.app import App

from tui.one_shot import OneShot


class DebouncedJobs:
    def __init__(self, app: App, name: str, done: Callable[[str, Any, BaseException | None], None]):
        """`done(kind, result, error)` hears the newest job of each kind, on the app's thread."""
        self.app, self.name, self._done = app, name, done
        self._timers: dict[str, OneShot] = {}
        self._gen: dict[str, int] = {}
        self._running: set[tuple[str, int]] = set()

    def schedule(self, kind: str, delay: float, start: Callable[[], None]) -> None:
        """Debounce: the last change in a burst of typing is the one that runs; `start` then calls `run`."""
        old = self._timers.pop(kind, None)
        if old is not None:
            old.stop()
        self._timers[kind] = OneShot(self.app, delay, partial(self._fire, kind, start))

    def _fire(self, kind: str, start: Callable[[], None]) -> None:
        self._timers.pop(kind, None)
        start()

    def run(self, kind: str, fn: Callable, *args: Any) -> None:
        """`fn(*args)` in a worker thread, now; a later run of the same kind supersedes this one."""
        gen = self._gen[kind] = self._gen.get(kind, 0) + 1
        self._running.add((kind, gen))

        def job() -> None:
            try:
                result, error = fn(*args), None
            except Exception as exc:  # noqa: BLE001 - handed to `done`, whose screen shows it (and logs a bug)
                result, error = None, exc
            try:
                self.app.call_from_thread(self._finish, kind, gen, result, error)
            except RuntimeError:
                pass  # the app has closed meanwhile

        self.app.run_worker(job, name=f"{self.name}-{kind}", group=f"{self.name}-{kind}", thread=True,
                            exit_on_error=False)

    def _finish(self, kind: str, gen: int, result: Any, error: BaseException | None) -> None:
        self._running.discard((kind, gen))
        if gen != self._gen.get(kind):
            return  # a newer request for the same thing is on its way
        self._done(kind, result, error)

    @property
    def busy(self) -> bool:
        """True while anything is pending or running."""
        return bool(self._timers) or any((k, self._gen.get(k)) in self._running for k, _ in self._running)

    def busy_with(self, kind: str) -> bool:
        # Only the newest request counts: a superseded one (a hub timeout) may run on, ignored.
        return kind in self._timers or (kind, self._gen.get(kind)) in self._running

    def __repr__(self) -> str:
        return f"DebouncedJobs(waiting={sorted(self._timers)}, running={sorted(self._running)})"
