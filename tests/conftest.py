"""Shared fixtures: an isolated cache and runs root, the demo model, one real finished demo run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "presets" / "demo.yaml"
HUB_TOKEN_MARKER = "hf_lorapilotTestTokenMarker"


def pytest_configure(config):
    # One cache for the whole session (the demo model is built once), outside the user's home.
    os.environ.setdefault("LORAPILOT_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "lorapilot"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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


@pytest.fixture(scope="session")
def finished_demo_run(tmp_path_factory, demo_model_dir) -> Path:
    """A real demo training run (tiny model, CPU), finished, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("runs") / "demo-finished"
    # A hub token in the environment must never end up in the run directory (see test_engine_e2e).
    r = run_cli("train", str(DEMO_CONFIG), "--run-dir", str(run_dir), env={"HF_TOKEN": HUB_TOKEN_MARKER})
    assert r.returncode == 0, r.stdout + r.stderr + (run_dir / "train.log").read_text()
    return run_dir
