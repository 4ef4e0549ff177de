"""Shared fixtures: an isolated cache and runs root, the demo model, one real finished demo run."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "presets" / "demo.yaml"
HUB_TOKEN_MARKER = "hf_lorapilotTestTokenMarker"
TEST_GC_THRESHOLDS = (10_000, 10, 10)  # a full collection after 1 M allocations at the soonest, not 70 k
# One torch thread in every process the suite starts (trainers, ranks, CLI verbs, the helpers) and in its own.
TEST_TORCH_THREADS = "1"


def pytest_configure(config):
    # One cache for the whole session (the demo model is built once), outside the user's home.
    os.environ.setdefault("LORAPILOT_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "lorapilot"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Torch starts one OpenMP thread per core, and its idle threads spin before they sleep. The suite runs trainers
    # side by side (conftest.together, the DDP ranks, a sweep's driver beside its trial) and beside itself on
    # CI's two cores, where the threads of one process wait, spinning, for a core another holds: the demo's
    # 40 small steps took 70.7 CPU s (188 s) with the default threads beside other jobs, 11.3 CPU s (28 s) with
    # one. The tiny models' steps are too small to gain from a second thread. Set before anything imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", TEST_TORCH_THREADS)
    # Rarer cyclic collections in this process: the suite keeps a large heap alive (Textual apps, torch,
    # transformers), and every full collection walks it again; with the default (700, 10, 10) the wizard tests
    # spent ~15 % of their CPU time in the collector. Reference counting still frees what it always did; cycles
    # wait a little longer. Only pytest's own process: the trainers and CLI processes keep Python's defaults.
    gc.set_threshold(*TEST_GC_THRESHOLDS)


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config, items):
    # A test that reads the finished demo run trains it when it is the first to ask: it is slow like one that trains.
    for item in items:
        if "finished_demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def stop_detached_runs(root: Path) -> list[int]:
    """Stops every trainer and sweep driver with a directory under root that is still running; their pids.

    They run in sessions of their own (that is the point of them), so neither pytest's end nor a killed
    launcher reaches them: a failed test or fixture would otherwise leave one training beside the suite.
    """
    import psutil

    found = []
    for name, key in (("status.json", "pid"), ("sweep.json", "driver_pid")):
        for path in root.rglob(name):
            if not path.is_file():  # a test's named pipe or folder under that name: opening a pipe waits forever
                continue
            try:
                record = json.loads(path.read_text())
                pid = record.get(key) if isinstance(record, dict) else None   # tests write corrupt ones too
                # Only the process started for this directory (a recycled pid is someone else's).
                if isinstance(pid, int) and str(path.parent) in " ".join(psutil.Process(pid).cmdline()):
                    found.append(pid)
            except (OSError, ValueError, OverflowError, psutil.Error):
                continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            try:
                os.killpg(pid, sig)  # its own session: the group is the trainer and its ranks or workers
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(map(_still_running, found)):
            time.sleep(0.2)
    return found


def _still_running(pid: int) -> bool:
    """A zombie has exited (only its parent's wait is missing: a test's own child): waiting on it is time lost."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def hold_run_lock(run_dir: Path) -> Path:
    """This test's process as the run's live trainer (status.json names os.getpid()): it holds the run's lock as a
    trainer does, until the test ends (screenshots/monitor_fakerun.hold_run_lock)."""
    screenshots = str(REPO / "screenshots")
    if screenshots not in sys.path:
        sys.path.insert(0, screenshots)
    from monitor_fakerun import hold_run_lock as hold

    return hold(run_dir)


@pytest.fixture(autouse=True)
def _fake_trainers_let_go():
    """A fake live run names this process as its trainer and holds its run lock, as a real trainer does
    (screenshots/monitor_fakerun.hold_run_lock): let go when the test ends."""
    yield
    fakerun = sys.modules.get("monitor_fakerun")
    if fakerun is not None:
        fakerun.release_run_locks()


@pytest.fixture(scope="session", autouse=True)
def _stop_detached_runs_at_the_end(tmp_path_factory):
    yield
    stop_detached_runs(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session", autouse=True)
def _shared_demo_trained_first(request, _stop_detached_runs_at_the_end):
    """Trains the shared demo run at the start of the session when any selected test reads it, so that its
    training is never inside one test's time (timeouts count the test body only: timeout_func_only).

    With pytest-xdist every worker sees every selected test here: the first worker (gw0) trains the run, the others
    go on with their tests and wait for it (finished_demo_run's lock) only in a test that reads it."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    if any("finished_demo_run" in getattr(item, "fixturenames", ()) for item in request.session.items):
        try:
            request.getfixturevalue("finished_demo_run")
        except Exception:  # noqa: BLE001 - pytest keeps the error and raises it in every test that reads the run
            pass


@pytest.fixture
def plan_of_the_recorded_runs(monkeypatch):
    """The recorded GPU runs (tests/fixtures/vram_measured*.json) trained with the fast path of their time:
    bitsandbytes' paged AdamW (torch's fused AdamW became the fast path's on 2026-12-03, engine.plan optimizer_for)
    and flex attention (variable-length flash attention became packed rows' on 2026-12-04, engine.plan
    attention_for). The estimate replays the plan those runs ran."""
    from engine.train import speed

    monkeypatch.setattr(speed.LEVERS, "fused_optimizer", False)
    monkeypatch.setattr(speed.LEVERS, "varlen_attention", False)


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    from engine.demo.model import ensure_demo_model
    return ensure_demo_model()


@pytest.fixture(scope="session")
def demo_tokenizer(demo_model_dir):
    from engine.model import load_tokenizer
    return load_tokenizer(str(demo_model_dir))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """The real console entry in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "tui.entry", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def fake_adapter(folder: Path, config: str = '{"r": 16, "lora_alpha": 32, "target_modules": ["q_proj"]}') -> Path:
    """An adapter folder whose two files read whole (adapter_config.json, an adapter_model.safetensors of no
    tensors), for tests that read a run's adapter without loading it: export and chat refuse one cut off."""
    folder.mkdir(parents=True, exist_ok=True)   # the kind lorapilot trains (engine.adapter_config), unless it says
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM",
                                                            **json.loads(config)}))
    (folder / "adapter_model.safetensors").write_bytes(len(b"{}").to_bytes(8, "little") + b"{}")
    return folder


def unwrapped(text: str) -> str:
    """A verb's stderr as words on one line: its messages are wrapped to 80 columns (engine.wrap.fit), at spaces, so a
    phrase a test looks for may span a line break (a test's tmp_path makes a message long)."""
    return " ".join(text.split())


@contextlib.contextmanager
def saved_storages(apart: set[int]):
    """Counts what autograd saves inside the block: yields a dict, storage address -> bytes, each storage once (views
    share one), those at the addresses in `apart` (parameters, what a layer is handed) left out. The saved tensors are
    held to the end, so that no address is reused by another while counting."""
    import torch

    storages: dict[int, int] = {}
    held = []

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in apart:
            storages[s.data_ptr()] = s.nbytes()
            held.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield storages


def together(*calls):
    """Runs independent calls that each wait on their own processes (trainers, ranks) side by side; their results
    in order. A trainer's start is one core's work (imports, the model) and CI has two: two runs a test compares
    take little more than one when they start together."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def _shared_demo_dir(tmp_path_factory) -> Path:
    """The shared demo run's folder: in this session's temp root, or with pytest-xdist in the root its workers share
    (each worker's is a folder in it), so that the run is trained once per session, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-demo-run"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def finished_demo_run(tmp_path_factory, demo_model_dir) -> Path:
    """A real demo training run (tiny model, CPU), finished, shared by the tests that only read it (and by the
    pytest-xdist workers: the first to ask trains it, under a lock, the others wait for it and read it)."""
    shared = _shared_demo_dir(tmp_path_factory)
    run_dir = shared / "runs" / "demo-finished"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (shared / "trained").exists():
            return run_dir
        shutil.rmtree(run_dir.parent, ignore_errors=True)  # another worker's failed attempt
        run_dir.parent.mkdir()
        try:
            # A hub token in the environment must never end up in the run directory (see test_engine_e2e).
            # A hang guard only: the demo's 40 steps took 14 min on a 2-core machine shared with 7 other suites.
            r = run_cli("train", str(DEMO_CONFIG), "--run-dir", str(run_dir), env={"HF_TOKEN": HUB_TOKEN_MARKER},
                        timeout=1800)
        except BaseException:
            stop_detached_runs(run_dir.parent)  # the launcher was killed (its timeout): its trainer was not
            raise
        assert r.returncode == 0, r.stdout + r.stderr + (run_dir / "train.log").read_text()
        (shared / "trained").touch()
    return run_dir


# ---------------------------------------------------------------- hub datasets in datasets' cache

HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_hub_dataset(cache: Path, repo_id: str, rows: list[dict], revision: str = HUB_COMMIT,
                      config_id: str = "default") -> Path:
    """A hub dataset's train split in datasets' cache, laid out as datasets writes it after a load with network:
    `owner___name/<config>/<version>/<revision>/` holding `name-train.arrow` (an Arrow stream) and
    dataset_info.json. config_id: the folder of a load with other arguments (`default-<hash>` after
    data_files=...), whose dataset_info.json still says configuration "default"."""
    import pyarrow as pa

    owner, name = repo_id.split("/")
    folder = cache / f"{owner}___{name}" / config_id / "0.0.0" / revision
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(folder / f"{name}-train.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    (folder / "dataset_info.json").write_text(json.dumps({
        "config_name": "default", "dataset_name": name,
        "splits": {"train": {"name": "train", "num_examples": len(rows), "dataset_name": name}}}))
    return folder


@pytest.fixture
def hub_out_of_reach(monkeypatch, tmp_path):
    """The hub does not answer (HF_HUB_OFFLINE unset), and datasets' cache is an empty folder of the test's."""
    import datasets.config

    import engine.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(engine.hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)   # read when datasets was imported
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    return tmp_path / "datasets"
