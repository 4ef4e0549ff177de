"""The run directory: the one interface between the trainer and its readers.

The trainer writes status.json (atomically replaced) and appends to
metrics.jsonl (one JSON object per line, flushed as written). Readers (the
monitor, `runs`, `diagnose`) only read; `MetricsTail` reads new records by
byte offset and tolerates a half-written last line.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DataError, quote
from engine.settings import runs_root

STATES = ("starting", "loading", "training", "evaluating", "saving", "done", "failed", "stopped")
FINAL_STATES = ("done", "failed", "stopped")

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
STOP_REQUEST_FILE = "stop.request"


def default_runs_root() -> Path:
    return runs_root()


# ---------------------------------------------------------------- status.json

def write_status(run_dir: str | Path, **fields: Any) -> dict:
    """Merges fields into status.json and replaces the file atomically."""
    path = Path(run_dir) / STATUS_FILE
    status = read_status(run_dir) or {}
    status.update(fields)
    status["updated"] = time.time()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return status


def read_status(run_dir: str | Path) -> dict | None:
    """status.json; None when it is absent or corrupt (the monitor shows `unknown`, the trainer rewrites it)."""
    try:
        return load_status(run_dir)
    except DataError:
        return None


# Fields of status.json that readers compute with, and the type each must have (None is always allowed).
_STATUS_TYPES = {"state": str, "step": int, "max_steps": int, "pid": int, "updated": float}


def load_status(run_dir: str | Path) -> dict | None:
    """status.json, None when absent; a DataError naming the file (and key) when it is not a readable status.

    A corrupt one must cost its own run only: `runs`, the monitor and `diagnose` skip it with a warning.
    """
    path = Path(run_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno})") from None
    except (OSError, ValueError, RecursionError) as e:   # ValueError: not UTF-8, a number of 5,000 digits
        raise DataError(f"{path}: unreadable ({type(e).__name__})") from None
    if not isinstance(status, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(status).__name__}")
    for key, kind in _STATUS_TYPES.items():
        value = status.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float) if kind is float else kind) and not isinstance(value, bool)
        # A pid of 0 or -1 would signal a whole process group, and os.kill overflows past 2**31.
        if ok and kind is not str and not (0 <= value < 2**31 if key != "updated" else math.isfinite(value)):
            ok = False
        if not ok:
            raise DataError(f"{path}: {key}: {quote(value)} is not valid")
    return status


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a live trainer.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def effective_state(status: dict | None) -> str:
    """The state to show: a non-final state whose process is gone is `lost`."""
    if not status:
        return "unknown"
    state = status.get("state", "unknown")
    if state not in FINAL_STATES and not pid_alive(status.get("pid")):
        return "lost"
    return state


# ---------------------------------------------------------------- metrics.jsonl

class MetricsWriter:
    """Appends records to metrics.jsonl; each line is flushed as it is written."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, kind: str, step: int, **fields: Any) -> dict:
        record = {"kind": kind, "step": int(step), "time": time.time(), **fields}
        # json writes NaN/Infinity as bare words, as DESIGN.md allows; readers accept them.
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        return record

    def close(self) -> None:
        self._f.close()


class MetricsTail:
    """Reads metrics.jsonl incrementally by byte offset.

    `read_new()` returns only records completed since the last call; a
    half-written last line stays in the buffer until its newline arrives.
    A line that is not valid JSON (disk full, a crash mid-write followed by
    more writes) is skipped and counted rather than stopping the reader.
    """

    def __init__(self, path: str | Path):
        p = Path(path)
        self.path = p / METRICS_FILE if p.is_dir() else p
        self.offset = 0
        self.bad_lines = 0
        self._partial = b""

    def pending_bytes(self) -> int:
        """Bytes of a last line still waiting for its newline."""
        return len(self._partial)

    def pending_is_record_start(self) -> bool:
        return self._partial.lstrip().startswith(b"{")

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # truncated or replaced: start over
                    self.offset, self._partial = 0, b""
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.bad_lines += 1
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


def read_metrics(run_dir: str | Path) -> list[dict]:
    return MetricsTail(run_dir).read_new()


def tail_lines(path: str | Path, n: int = 20, block: int = 8192) -> list[str]:
    """The last n lines of a text file, reading only its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= n:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    # A progress bar redraws with \r: show its last state only.
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return lines[-n:]


# ---------------------------------------------------------------- run summaries

@dataclass
class RunSummary:
    path: Path
    state: str
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eval_loss: float | None = None
    updated: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def age_s(self) -> float | None:
        return None if self.updated is None else max(0.0, time.time() - self.updated)


def _last_losses(run_dir: Path, scan_bytes: int = 65536) -> tuple[float | None, float | None]:
    """Last train and eval loss from the end of metrics.jsonl, without reading it all."""
    loss = eval_loss = None
    for line in reversed(tail_lines(run_dir / METRICS_FILE, n=400, block=scan_bytes)):
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(rec, dict):
            continue
        if loss is None and rec.get("kind") == "train" and "loss" in rec:
            loss = rec["loss"]
        if eval_loss is None and rec.get("kind") == "eval" and "eval_loss" in rec:
            eval_loss = rec["eval_loss"]
        if loss is not None and eval_loss is not None:
            break
    return loss, eval_loss


def summarize(run_dir: str | Path) -> RunSummary:
    """The run as `runs` lists it; a DataError when its status.json is corrupt."""
    p = Path(run_dir)
    status = load_status(p)
    loss, eval_loss = _last_losses(p)
    if status is None:
        mtime = (p / METRICS_FILE).stat().st_mtime if (p / METRICS_FILE).exists() else None
        return RunSummary(path=p, state="unknown", loss=loss, eval_loss=eval_loss, updated=mtime)
    return RunSummary(path=p, state=effective_state(status), step=int(status.get("step") or 0),
                      max_steps=int(status.get("max_steps") or 0), loss=loss, eval_loss=eval_loss,
                      updated=status.get("updated"), error=status.get("error"), extra=status)


def is_run_dir(p: Path) -> bool:
    return (p / STATUS_FILE).exists() or (p / METRICS_FILE).exists()


def list_runs(root: str | Path | None = None, problems: list[str] | None = None) -> list[RunSummary]:
    """Runs directly under the runs root (and one level of sweep directories), newest first.

    A run whose status.json is corrupt is left out, and why is appended to `problems` when given.
    """
    base = Path(root) if root else default_runs_root()
    if not base.is_dir():
        return []
    found: list[Path] = []
    for child in base.iterdir():
        if not child.is_dir():
            continue
        if is_run_dir(child):
            found.append(child)
        else:
            found += [g for g in child.iterdir() if g.is_dir() and is_run_dir(g)]
    runs = []
    for p in found:
        try:
            runs.append(summarize(p))
        except DataError as e:
            if problems is not None:
                problems.append(f"{e.message}; skipped")
    runs.sort(key=lambda r: r.updated or 0, reverse=True)
    return runs


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
