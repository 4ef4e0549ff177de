"""The folder a header names (the runs list, the sweep monitor) stays readable at 80 columns."""

from __future__ import annotations

from pathlib import Path

from tui.header_path import HEADER_PATH_WIDTH, header_path


def test_home_is_a_tilde_and_a_short_path_is_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "runs").mkdir()
    assert header_path(tmp_path / "runs") == "~/runs"
    assert header_path("/srv/runs") == "/srv/runs"


def test_a_long_path_keeps_the_folders_own_name_and_cuts_the_start():
    """Textual cuts a long subtitle at the end, where the sweep's name is: the screenshot at 80x24 read
    '/tmp/lorapilot-sweep-shots-obdt1mb9/sweep_80x24_runni…'."""
    deep = Path("/workspace/projects/customer-support-bot/experiments/2026-12/sweeps/sweep-qwen-alpaca")
    shown = header_path(deep)
    assert len(shown) <= HEADER_PATH_WIDTH and shown.startswith("…/") and shown.endswith("/sweep-qwen-alpaca")
    assert header_path(Path("/" + "x" * 80)).endswith("x" * 40)   # one long name: its end, still cut to fit
    assert len(header_path(Path("/" + "x" * 80))) == HEADER_PATH_WIDTH
