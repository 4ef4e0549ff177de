"""Errors a user can cause: one type that carries the culprit and the fix.

The CLI prints these and exits 2, without a traceback. Programming errors are
not caught and dressed up as UserError.
"""

from __future__ import annotations

import re
import reprlib
import sys

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
# What a shell reports for a process killed by SIGPIPE (128 + 13): `lorapilot runs | head` closed early.
EXIT_BROKEN_PIPE = 141

# A value quoted in a message is cut short: a user's value can be megabytes (or, through YAML aliases,
# billions of elements), and the message must stay a line.
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 80
_QUOTE.maxlong = 40
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = _QUOTE.maxset = 6
_QUOTE.maxlevel = 3


def quote(value: object) -> str:
    """repr(value) for a message, at most a line long whatever the value holds."""
    return _QUOTE.repr(value)


def shell_word(value: object) -> str:
    """A path (or other argument) in a command the user is told to copy, as a shell reads it back: quoted where it
    needs to be (a space, a quote, a $: `lorapilot stop runs/my run` stops runs/my, or nothing), bare otherwise."""
    import shlex

    return shlex.quote(str(value))


# A list's or mapping's entry is written bare where YAML reads it back as the same text (q_proj, all-linear,
# runs/x.jsonl); else quoted. YAML's own words stay quoted: a bare yes or null would read as another value.
_BARE = re.compile(r"[A-Za-z_][\w./-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null"}


def yaml_text(value: object, *, _level: int = 0) -> str:
    """A value for a message as the YAML config spells it, cut to a line like quote(): true, false, null (not
    Python's True, False, None), a list in flow style ([q_proj, v_proj], not ['q_proj', 'v_proj']), a mapping as
    {key: value}. Text on its own stays quoted ('wandb'), to set it off from the sentence around it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, dict)):
        if _level >= _QUOTE.maxlevel:
            return "[...]" if not isinstance(value, dict) else "{...}"
        if isinstance(value, dict):
            parts = [f"{_entry(k, _level)}: {_entry(v, _level)}" for k, v in list(value.items())[:_QUOTE.maxdict]]
        else:
            parts = [_entry(v, _level) for v in list(value)[:_QUOTE.maxlist]]
        parts += ["..."] * (len(value) > len(parts))
        open_, close = "{}" if isinstance(value, dict) else "[]"
        return open_ + ", ".join(parts) + close
    return quote(value)


def _entry(value: object, level: int) -> str:
    if isinstance(value, str) and _BARE.fullmatch(value) and value.lower() not in _YAML_WORDS and len(value) <= 80:
        return value
    return yaml_text(value, _level=level + 1)


def print_error(message: object) -> None:
    """A user error (or a note) on stderr as every verb prints one: after "lorapilot: ", wrapped to 80 columns as
    the verbs' own output is (engine.wrap.fit: a path or a `command` is never split)."""
    from engine.wrap import fit

    print(fit(f"lorapilot: {message}"), file=sys.stderr)


def type_word(value: object) -> str:
    """A JSON (or YAML) value's type in the file's words, for "expected an object, got null": Python's names
    (NoneType, int, dict) are not what the user wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class UserError(Exception):
    """A problem in what the user gave us (a file, a key, a value).

    `problems` holds one line per problem so that validation can report all
    of them at once rather than the first only.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])
        self.fix = fix

    def __str__(self) -> str:
        return self.without_fix() + (f"\n  fix: {self.fix}" if self.fix else "")

    def without_fix(self) -> str:
        """The message and its problems: where the fix is kept apart (status.json's error beside its hint)."""
        return "\n".join([self.message] + [f"  - {p}" for p in self.problems])


class ConfigError(UserError):
    """A bad config file or value; problems name the dotted key path."""


class DataError(UserError):
    """A dataset that cannot be read or cannot train; names the file and line."""


class ModelError(UserError):
    """A model path or hub id that cannot be used."""
