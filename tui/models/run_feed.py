"""Everything the monitor reads from a run directory and the machine, one poll at a time.

Runs in the monitor's worker thread and knows nothing of Textual: each
`poll()` returns a FeedUpdate holding only what changed (new metric records,
a new status, new log lines, fresh samples), which the screen posts as a
message. Files are read by offset and only when their size or mtime moved,
so watching an idle or finished run costs a few stat() calls a second.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import gpu, system
from engine.errors import DataError
from engine.eta import Schedule, read_run_config, run_schedule
from engine.rundir import (LOG_FILE, STATUS_FILE, MetricsTail, NotAFile, StatusNotRead, effective_state,
                           last_checkpoint, load_status, open_regular, planned_steps, safe_record, safe_text)
from tui.models.run_history import Record


@dataclass
class FeedUpdate:
    """What one poll found new; every field left at its default means "unchanged"."""
    records: list[Record] = field(default_factory=list)
    status: Record | None = None
    status_error: str | None = None   # with a new status: why status.json is unreadable ({} then), or None
    max_steps: int = 0                # with a new status: the planned step count (the checkpoint's if status lacks it)
    schedule: Schedule | None = None  # with a new status: its evaluations and saves (engine.eta), for the ETA
    state: str | None = None
    log_lines: list[str] | None = None
    log_reset: bool = False
    machine: system.MachineSample | None = None
    process: system.ProcessSample | None = None
    gpus: tuple[str, str, list[gpu.GpuSample]] | None = None  # (gpu_state, its reason, one sample per GPU)
    more: bool = False          # a large metrics file is still being read: poll again at once

    def __bool__(self) -> bool:
        return bool(self.records or self.status is not None or self.state is not None or self.log_lines
                    or self.log_reset or self.machine is not None or self.gpus is not None)


class LogFollower:
    """Follows train.log by byte offset; the first read shows only its tail.

    A progress bar that redraws with carriage returns keeps its last state
    only, and a line still being written waits for its newline, so the log
    widget never shows half a line.
    """

    def __init__(self, path: Path, first_bytes: int = 64 * 1024, max_partial: int = 16 * 1024):
        self.path = path
        self.first_bytes = first_bytes
        self.max_partial = max_partial
        self.offset: int | None = None
        self._partial = b""
        self._sig: tuple[int, int] | None = None

    def read_new(self) -> tuple[list[str], bool]:
        """(new complete lines, whether they replace everything shown so far)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False
        sig = (st.st_size, st.st_mtime_ns)
        if sig == self._sig:
            return [], False
        try:  # a train.log that is a named pipe or a folder (a run directory from elsewhere) shows no lines
            f = open_regular(self.path)
        except (FileNotFoundError, NotAFile):
            self._sig = sig
            return [], False
        # Recorded once it opens: one unreadable now (mode 000, PermissionError to the caller) is read when it can be,
        # though its size and mtime stay the same.
        self._sig = sig
        offset = self.offset
        reset = offset is None or st.st_size < offset
        if offset is None or reset:
            offset, self._partial = max(0, st.st_size - self.first_bytes), b""
        skip_first = reset and offset > 0
        with f:
            f.seek(offset)
            # Bounded: after a long disconnect only the last first_bytes matter.
            if st.st_size - offset > self.first_bytes * 4:
                f.seek(st.st_size - self.first_bytes)
                self._partial, skip_first = b"", True
            chunk = f.read()
            self.offset = f.tell()
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > self.max_partial:   # a \r-only progress bar that never ends its line
            self._partial = self._partial.rsplit(b"\r", 1)[-1][-self.max_partial:]
        if skip_first and parts:
            parts = parts[1:]
        lines = [p.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1] for p in parts]
        return lines, reset


class RunFeed:
    def __init__(self, run_dir: str | Path, *, sample_every: float = 2.0, chunk_bytes: int = 4 << 20,
                 sample_gpus: bool = True):
        self.run_dir = Path(run_dir)
        self.metrics = MetricsTail(self.run_dir)
        self.log = LogFollower(self.run_dir / LOG_FILE)
        self.sample_every = sample_every
        self.chunk_bytes = chunk_bytes
        self.sample_gpus = sample_gpus
        self.procs = system.ProcessSampler()
        self.status: Record | None = None
        self.state: str | None = None
        self._status_sig: tuple[int, int] | None = None
        self._status_not_read = False   # status.json could not be opened (mode 000): tried again each poll
        self._config: dict | None = None   # config.yaml as read once, for a status.json without a schedule
        # As last read, sent again beside the status whenever only the error changes (the monitor copies all three).
        self._max_steps = 0
        self._schedule: Schedule | None = None
        self._status_error: str | None = None   # why status.json, as last read, is unreadable
        self._error_sent: str | None = None     # the error the monitor was last told
        self._next_sample = 0.0

    def poll(self, now: float | None = None) -> FeedUpdate:
        now = time.monotonic() if now is None else now
        up = FeedUpdate()
        # Everything read from the run directory is shown with its control characters escaped: a sample that
        # prints ESC ] 0 ; TITLE BEL must read as text, not retitle (or worse) the user's terminal.
        # A run folder or file this user may not read (another user's, mode 000) is said where the monitor says why
        # status.json is unreadable; the rest is read as ever (an error raised here ended the app).
        errors: list[OSError] = []
        try:
            self._poll_status(up)
        except OSError as e:
            errors.append(e)
        try:
            up.records = [safe_record(r) for r in self.metrics.read_new(self.chunk_bytes)]
            up.more = bool(up.records) and self._metrics_pending()
        except OSError as e:
            errors.append(e)
        try:
            lines, reset = self.log.read_new()
            if lines or reset:
                up.log_lines, up.log_reset = [safe_text(ln) for ln in lines], reset
        except OSError as e:
            errors.append(e)
        self._say_error(up, self._status_error or (self._unreadable(errors[0]) if errors else None))
        if now >= self._next_sample:
            self._next_sample = now + self.sample_every
            up.machine = system.machine_sample()
            up.process = self.procs.sample((self.status or {}).get("pid"))
            if self.sample_gpus:
                state, reason = gpu.gpu_state()
                up.gpus = (state, reason, gpu.sample_gpus())
        return up

    def _unreadable(self, e: OSError) -> str:
        name = Path(e.filename).name if e.filename else self.run_dir.name
        return safe_text(f"{name} unreadable: {e.strerror or e}")

    def _say_error(self, up: FeedUpdate, error: str | None) -> None:
        """The error goes with a new status; else, only when it changed (None once every read succeeds again), with
        the status, step total and schedule as last read: the monitor copies all three, and redraws."""
        if up.status is None and error == self._error_sent:
            return
        if up.status is None:
            up.status, up.max_steps, up.schedule = self.status or {}, self._max_steps, self._schedule
        up.status_error = self._error_sent = error

    def _metrics_pending(self) -> bool:
        try:
            return os.path.getsize(self.metrics.path) > self.metrics.offset
        except OSError:
            return False

    def _read_status(self, up: FeedUpdate) -> None:
        was_not_read = self._status_not_read
        try:
            status, error = load_status(self.run_dir), None
            self._status_not_read = False
        except DataError as e:
            # The stale last good status is dropped: its pid and start would show a corrupt run as live.
            reason = e.message.removeprefix(f"{self.run_dir / STATUS_FILE}: ")
            status, error = None, safe_text(f"{STATUS_FILE} unreadable: {reason}")
            self._status_not_read = isinstance(e, StatusNotRead)
            if was_not_read and self._status_not_read and error == self._status_error:
                return   # still unreadable, as said: nothing new
        self.status = safe_record(status)
        self._status_error = error
        self._max_steps = planned_steps(self.status, last_checkpoint(self.run_dir)) or 0
        if self._config is None and not (self.status or {}).get("schedule"):  # a run from before the field
            self._config = read_run_config(self.run_dir)
        self._schedule = run_schedule(self.run_dir, self.status, self._config or {})
        up.status, up.max_steps, up.schedule = self.status or {}, self._max_steps, self._schedule

    def _poll_status(self, up: FeedUpdate) -> None:
        try:
            st = os.stat(self.run_dir / STATUS_FILE)
            sig = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            sig = None
        if sig != self._status_sig or self._status_not_read:
            # Read once per change of size or mtime. The trainer replaces status.json atomically (a temp file, then
            # a rename), so a reader never sees half of one: a file that does not parse is corrupt, said at once,
            # and read again only when the trainer writes a new one. One that could not be opened (mode 000) is
            # tried again each poll until it opens: a chmod changes neither its size nor its mtime.
            self._status_sig = sig
            self._read_status(up)
        # Liveness can change with no write to status.json (the trainer was
        # killed), so the effective state is recomputed on every poll.
        state = effective_state(self.status, self.run_dir)
        if state != self.state:
            self.state = up.state = state
