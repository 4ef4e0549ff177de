"""The wizard's tokenizing of the data, in one long-lived helper process (no Textual).

A thread is not enough: importing transformers and loading a tokenizer hold
the GIL for seconds, and the UI froze for them (keys took 2 s to echo at
start-up). In its own process the tokenizer stays loaded between calls and
the UI thread only waits on a pipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.config import Config

if TYPE_CHECKING:  # engine.data loads in the helper, and here only on first use
    from engine.data.types import DataReport, TokenizedExample

_pool: Any = None


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
    from concurrent.futures.process import BrokenProcessPool

    # The trainer's own preparation of this config (train_on, validation split, max_examples, truncation).
    from engine.data import inspect_config  # light: the heavy imports happen inside, in the helper
    try:
        return _data_pool().submit(inspect_config, cfg, model=model).result()
    except BrokenProcessPool:  # the helper died (out of memory, killed): start a fresh one once
        global _pool
        _pool = None
        return _data_pool().submit(inspect_config, cfg, model=model).result()
