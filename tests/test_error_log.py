"""A bug shown in a toast is also kept with its traceback in the app's log; a user's error is not."""

from __future__ import annotations

from engine.errors import DataError
from tui.error_log import app_log_path, say


def _boom() -> None:
    raise KeyError("estimate_gib")


def test_a_bug_is_logged_with_its_traceback_and_the_line_names_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAPILOT_CACHE", str(tmp_path))
    try:
        _boom()
    except KeyError as exc:
        line = say(exc, "auto-fit")
    log = tmp_path / "app.log"
    assert app_log_path() == log
    assert str(log) in line and "KeyError" in line and "bug" in line
    text = log.read_text()
    assert "auto-fit" in text and "Traceback" in text and "_boom" in text


def test_a_users_error_is_said_in_its_own_words_and_not_logged(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAPILOT_CACHE", str(tmp_path))
    assert say(DataError("data.jsonl:3: not JSON")) == "data.jsonl:3: not JSON"
    assert "No such file" in say(FileNotFoundError(2, "No such file or directory", "x.jsonl"))
    assert not (tmp_path / "app.log").exists()


def test_an_unwritable_log_still_gives_a_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LORAPILOT_CACHE", str(blocker / "sub"))  # a file where the directory would be
    line = say(RuntimeError("x"))
    assert "RuntimeError" in line and "could not be written" in line
