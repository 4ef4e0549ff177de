"""The wizard's tokenizing of the data, in one long-lived helper process (no Textual).

A thread is not enough: importing transformers and loading a tokenizer hold
the GIL for seconds, and the UI froze for them (keys took 2 s to echo at
start-up). In its own process the tokenizer stays loaded between calls and
the UI thread only waits on a pipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from engine.config import Config

if TYPE_CHECKING:  # engine.data loads in the helper, and here only on first use
    from engine.data.types import DataReport, TokenizedExample

_pool: Any = None
_ended: Any = None              # the helper the app ended on quitting (end_if_busy): its callers get no second one
_waiting: set[Any] = set()      # the calls being waited for
T = TypeVar("T")


def _data_pool() -> Any:
    """The helper process, started on first use and shut down when the app exits."""
    global _pool
    if _pool is None:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from tui.helper_process import quiet_child, real_stderr
        with real_stderr():
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=quiet_child)
            # The pool's threads (its manager, the call queue's feeder) start at its first call, and a thread keeps
            # the sys.stderr of its start for good: under Textual that is the app's print capture, which holds the
            # app, so the first app to inspect data lived as long as the pool. One call here starts them all.
            _pool.submit(int).result()
        atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
    return _pool


def inspect_data(cfg: Config, model: str) -> tuple[DataReport, list[TokenizedExample]]:
    """The tokenized report and examples: slow the first time (the tokenizer; maybe the hub)."""
    # The trainer's own preparation of this config (train_on, validation split, max_examples, truncation).
    from engine.data import inspect_config  # light: the heavy imports happen inside, in the helper
    return answer(inspect_config, cfg, model=model)


def answer(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in the helper, waited for here (a worker thread)."""
    from concurrent.futures.process import BrokenProcessPool

    global _pool
    pool = _data_pool()
    try:
        return _wait(pool, fn, *args, **kwargs)
    except BrokenProcessPool:
        if pool is _ended:  # the app ended it on quitting: nobody is waiting for the answer
            raise
        _pool = None        # the helper died (out of memory, killed): start a fresh one once
        return _wait(_data_pool(), fn, *args, **kwargs)


def _wait(pool: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The call's answer; BrokenProcessPool once the app ended the helper (end_if_busy), whether or not the pool
    says so: a helper killed while writing its answer leaves the pool's manager thread reading the rest of the
    message for good (CPython's ProcessPoolExecutor), and the future unresolved. The suite hung so, at a wizard
    test's end: asyncio joined the worker thread waiting here."""
    from concurrent.futures import TimeoutError as NotYet
    from concurrent.futures.process import BrokenProcessPool

    future = pool.submit(fn, *args, **kwargs)
    _waiting.add(future)
    try:
        while True:
            try:
                return future.result(timeout=0.2)
            except NotYet:
                if pool is _ended:
                    raise BrokenProcessPool("the data helper was ended") from None
    finally:
        _waiting.discard(future)


def busy() -> bool:
    """Whether a call is running in the helper (or queued for it)."""
    return any(not f.done() for f in list(_waiting))


def end_if_busy() -> None:
    """The app is quitting: a helper still working is ended, not waited for.

    Its call may take minutes (a tokenizer fetched from a hub out of reach retries); Python joins the app's worker
    threads when it exits, and the one waiting here held ctrl+q on a blank terminal until the call ended (85 s).
    An idle helper stays for the next app of this process (the tokenizer stays loaded)."""
    global _pool, _ended
    pool = _pool
    if pool is None or not busy():
        return
    _pool, _ended = None, pool
    terminate = getattr(pool, "terminate_workers", None)   # Python 3.14; before it, the processes themselves
    if terminate is not None:
        terminate()
    else:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
