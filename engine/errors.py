"""Errors a user can cause: one type that carries the culprit and the fix.

The CLI prints these and exits 2, without a traceback. Programming errors are
not caught and dressed up as UserError.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


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
        lines = [self.message]
        lines += [f"  - {p}" for p in self.problems]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


class ConfigError(UserError):
    """A bad config file or value; problems name the dotted key path."""


class DataError(UserError):
    """A dataset that cannot be read or cannot train; names the file and line."""


class ModelError(UserError):
    """A model path or hub id that cannot be used."""
