"""The playground's model, kept in a helper process: engine.playground.Playground behind a pipe.

Loading the 4-bit base and the adapter imports torch, transformers and peft, and
those imports hold the GIL for seconds: in a thread of the app, keys would stop
echoing while the model loads. In a process of its own the app only waits on a
pipe (which releases the GIL), and the model stays loaded for every prompt.

The protocol, one tuple per message:
    parent -> child   ("ask", text, adapter, kwargs) | ("cancel",) | ("quit",)
    child -> parent   ("ready", info) | ("dropped", turns) | ("piece", text) | ("done", seconds) | ("error", message)

kwargs are Playground.stream's: the sampling settings, the side's history and the system prompt; "dropped" says how
many of the oldest turns of that history did not fit the model's context (sent before the answer).

Nothing here imports Textual; the screen calls `ask` from a worker thread.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Iterator

from engine.errors import UserError


class ModelGone(UserError):
    """The helper process ended (out of memory, killed) or never started."""


def _serve(conn: Connection, run_dir: str, adapter: str | None = None) -> None:
    """The child's whole life: load once, then answer prompts until told to quit."""
    from tui.error_log import say
    from tui.helper_process import quiet_child

    quiet_child()
    start = time.monotonic()
    try:
        from engine.playground import Playground
        pg = Playground(run_dir, adapter=adapter)
        device = str(next(pg.model.parameters()).device)
    except Exception as exc:  # noqa: BLE001 - sent to the app, which shows it; say() logs a bug's traceback
        conn.send(("error", say(exc, "loading the playground's model")))
        return
    conn.send(("ready", {"model": pg.cfg.model, "device": device, "load_s": time.monotonic() - start,
                         "format": pg.style.format, "system": pg.style.system,
                         "template_system": pg.template_system, "system_refused": pg.system_refused,
                         "system_left_out": pg.system_left_out,
                         "context": pg.context, "stops_note": pg.stops_note}))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "quit":
            return
        if msg[0] != "ask":
            continue  # a late cancel for an answer already finished
        _, text, use_adapter, kwargs = msg
        began, cancelled = time.monotonic(), False
        try:
            # Generation runs to its end even when cancelled (transformers has no stop switch here);
            # only the sending stops, so the next prompt never overlaps this one.
            for piece in pg.stream(text, adapter=use_adapter, dropped=lambda n: conn.send(("dropped", n)), **kwargs):
                if not cancelled and conn.poll():
                    cancelled = conn.recv()[0] in ("cancel", "quit")
                if not cancelled and piece:
                    conn.send(("piece", piece))
        except Exception as exc:  # noqa: BLE001 - sent to the app, which shows it; say() logs a bug's traceback
            conn.send(("error", say(exc, "generating in the playground")))
            continue
        conn.send(("done", time.monotonic() - began))


class PlaygroundModel:
    """The parent's handle: `load()` once (blocking), then `ask()` per answer, from worker threads."""

    def __init__(self, run_dir: str, adapter: str | None = None):
        self.run_dir = run_dir
        self.adapter = adapter  # a checkpoint's adapter directory; None: the run's final adapter/
        self.info: dict[str, Any] | None = None
        self.error: str | None = None
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self._ready = threading.Event()
        self._asking = threading.Lock()
        self._closed = False

    def load(self) -> dict[str, Any]:
        """Start the helper and wait for the model; raises UserError with the reason it failed."""
        import multiprocessing

        from tui.helper_process import real_stderr

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        with real_stderr():
            proc = ctx.Process(target=_serve, args=(child, self.run_dir, self.adapter), daemon=True,
                               name="lorapilot-playground")
            proc.start()
        self._proc = proc
        child.close()
        self._conn = parent
        try:
            kind, payload = self._recv()
            if kind != "ready":
                raise UserError(payload)
            self.info = payload
            return payload
        except UserError as exc:
            self.error = str(exc)
            raise
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until `load` has finished; raises what it raised."""
        self._ready.wait(timeout)
        if self.error:
            raise UserError(self.error)
        if self.info is None:
            raise ModelGone("the model is not loaded")

    def ask(self, text: str, *, adapter: bool, cancelled: Callable[[], bool] = lambda: False,
            dropped: Callable[[int], None] = lambda turns: None, **kwargs: Any) -> Iterator[str]:
        """The answer piece by piece. One answer at a time: a second caller waits for the first.

        `cancelled()` is polled between pieces; once it says so, the rest of this answer is dropped. `dropped(n)`:
        the n oldest turns of the history (kwargs) were left out, before the first piece.
        """
        self.wait_ready()
        conn = self._pipe()
        with self._asking:
            conn.send(("ask", text, adapter, kwargs))
            told = False
            while True:
                kind, payload = self._recv()
                if kind == "piece":
                    if cancelled():
                        if not told:
                            conn.send(("cancel",))
                            told = True
                        continue
                    try:
                        yield payload
                    except GeneratorExit:  # the caller stopped reading: let the rest go by
                        conn.send(("cancel",))
                        while self._recv()[0] == "piece":
                            pass
                        raise
                elif kind == "dropped":
                    dropped(payload)
                elif kind == "done":
                    return
                else:
                    raise UserError(payload)

    def _pipe(self) -> Connection:
        if self._conn is None:
            raise ModelGone("the model process never started")
        return self._conn

    def _recv(self) -> tuple[str, Any]:
        conn = self._pipe()
        try:
            return conn.recv()
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            raise ModelGone("the model process ended" + (f" (exit code {code})" if code is not None else "")
                            + ("" if self._closed else "; it may have run out of memory")) from None

    def close(self) -> None:
        """Tell the helper to quit; it is a daemon, so it also ends with the app."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn is not None:
                self._conn.send(("quit",))
        except (OSError, ValueError):
            pass
        proc = self._proc
        if proc is None or not proc.is_alive():
            return
        if not self._ready.is_set():
            proc.kill()  # still loading: nothing to finish, and `load` is waiting on it in a worker
            return
        # Not joined here (a UI thread must not wait on it); killed if it lingers.
        def kill_if_lingering() -> None:
            if proc.is_alive():
                proc.kill()

        timer = threading.Timer(5.0, kill_if_lingering)
        timer.daemon = True
        timer.start()
