"""The run directory: the one interface between the trainer and its readers.

The trainer writes status.json (atomically replaced) and appends to
metrics.jsonl (one JSON object per line, flushed as written). Readers (the
monitor, `runs`, `diagnose`) only read; `MetricsTail` reads new records by
byte offset and tolerates a half-written last line.

Ownership: one trainer per run directory, held by an exclusive flock on
`trainer.lock` for the trainer's lifetime (`RunLock`); whoever signals the
trainer first checks that the pid is this run's trainer (`trainer_pid`: alive, and holding the run's lock).
Everything shown from a run directory goes through `safe_text`: a run directory
may come from someone else, and its text must not drive the terminal.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from engine.errors import DataError, UserError, quote, shell_word, type_word
from engine.json_file import READ_ERRORS, read_json, read_table
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
LOCK_FILE = "trainer.lock"
# Held by each writer of status.json while it reads, merges and replaces it (`write_status`); never by a reader.
STATUS_LOCK_FILE = "status.lock"
# Freed when the disk fills, so that the trainer can still say so in status.json.
SPACE_RESERVE_FILE = "space.reserve"
SPACE_RESERVE_BYTES = 256 * 1024
# The files lorapilot keeps at the top of a run directory: a folder under one of these names is refused like a pipe.
RUN_FILES = frozenset({CONFIG_FILE, STATUS_FILE, METRICS_FILE, LOG_FILE, STOP_REQUEST_FILE, LOCK_FILE,
                       STATUS_LOCK_FILE, SPACE_RESERVE_FILE, STATUS_FILE + ".tmp"})
# The file a checkpoint is complete with: the Trainer writes its state file last.
CHECKPOINT_STATE_FILE = "trainer_state.json"
# Written beside it by lorapilot: the config and data fingerprint the checkpoint was trained with.
CHECKPOINT_RUN_FILE = "lorapilot_run.json"


# ---------------------------------------------------------------- text from a run directory

# C0 controls but tab and newline, DEL, and the C1 controls (0x9b alone starts an escape sequence on many
# terminals): shown as \xNN so a sample that prints ESC ] 0 ; TITLE BEL reads as text, not a command.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f, *range(0x80, 0xa0)] if c not in (0x09, 0x0a)}
_CONTROL_ONE_LINE = {**_CONTROL, 0x0a: "\\n"}


def safe_text(value: Any, *, one_line: bool = False) -> str:
    """Text read from a run directory, fit to show: control characters escaped (newlines too with one_line)."""
    return str(value).translate(_CONTROL_ONE_LINE if one_line else _CONTROL)


def safe_record(record: Any) -> Any:
    """A record (or status) with every string in it passed through safe_text; numbers and structure kept."""
    if isinstance(record, str):
        return safe_text(record)
    if isinstance(record, dict):
        return {safe_text(k): safe_record(v) for k, v in record.items()}
    if isinstance(record, list):
        return [safe_record(v) for v in record]
    return record


def default_runs_root() -> Path:
    return runs_root()


# ---------------------------------------------------------------- files that are not files

class NotAFile(OSError):
    """A name in a run directory that is something other than a regular file: a named pipe (opening it waits for a
    writer, forever), a device (/dev/zero never ends), a socket or a folder. `what` says which, in words."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(errno.EINVAL, f"not a regular file ({what})", str(path))
        self.what = what


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ("a named pipe"); "a regular file" for one."""
    for test, what in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return what
    return "not a file"


def open_regular(path: str | Path):
    """A run directory's file opened for reading in binary, through a link too; FileNotFoundError when absent,
    NotAFile when it is anything but a regular file. O_NONBLOCK: opening a named pipe returns at once instead of
    waiting for a writer, and the check after the open cannot be raced by swapping the name."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(path, file_kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------- status.json

def write_status(run_dir: str | Path, **fields: Any) -> dict:
    """Merges fields into status.json and replaces the file atomically.

    Read, merged and replaced under `status_lock`: the launcher records the trainer's pid while the trainer, just
    started, writes its first status, and each wrote back the file as it had read it, without the other's fields
    (a run without its `pid` shows as lost and cannot be stopped; one without `launched` loses its start-up from its elapsed time).
    On a full disk the space reserve is given up first, so that the run can still record why it failed.
    """
    path = Path(run_dir) / STATUS_FILE
    with status_lock(run_dir):
        status = read_status(run_dir) or {}
        status.update(fields)
        status["updated"] = time.time()
        text = json.dumps(status, indent=1).encode("utf-8")
        try:
            replace_file(path, text)
        except OSError as e:
            if e.errno != errno.ENOSPC or not release_space_reserve(run_dir):
                raise
            replace_file(path, text)
    return status


@contextmanager
def status_lock(run_dir: str | Path, name: str = STATUS_LOCK_FILE) -> Iterator[None]:
    """An exclusive flock on a side file (status.lock) for one read-modify-write of status.json (`name`: another
    record's lock). Not trainer.lock: the trainer holds that one for its whole life. The side file, not
    status.json, because each write replaces status.json by another file. Blocks until the other writer is done;
    released when the holder dies. O_NOFOLLOW: a link planted there is refused, not followed."""
    import fcntl

    path = Path(run_dir) / name
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:  # a new lock file on a full disk: the reserve makes room for the run's last status
        if e.errno != errno.ENOSPC or not release_space_reserve(run_dir):
            raise
        fd = os.open(path, flags, 0o644)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(path, file_kind(mode))
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_TEMP_NUMBERS = itertools.count()


def replace_file(path: Path, data: bytes) -> None:
    """Replaces path with data through a temporary file of this writer's own: two writers of one file (status.json,
    sweep.json) that shared a temporary name replaced it under each other, and the second rename found no file;
    one planted there (a link to the user's file) was written through. O_EXCL
    makes a new file (never one planted there, nor a link); a failed write leaves none behind. A file replaced keeps
    its permission bits (a config the user keeps private stays so)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    while True:
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{next(_TEMP_NUMBERS)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            break
        except FileExistsError:
            continue
    try:
        if mode is not None:
            os.fchmod(fd, mode)   # not under the umask, as the mode given to open is
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_status(run_dir: str | Path) -> dict | None:
    """status.json; None when it is absent or corrupt (the monitor shows `unknown`, the trainer rewrites it)."""
    try:
        return load_status(run_dir)
    except DataError:
        return None


# What to do about a corrupt status.json, for every verb that refuses one.
_STATUS_FIX = f"a running trainer rewrites {STATUS_FILE}; an ended run's can be deleted"

# Fields of status.json that readers compute with, and the type each must have (None is always allowed).
_STATUS_TYPES = {"state": str, "step": int, "max_steps": int, "pid": int, "updated": float}


class StatusNotRead(DataError):
    """status.json that could not be read for want of access (Permission denied: another user's, mode 000) or an I/O
    error: the file may be sound, and reads once the fault goes, though its size and mtime stay the same."""


def load_status(run_dir: str | Path) -> dict | None:
    """status.json, None when absent; a DataError naming the file (and key) when it is not a readable status.

    A corrupt one must cost its own run only: `runs`, the monitor and `diagnose` skip it with a warning.
    """
    path = Path(run_dir) / STATUS_FILE
    try:
        with open_regular(path) as f:
            status = json.loads(f.read())
    except FileNotFoundError:
        return None
    except NotAFile as e:
        raise DataError(f"{path}: {e.strerror}", fix=_STATUS_FIX) from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno})", fix=_STATUS_FIX) from None
    except READ_ERRORS as e:   # ValueError: not UTF-8, a number of 5,000 digits
        if isinstance(e, OSError) and e.strerror:   # another user's file (Permission denied), an I/O error
            raise StatusNotRead(f"{path}: {e.strerror}", fix="read it as the user who trained the run") from None
        raise DataError(f"{path}: unreadable ({type(e).__name__})", fix=_STATUS_FIX) from None
    if not isinstance(status, dict):
        raise DataError(f"{path}: expected a JSON object, got {type_word(status)}", fix=_STATUS_FIX)
    for key, kind in _STATUS_TYPES.items():
        value = status.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float) if kind is float else kind) and not isinstance(value, bool)
        # A pid of 0 or -1 would signal a whole process group, and os.kill overflows past 2**31.
        if ok and kind is not str and not (0 <= value < 2**31 if key != "updated" else finite(value)):
            ok = False
        if not ok:
            raise DataError(f"{path}: {key}: {quote(value)} is not valid", fix=_STATUS_FIX)
    return status


def keep_space_reserve(run_dir: str | Path) -> None:
    """A small file the trainer can delete when the disk fills, to write its last status."""
    path = Path(run_dir) / SPACE_RESERVE_FILE
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * SPACE_RESERVE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a failed flush names no file: the run's error would name its checkpoints instead
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def release_space_reserve(run_dir: str | Path) -> bool:
    try:
        (Path(run_dir) / SPACE_RESERVE_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def disk_full_path(exc: BaseException, default: str | Path) -> str | None:
    """"the path" when exc (or what caused it) is a full disk, else None.

    safetensors and torch.save report ENOSPC in their own exception types, with the OS's words inside.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return str(e.filename or default)
        if "no space left on device" in str(e).lower():
            return str(getattr(e, "filename", None) or default)
        # torch.save's zip writer says a short write only so ("[enforce fail at inline_container.cc:672] . unexpected
        # pos 580480 vs 580372"): a full disk where the disk has no room left
        if "unexpected pos" in str(e) and no_room(default):
            return str(default)
        e = e.__cause__ or e.__context__
    return None


def no_room(path: str | Path) -> bool:
    """The disk holding path (or its nearest folder that exists) has less than the space reserve's size free."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free < SPACE_RESERVE_BYTES
    except OSError:
        return False


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


def process_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22): a pid with another start
    time is another process that reused the number. None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


# The module the trainer runs as, followed by its run directory on its command line (engine.train.distributed).
TRAINER_MODULE = "engine.train.run"


def _recorded_trainer(run_dir: str | Path, status: dict | None) -> int | None:
    """status.json's pid if that process is the one status.json recorded, and alive; else None.

    A pid from status.json may belong to anything once the trainer is gone (pids are reused, and pid 1 is a
    container's init): it is the recorded process if it started when status.json says (`pid_start`), or
    its command line runs the trainer module on this run directory (`-m engine.train.run RUN_DIR`, also under
    torchrun): a `lorapilot monitor RUN_DIR` or an `rsync -a RUN_DIR ...` names the directory too.
    """
    pid = (status or {}).get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 < pid < 2**31 or not pid_alive(pid):
        return None
    recorded = (status or {}).get("pid_start")
    started = process_start(pid)
    if isinstance(recorded, int) and started is not None:
        return pid if started == recorded else None
    args = _cmdline(pid)
    if args is None:  # no /proc (not Linux): the liveness check is all there is
        return pid if started is None else None
    wanted = str(Path(run_dir).resolve())
    return pid if any(a == TRAINER_MODULE and b.rstrip("/") == wanted for a, b in zip(args, args[1:])) else None


def trainer_pid(run_dir: str | Path, status: dict | None) -> int | None:
    """status.json's pid if that process is this run's trainer now, else None: the process status.json recorded
    (`_recorded_trainer`), holding this run's trainer.lock where /proc can tell. Every verb that signals or waits
    for the trainer, and every display of a run's state, asks this.

    A copy of a live run's directory (cp -r) holds the original's status.json, its trainer's pid and start time and
    all: that process trains the original, whose lock is another file, and nothing trains the copy (`copy_of`)."""
    pid = _recorded_trainer(run_dir, status)
    return pid if pid is not None and holds_run_lock(pid, run_dir) is not False else None


def _held_run_locks(pid: int) -> list[Path] | None:
    """The run lock files (trainer.lock) the process has open, as a trainer (or torchrun's agent) keeps its run's for
    its whole life, deleted or not; None where /proc cannot tell (another user's process, not Linux)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    held = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)")
        except OSError:  # closed since the listing
            continue
        if Path(target).name == LOCK_FILE:
            held.append(Path(target))
    return held


def holds_run_lock(pid: int, run_dir: str | Path) -> bool | None:
    """Whether the process has this run directory's trainer.lock open; None where /proc cannot tell."""
    held = _held_run_locks(pid)
    return None if held is None else Path(run_dir).resolve() / LOCK_FILE in held


def copy_of(run_dir: str | Path, status: dict | None) -> Path | None:
    """The run directory this one was copied from while it trained (cp -r runs/a runs/a-copy), which its trainer
    still trains: the process status.json recorded lives but holds another run's lock, not this one's. None for
    anything else (a trainer of this run, a dead one, or one /proc cannot tell about)."""
    pid = _recorded_trainer(run_dir, status)
    held = _held_run_locks(pid) if pid is not None else None
    if not held or Path(run_dir).resolve() / LOCK_FILE in held:
        return None
    return held[0].parent


def effective_state(status: dict | None, run_dir: str | Path | None = None) -> str:
    """The state to show: a non-final state whose process is gone is `lost`.

    With run_dir, a pid that now belongs to another process, or to the trainer of another run (the original of a
    copied run directory: `copy_of` says which), counts as gone: nothing will write this run again.
    """
    if not status:
        return "unknown"
    state = status.get("state", "unknown")
    if state in FINAL_STATES:
        return state
    alive = trainer_pid(run_dir, status) is not None if run_dir is not None else pid_alive(status.get("pid"))
    return state if alive else "lost"


# ---------------------------------------------------------------- the run lock

class RunLock:
    """The exclusive lock one trainer holds on its run directory for its whole life.

    flock, so the kernel releases it when the holder dies (kill -9 included) and no stale lock survives.
    The launcher takes it before writing anything and hands the open file to the trainer it spawns (an
    inherited descriptor shares the lock); a second launcher or trainer is refused.
    """

    ENV = "LORAPILOT_RUN_LOCK_FD"
    FILE = LOCK_FILE   # a subclass locks another kind of folder (the sweep's) with its own file and words
    HELD = "another trainer is using this run directory"
    HELD_FIX = "wait for it, or stop it first: lorapilot stop {dir}"

    def __init__(self, run_dir: str | Path, fd: int):
        self.run_dir = Path(run_dir)
        self.fd = fd

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunLock:
        """The lock, or a UserError: another trainer holds it, or a file in the directory is a symbolic link."""
        import fcntl

        from engine.errors import UserError

        rd = Path(run_dir)
        refuse_links(rd)
        try:  # O_NOFOLLOW: a lock file made a link after the check above is refused, not truncated
            fd = os.open(rd / cls.FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise UserError(f"{rd / cls.FILE}: is a symbolic link; lorapilot writes no file through one",
                            fix="remove the link, or copy the run directory without links") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = lock_holder(rd, cls.FILE)
            raise UserError(f"{rd}: {cls.HELD}" + (f" (pid {holder})" if holder else ""),
                            fix=cls.HELD_FIX.format(dir=shell_word(rd))) from None
        return cls(rd, fd)

    @classmethod
    def inherited(cls, run_dir: str | Path) -> RunLock | None:
        """The lock the launcher passed down, if this process was given one for this run directory."""
        raw = os.environ.pop(cls.ENV, "")
        if not raw.isdigit():
            return None
        fd = int(raw)
        try:  # the descriptor must be this run directory's lock file, not whatever has that number here
            held, wanted = os.fstat(fd), os.stat(Path(run_dir) / LOCK_FILE)
        except OSError:
            return None
        return cls(run_dir, fd) if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino) else None

    def record_holder(self, pid: int) -> None:
        """The holder's pid in the lock file, for the refusal's words only (the flock is the lock); written after the
        trainer or driver started, so a full disk here is no failure of the launch: the refusal then names no pid."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{pid}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# Why a run directory holds no link, as refuse_links says it.
WRITTEN_IN_PLACE = "a run directory's files are written in place, and through a link the file it points to would be " \
                   "changed instead"


def refuse_links(run_dir: str | Path, *, why: str = WRITTEN_IN_PLACE, itself: bool = False,
                 fix: str = "remove the link, or copy the run directory without links (cp -rL)") -> None:
    """A UserError naming the first symbolic link, or other name that is no regular file or folder, inside a run
    directory, which is about to be written to (or, with `why` saying so, copied from; `itself`: the folder named
    may not be a link either).

    A run directory may come from anyone: a trainer appending to a metrics.jsonl, truncating a trainer.lock or
    saving a checkpoint that is a link to another file or folder would overwrite the user's file there; one that is
    a named pipe would hang the trainer opening it. lorapilot itself makes neither in a run directory (the directory
    itself may be a link).
    """
    from engine.errors import UserError

    def link(path: Path) -> UserError:
        return UserError(safe_text(f"{path}: is a symbolic link (to {os.readlink(path)}); {why}", one_line=True),
                         fix=fix)

    if itself and Path(run_dir).is_symlink():
        raise link(Path(run_dir))
    for parent, dirs, files in os.walk(run_dir):
        for name in sorted(dirs + files):
            path = Path(parent, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise link(path)
            if stat.S_ISREG(mode) or stat.S_ISDIR(mode) and not (parent == str(run_dir) and name in RUN_FILES):
                continue
            raise UserError(safe_text(f"{path}: is {file_kind(mode)}, not a regular file; lorapilot keeps only files "
                                      "and folders in a run directory, and would hang or fail on this one",
                                      one_line=True),
                            fix=safe_text(f"remove it ({path})", one_line=True))


def create_request_file(path: str | Path) -> None:
    """Creates a request file (stop.request) that a trainer or sweep driver polls for, through no link.

    The folder may come from anyone: a stop.request made a link to the user's file would create or touch that
    file instead. O_NOFOLLOW refuses a link (dangling ones included) at the moment of opening, so no check can be
    raced; O_NONBLOCK keeps a FIFO planted there from hanging the verb. A UserError names the path.
    """
    from engine.errors import UserError

    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(safe_text(f"{path}: is a symbolic link (to {os.readlink(path)}); lorapilot writes no "
                                      "file through one", one_line=True),
                            fix=f"remove the link ({path}) and ask again") from None
        raise UserError(safe_text(f"{path}: cannot be created ({e.strerror})", one_line=True),
                        fix="remove what is there under that name and ask again") from None


def lock_holder(run_dir: str | Path, name: str = LOCK_FILE) -> int | None:
    try:
        text = (Path(run_dir) / name).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_held(run_dir: str | Path, lock_file: str = LOCK_FILE) -> bool:
    """Whether a trainer holds the run directory's lock now (tested without keeping it); `lock_file`: another
    folder's lock (the sweep driver's)."""
    import fcntl

    path = Path(run_dir) / lock_file
    try:
        f = open_regular(path)
    except (FileNotFoundError, NotAFile):  # a named pipe there is no lock any trainer holds (RunLock refuses it)
        return False
    fd = f.fileno()
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        f.close()
    return False


# ---------------------------------------------------------------- the run directory's place

class RunDirMoved(Exception):
    """The run directory a trainer writes is no longer at its path: renamed, moved or deleted while it trained."""

    def __init__(self, run_dir: Path, now: Path | None):
        self.run_dir, self.now = run_dir, now
        super().__init__(safe_text(f"the run directory {run_dir} was " + (f"moved to {now}" if now else "deleted")
                                   + " while training", one_line=True))


class RunPlace:
    """The run directory as the trainer found it, held open: the trainer writes its files by path, and once the folder
    is renamed or moved (mv runs/a runs/b) those paths name nothing, or a new folder made there. A checkpoint saved
    then would make the old path again (transformers creates its folder) and leave the run split in two: metrics.jsonl
    and train.log, written through open files, in the moved folder, checkpoints and status.json in the new one.
    `check` tells before each write; `where` says where the folder went (Linux's /proc), None when deleted."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)

    def where(self) -> Path | None:
        try:
            target = os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:
            return None
        return None if target.endswith(" (deleted)") or os.stat(self.fd).st_nlink == 0 else Path(target)

    def moved(self) -> RunDirMoved | None:
        try:
            st = os.stat(self.run_dir)
            if (st.st_dev, st.st_ino) == self.ident:
                return None
        except OSError:
            pass
        return RunDirMoved(self.run_dir, self.where())

    def check(self) -> None:
        moved = self.moved()
        if moved is not None:
            raise moved


# ---------------------------------------------------------------- metrics.jsonl

class MetricsWriter:
    """Appends records to metrics.jsonl; each line is flushed as it is written.

    A file that a killed writer left without its final newline gets one first: the next record starts on
    its own line instead of being glued to the torn one (and lost with it).

    The file is named from the run directory held open, and checked before each record (a stat): a metrics.jsonl
    deleted or renamed while the run writes it took every later record with it, silently (they went on into the
    unlinked file); it is opened again at its name, its first record an event saying so. The folder itself moved
    (mv runs/a runs/b) is followed: its metrics.jsonl is the same file there, and nothing is made at the old path.
    """

    REPLACED = "metrics_replaced"

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self._dir = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._f = self._open()
        except BaseException:
            os.close(self._dir)
            raise

    def _open(self):
        """metrics.jsonl opened for appending, never through a link (the launcher refused one in the run directory;
        one made since is refused here): a UserError naming it, for the trainer to record (exit 2)."""
        from engine.sweep.sweepdir import resume_command

        try:
            f = open(METRICS_FILE, "a+b", opener=lambda name, flags: os.open(
                name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self._dir))
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            try:
                to = f" (to {os.readlink(METRICS_FILE, dir_fd=self._dir)})"
            except OSError:
                to = ""
            raise UserError(safe_text(f"{self.path}: is a symbolic link{to}; the run appends its records to "
                                      f"{METRICS_FILE} in place, and through a link would write into the file it "
                                      "points to", one_line=True),
                            fix=safe_text(f"remove the link ({self.path}), then go on with the run: "
                                          f"{resume_command(self.path.parent)}", one_line=True)) from None
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
                f.flush()
        return f

    def _replaced(self) -> str | None:
        """How the file this writer has open stopped being the run's metrics.jsonl (deleted, or moved or replaced),
        or None while it still is."""
        mine = os.fstat(self._f.fileno())
        try:
            there = os.stat(METRICS_FILE, dir_fd=self._dir, follow_symlinks=False)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return None
        except FileNotFoundError:
            pass
        return "deleted" if mine.st_nlink == 0 else "renamed or replaced"

    def _reopen(self, step: int) -> None:
        how = self._replaced()
        if how is None:
            return
        try:
            f = self._open()
        except (OSError, UserError):  # nothing can be made there (a link planted, the disk full): on into the file held
            return
        self._f.close()
        self._f = f
        self._append({"kind": "event", "step": int(step), "time": time.time(), "code": self.REPLACED,
                      "message": f"{METRICS_FILE} was {how} while the run wrote it: the records before this one "
                                 "are not in this file"})

    def _append(self, record: dict) -> None:
        # json writes NaN/Infinity as bare words, as DESIGN.md allows; readers accept them.
        self._f.write((json.dumps(record) + "\n").encode("utf-8"))
        self._f.flush()

    def write(self, kind: str, step: int, **fields: Any) -> dict:
        self._reopen(step)
        record = {"kind": kind, "step": int(step), "time": time.time(), **fields}
        self._append(record)
        return record

    def close(self) -> None:
        self._f.close()
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1


def valid_record(rec: Any) -> bool:
    """The fields every reader relies on (DESIGN.md): a kind and an integer step."""
    return (isinstance(rec, dict) and isinstance(rec.get("kind"), str)
            and isinstance(rec.get("step"), int) and not isinstance(rec.get("step"), bool))


def json_number(value: Any) -> float | None:
    """A value read from JSON as a number (NaN and infinities as Python's json module writes them), or None: absent,
    or no number (true and false, which Python counts as integers; a string; an integer too large for a float, which
    a line edited by hand can hold and which float() and math.isfinite() raise on). The one rule of every reader of
    the files lorapilot writes and of the JSON it reads."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def finite_number(value: Any) -> float | None:
    """json_number, None for NaN and the infinities as well."""
    number = json_number(value)
    return number if number is not None and math.isfinite(number) else None


def finite(value: Any) -> TypeGuard[float]:
    """Whether a value read from JSON is a number that is neither NaN nor an infinity (json_number's rule)."""
    return finite_number(value) is not None


def number_text(value: Any, fmt: str = ".3f") -> str:
    """A number for a table cell: formatted when finite, "nan" for a non-finite one, "-" for none."""
    if finite(value):
        return format(value, fmt)
    return "nan" if json_number(value) is not None else "-"


def loss_text(value: Any) -> str:
    """A loss as every view of a run shows it (the monitor, its chart, the runs lists, train.log and `lorapilot
    train`): four significant digits, their trailing zeros kept, so that one loss reads the same everywhere and a
    column of them lines up (1.200 beside 1.234, not 1.2 here and 1.2000 there; 0.01234 not 0.0123); number_text's
    "nan" and "-" otherwise. Not a fixed width: 4 to 7 characters from 0.01 to 10000, 8 or 9 outside (0.001230,
    0.0001230, 1.000e-06, 1.235e+04), one more when negative; a narrow column shortens those (runs_list.loss_cell)."""
    if not finite(value):
        return number_text(value)
    return f"{value:#.4g}".rstrip(".")   # 1235, not "1235."


def record_number(rec: dict, key: str) -> float | None:
    """A record's field as a number (NaN and infinities as written), or None: absent, or no number (a line edited
    by hand or written by another program): json_number."""
    return json_number(rec.get(key))


# The event a resumed trainer writes first: records after its step written before it were trained again.
RESUMED = "resumed"
# The event before the samples whose first batch compiles fast decode (engine.train.callback): once a run.
FAST_DECODE_COMPILE = "fast_decode_compile"


def resumed_at(rec: dict) -> int | None:
    """The checkpoint step a `resumed` event restarts from, or None for any other record."""
    return rec["step"] if rec.get("kind") == "event" and rec.get("code") == RESUMED else None


class MetricsTail:
    """Reads metrics.jsonl incrementally by byte offset.

    `read_new()` returns only records completed since the last call; a
    half-written last line stays in the buffer until its newline arrives.
    A line that is not valid JSON (disk full, a crash mid-write followed by
    more writes) or not a record (no kind or step) is skipped and counted
    rather than stopping the reader.
    """

    # Line numbers of skipped lines kept, to say where the file is broken (the count goes on past them).
    KEEP_BAD_LINE_NUMBERS = 5

    def __init__(self, path: str | Path):
        p = Path(path)
        self.path = p / METRICS_FILE if p.is_dir() else p
        self.offset = 0
        self.bad_lines = 0
        self.bad_line_numbers: list[int] = []   # 1-based, the first KEEP_BAD_LINE_NUMBERS
        self._lines = 0                          # complete lines read so far
        self._partial = b""

    def pending_bytes(self) -> int:
        """Bytes of a last line still waiting for its newline."""
        return len(self._partial)

    def pending_is_record_start(self) -> bool:
        return self._partial.lstrip().startswith(b"{")

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        try:  # a metrics.jsonl that is no file (a named pipe, /dev/zero) has no records: the readers say so
            with open_regular(self.path) as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # truncated or replaced: start over
                    self.offset, self._partial, self._lines = 0, b"", 0
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
        except (FileNotFoundError, NotAFile):
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            self._lines += 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
                rec = None
            if valid_record(rec):
                out.append(rec)
                continue
            self.bad_lines += 1
            if len(self.bad_line_numbers) < self.KEEP_BAD_LINE_NUMBERS:
                self.bad_line_numbers.append(self._lines)
        return out

    def skipped_text(self) -> str | None:
        """Where the file is broken, for a warning ("<path>: 2 lines are not records (lines 6, 9); skipped"), or
        None when every line read was a record."""
        if not self.bad_lines:
            return None
        where = ", ".join(map(str, self.bad_line_numbers)) + (", ..." if self.bad_lines > len(self.bad_line_numbers)
                                                              else "")
        what = f"{self.bad_lines} lines are not records (lines" if self.bad_lines > 1 else "1 line is not a record (line"
        return f"{self.path}: {what} {where}); skipped, as a crash mid-write leaves them"


def drop_superseded(records: Iterable[dict]) -> list[dict]:
    """The records as the run finally has them: after a resume from step S, the records after S written
    before it (by a trainer killed between two checkpoints) are superseded by their re-run copies."""
    out: list[dict] = []
    highest = -1  # linear: the list is filtered only at a resume that has something to drop
    for rec in records:
        at = resumed_at(rec)
        if at is not None and highest > at:
            out = [r for r in out if r["step"] <= at]
            highest = at
        out.append(rec)
        highest = max(highest, rec["step"])
    return out


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every valid record, superseded ones left out (the newest copy of a re-run step wins)."""
    return drop_superseded(MetricsTail(run_dir).read_new())


def tail_lines(path: str | Path, n: int = 20, block: int = 8192) -> list[str]:
    """The last n lines of a text file, reading only its end.

    Block by block from the end, each block kept once: prepending each to the text read so far (and counting its
    newlines again) took a time in the square of a long last line's length, such as the run of NUL bytes a crash
    can leave at a file's end (`lorapilot runs` spent 17 s on one run whose metrics.jsonl ended in 50 MB of them)."""
    blocks: list[bytes] = []
    newlines = 0
    try:
        with open_regular(path) as f:
            pos = f.seek(0, os.SEEK_END)
            while pos > 0 and newlines <= n:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                blocks.append(f.read(step))
                newlines += blocks[-1].count(b"\n")
    except (FileNotFoundError, NotAFile):
        return []
    text = b"".join(reversed(blocks)).decode("utf-8", errors="replace")
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
    copy_of: Path | None = None   # lost because it is a copy of this run, which its trainer still trains

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def age_s(self) -> float | None:
        return None if self.updated is None else max(0.0, time.time() - self.updated)


def _last_losses(run_dir: Path, scan_bytes: int = 65536) -> tuple[float | None, float | None]:
    """Last train and eval loss from the end of metrics.jsonl, without reading it all; only records, as every reader
    takes them (valid_record, record_number)."""
    loss = eval_loss = None
    try:
        lines = tail_lines(run_dir / METRICS_FILE, n=400, block=scan_bytes)
    except OSError:   # not this user's to read (its status may be): listed without losses
        return None, None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not valid_record(rec):   # what MetricsTail skips (the monitor's reader)
            continue
        if loss is None and rec["kind"] == "train":
            loss = record_number(rec, "loss")
        if eval_loss is None and rec["kind"] == "eval":
            eval_loss = record_number(rec, "eval_loss")
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
    state = effective_state(status, p)
    return RunSummary(path=p, state=state, step=int(status.get("step") or 0),
                      max_steps=int(status.get("max_steps") or 0), loss=loss, eval_loss=eval_loss,
                      updated=status.get("updated"), error=status.get("error"), extra=status,
                      copy_of=copy_of(p, status) if state == "lost" else None)


def is_run_dir(p: Path) -> bool:
    return (p / STATUS_FILE).exists() or (p / METRICS_FILE).exists()


RUN_DIR_FIX = "give a run folder (runs/<name>); `lorapilot runs` lists them"


def not_a_run_dir(path: str | Path, why: str, fix: str = RUN_DIR_FIX) -> UserError:
    """The refusal of a path given as a run directory, one wording for every verb: 'no such run directory' where
    nothing is there (a typo), 'not a folder' for a file, else `why` (what the folder lacks)."""
    p = Path(path)
    return UserError(f"{p}: {why if p.is_dir() else 'not a folder' if p.exists() else 'no such run directory'}",
                     fix=fix)


def require_run_dir(path: str | Path) -> Path:
    """The run directory a verb works on (chat, export, train --resume): one with its config.yaml, else refused
    before anything else is tried in it (a lock, an adapter)."""
    p = Path(path)
    if not (p / CONFIG_FILE).is_file():
        raise not_a_run_dir(p, f"not a run directory (no {CONFIG_FILE})")
    return p


def list_runs(root: str | Path | None = None, problems: list[str] | None = None) -> list[RunSummary]:
    """Runs directly under the runs root (and one level of sweep directories), newest first.

    A run whose status.json is corrupt is left out, and why is appended to `problems` when given.
    """
    base = Path(root) if root else default_runs_root()
    if not base.is_dir():
        return []
    found: list[Path] = []
    for child in base.iterdir():
        try:   # a folder this user may not read (another user's run, a disk's lost+found) costs its own row only
            if not child.is_dir():
                continue
            if is_run_dir(child):
                found.append(child)
            else:
                found += [g for g in child.iterdir() if g.is_dir() and is_run_dir(g)]
        except OSError as e:
            unreadable(e, child, problems)
    runs = []
    for p in found:
        try:
            runs.append(summarize(p))
        except DataError as e:
            if problems is not None:
                problems.append(f"{e.message}; skipped")
        except OSError as e:
            unreadable(e, p, problems)
    runs.sort(key=lambda r: r.updated or 0, reverse=True)
    return runs


def unreadable(e: OSError, folder: Path, problems: list[str] | None) -> None:
    """A folder of the runs root a listing cannot read, said in `problems` (when given) as skipped."""
    if problems is not None:
        problems.append(f"{safe_text(e.filename or folder, one_line=True)}: {e.strerror or type(e).__name__}; skipped")


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


# ---------------------------------------------------------------- checkpoints

def _checkpoint_step(p: Path) -> int:
    tail = p.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def checkpoint_step(path: str | Path) -> int:
    return _checkpoint_step(Path(path))


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints the Trainer finished writing (its state file is written last), oldest first."""
    ckpts = sorted(Path(run_dir, CHECKPOINTS_DIR).glob("checkpoint-*"), key=_checkpoint_step)
    return [p for p in ckpts if _checkpoint_step(p) >= 0 and (p / CHECKPOINT_STATE_FILE).exists()]


def checkpoint_lookalikes(run_dir: str | Path) -> list[Path]:
    """Folders in checkpoints/ that transformers takes for checkpoints though lorapilot does not (a copy kept as
    checkpoint-20-keep or checkpoint-20.bak): its rotation (save_total_limit) reads the number after checkpoint- in
    the path, by its own pattern, and deletes the oldest, a user's copy among them."""
    import re

    return sorted(p for p in Path(run_dir, CHECKPOINTS_DIR).glob("checkpoint-*")
                  if p.is_dir() and _checkpoint_step(p) < 0 and re.match(r".*checkpoint-([0-9]+)", str(p)))


def last_checkpoint(run_dir: str | Path) -> str | None:
    complete = complete_checkpoints(run_dir)
    return str(complete[-1]) if complete else None


def _trainer_state_count(folder: str | Path, key: str, least: int) -> int | None:
    """An integer of a checkpoint's (or the adapter's) trainer_state.json, at least `least`; None when the file,
    the key or a sane value is missing."""
    value = (read_table(Path(folder) / CHECKPOINT_STATE_FILE) or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= least else None


def checkpoint_max_steps(ckpt: str | Path) -> int | None:
    """The step count the Trainer planned when it wrote this checkpoint (trainer_state.json), or None."""
    return _trainer_state_count(ckpt, "max_steps", 1)


def planned_steps(status: dict | None, ckpt: str | Path | None) -> int | None:
    """The run's planned step count, read-only: status.json's max_steps; where it does not say (missing, corrupt,
    not yet written), the checkpoint's trainer_state.json; None when neither knows."""
    from_status = (status or {}).get("max_steps")
    if isinstance(from_status, int) and not isinstance(from_status, bool) and from_status > 0:
        return from_status
    return checkpoint_max_steps(ckpt) if ckpt else None


def steps_trained(run_dir: str | Path, status: dict | None, records: list[dict]) -> int | None:
    """How many steps the run trained, read-only: status.json's step; where it does not say (missing, not yet
    written), the most advanced of the adapter's and the last checkpoint's trainer_state.json and metrics.jsonl's
    last train record; None when none knows (never a false 0)."""
    from_status = (status or {}).get("step")
    if isinstance(from_status, int) and not isinstance(from_status, bool) and from_status >= 0:
        return from_status
    ckpt = last_checkpoint(run_dir)
    last_train = next((r.get("step") for r in reversed(records) if r.get("kind") == "train"), None)
    known = [_trainer_state_count(Path(run_dir, ADAPTER_DIR), "global_step", 0),
             _trainer_state_count(ckpt, "global_step", 0) if ckpt else None, last_train]
    steps = [s for s in known if isinstance(s, int)]
    return max(steps) if steps else None


# safetensors' own reasons for refusing a file (its Rust parser's words, 0.4 to 0.8), said in a user's; any other is
# shown as it comes.
_SAFETENSORS_WORDS = (
    (("header too small", "invalid header length", "header too large"), "truncated or not a safetensors file ({size:,} bytes)"),
    (("not fully covered",), "truncated or padded: {size:,} bytes, not the length its header lists"),
    (("invalid type",), "its header is not a table of tensors"),
    (("invalid JSON", "invalid UTF-8"), "its header is not valid JSON"),
)


def safetensors_names(path: str | Path) -> list[str]:
    """The tensor names of a safetensors file, opened by safetensors itself as peft, the trainer's resume and vLLM
    open it: header, dtypes, shapes, offsets and the file's length all checked. A file it refuses raises ValueError
    saying what is wrong ("truncated or padded: 1,000 bytes, ..."); one that cannot be opened, OSError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return list(f.keys())
    except SafetensorError as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        words = next((w for keys, w in _SAFETENSORS_WORDS if any(k in reason for k in keys)), None)
        size = Path(path).stat().st_size
        raise ValueError(words.format(size=size) if words else f"not a whole safetensors file ({reason})") from None


def _safetensors_problem(path: Path) -> str | None:
    try:
        safetensors_names(path)
    except ValueError as e:
        return str(e)
    return None


def _torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip archive with a CRC per member: truncation loses its directory, garbling
    fails a CRC."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"not a complete torch file ({e})"
    return f"damaged member {bad}" if bad else None


def checkpoint_problem(ckpt: str | Path) -> str | None:
    """What is wrong with a checkpoint's files ("<file>: <what>"), or None if it looks complete."""
    ckpt = Path(ckpt)
    state = ckpt / CHECKPOINT_STATE_FILE
    try:
        if not isinstance(read_json(state), dict):
            return f"{state}: not a trainer state"
    except FileNotFoundError:
        return f"{state}: missing"
    except READ_ERRORS as e:
        return f"{state}: not valid JSON ({type(e).__name__})"
    problem = files_problem(ckpt)
    if problem is None and (ckpt / ADAPTER_FILES[0]).is_file():
        # A resume loads its adapter weights into the model: a tensor that is no LoRA weight goes over the base's
        from engine.adapter_config import adapter_config_problem

        problem = adapter_config_problem(ckpt)
    return problem


def files_problem(folder: str | Path) -> str | None:
    """What is wrong with a folder's weights, states and JSON files ("<file>: <what>"): one cut off (a save killed
    half-way, a copy interrupted) or garbled; None when each reads whole."""
    for path in sorted(Path(folder).iterdir()):
        if path.suffix not in (".safetensors", ".pt", ".pth", ".bin", ".json"):
            continue
        if not path.is_file():
            return f"{path}: not a file"
        if path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        elif path.suffix in (".pt", ".pth", ".bin"):
            problem = _torch_file_problem(path)
        else:
            try:
                read_json(path)
                problem = None
            except READ_ERRORS as e:   # a number of 5,000 digits is a ValueError, no JSONDecodeError
                problem = f"not valid JSON ({type(e).__name__})"
        if problem:
            return f"{path}: {problem}"
    return None


# The two files of an adapter as peft saves it (the run's adapter/ and each checkpoint): what PeftModel loads.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_problem(adapter: str | Path) -> str | None:
    """What makes an adapter folder unfit to load or hand on ("<file>: <what>"), or None.

    A file missing, cut off or garbled (the export copied it as it was, and a merge or a chat failed in a
    traceback); code (a Python file, a tokenizer_config.json whose auto_map names a class to import): a trainer
    saves none, and the folder an export writes is made to be loaded elsewhere, with trust_remote_code perhaps."""
    ad = Path(adapter)
    for name in ADAPTER_FILES:
        if not (ad / name).is_file():
            return f"{ad / name}: missing"
    code = sorted(p.name for p in ad.iterdir() if p.suffix in (".py", ".pyc", ".so"))
    if code:
        return f"{ad / code[0]}: a program file; a trainer saves none in an adapter"
    problem = files_problem(ad)
    if problem:
        return problem
    from engine.adapter_config import adapter_config_problem

    problem = adapter_config_problem(ad)   # LoRA as lorapilot trains it: no other tuner, modules or base weights
    if problem:
        return problem
    for name in ("tokenizer_config.json", "config.json"):
        saved = read_table(ad / name)   # absent, or garbled: files_problem said so above
        if saved and saved.get("auto_map"):
            return f"{ad / name}: auto_map names code to import ({safe_text(saved['auto_map'], one_line=True)}); " \
                   "a trainer saves none"
    return None


def usable_checkpoint(run_dir: str | Path, also: Callable[[Path], str | None] | None = None
                      ) -> tuple[str | None, list[str]]:
    """(the newest complete checkpoint whose files are intact, what is wrong with each newer one skipped).
    `also`: a further check of a checkpoint whose files look complete (the trainer's, which imports torch)."""
    skipped: list[str] = []
    complete = complete_checkpoints(run_dir)
    # Files the run's checkpoints have: one lacking any was cut off while the Trainer deleted it (save_total_limit)
    # or before lorapilot's record was written, and transformers resumes without optimizer.pt, scheduler.pt or the
    # RNG state, silently, when one is not there.
    names = {p.name for ckpt in complete for p in ckpt.iterdir()}
    # A folder the Trainer did not finish (killed before its state file) is named too: the resume went back past it
    # without a word, while status.json and the monitor had said "checkpoint saved" of the step before.
    cut_off = [p for p in Path(run_dir, CHECKPOINTS_DIR).glob("checkpoint-*")
               if _checkpoint_step(p) >= 0 and p.is_dir() and p not in complete]
    for ckpt in sorted([*complete, *cut_off], key=_checkpoint_step, reverse=True):
        if ckpt in cut_off:
            skipped.append(f"{ckpt / CHECKPOINT_STATE_FILE}: missing (its save was cut off)")
            continue
        missing = sorted(names - {p.name for p in ckpt.iterdir()})
        problem = (f"{ckpt / missing[0]}: missing ({len(missing)} of the files the run's other checkpoints have; "
                   "its save or its deletion was cut off)" if missing else None)
        problem = problem or checkpoint_problem(ckpt) or (also(Path(ckpt)) if also else None)
        if problem is None:
            return str(ckpt), skipped
        skipped.append(problem)
    return None, skipped


# ---------------------------------------------------------------- records as lines

class LaunchStart:
    """Tells, record by record, whether a train record is the first of its launch (the first of the run, the first
    after a `resumed` event, or one whose step is not past the last's): its tokens/s covers the warm-up and, with
    compiled layers, the compile, minutes at a fraction of the speed, so it is no measure of the speed. The one
    rule for the monitor's panel and the lines of train.log and `lorapilot train`."""

    def __init__(self) -> None:
        self.last_step: float | None = None

    def first(self, rec: dict) -> bool:
        """Feeds a record; True for a train record that starts its launch."""
        step = rec.get("step")
        if rec.get("kind") == "event" and rec.get("code") == RESUMED:
            self.last_step = None
        if rec.get("kind") != "train" or not isinstance(step, (int, float)):
            return False
        first = self.last_step is None or step <= self.last_step
        self.last_step = step
        return first


def format_record(rec: dict, warming_up: bool = False) -> str | None:
    """A record as one line of train.log or `lorapilot train`'s output (a finding: its evidence and fix on lines
    of their own below it); its text made safe to print. `warming_up`: a train record that starts its launch
    (LaunchStart), whose tokens/s is said to be still measured, as the monitor says."""
    kind, step = rec.get("kind"), rec.get("step")
    if kind == "train":
        lr, grad, speed = (record_number(rec, key) for key in ("learning_rate", "grad_norm", "tokens_per_s"))
        parts = [f"step {step:>5}", f"loss {loss_text(_float(rec, 'loss'))}"]
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if grad is not None:
            parts.append(f"grad {grad:.3f}")
        if speed:
            parts.append("tok/s measuring" if warming_up else f"{speed:,.0f} tok/s")
        return "  ".join(parts)
    if kind == "eval":
        return f"step {step:>5}  eval_loss {loss_text(_float(rec, 'eval_loss'))}"
    if kind == "finding":
        from engine.diagnose.finding import Finding, finding_text, finding_where

        f = Finding.from_record(rec)
        return finding_text(f, f"step {step:>5}" if finding_where(f) != "pre-flight" else "pre-flight")
    if kind == "event":
        return safe_text(f"step {step:>5}  {rec.get('message')}", one_line=True)
    return None


def _float(rec: dict, key: str) -> float:
    number = record_number(rec, key)
    return float("nan") if number is None else number


# ---------------------------------------------------------------- code from a run directory

def check_remote_code(cfg, run_dir: str | Path, allowed: bool, command: str) -> bool:
    """Whether to pass trust_remote_code to transformers for a run directory's config.

    A run directory may come from anyone: its config.yaml asking for the model folder's own Python to run is
    honoured only when the user said so on this command line. Refused (UserError) otherwise.
    """
    if not cfg.trust_remote_code:
        return False
    if allowed:
        return True
    from engine.errors import UserError

    raise UserError(f"{Path(run_dir) / CONFIG_FILE}: trust_remote_code: true would run Python code from the model "
                    f"({cfg.model}); lorapilot does not honour that from a run directory on its own",
                    fix=f"if you trust that code, say so on the command line: lorapilot {command} --trust-remote-code")
