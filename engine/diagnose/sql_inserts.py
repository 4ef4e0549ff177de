"""Rows out of an SQL dump: the values of its INSERT statements, without a database.

Understands what mysqldump, `pg_dump --inserts` and SQLite's `.dump` write:
`INSERT [IGNORE] INTO name [(cols)] VALUES (...), (...);` (and REPLACE INTO),
quoted strings with doubled quotes or backslash escapes, NULL, numbers,
comments, and CREATE TABLE column lists for INSERTs that name no columns.
Every other statement is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from engine.errors import DataError

_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
# Words that start a constraint, not a column, inside CREATE TABLE ( ... ).
_CONSTRAINT_WORDS = {"PRIMARY", "KEY", "UNIQUE", "CONSTRAINT", "INDEX", "FOREIGN", "CHECK", "FULLTEXT", "SPATIAL",
                     "EXCLUDE"}
_INSERT_MODIFIERS = {"IGNORE", "INTO", "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "OR", "REPLACE", "ABORT",
                     "FAIL", "ROLLBACK"}


def _token_regex(backslash_escapes: bool) -> re.Pattern[str]:
    quoted = r"(?:[^'\\]|\\.|'')*" if backslash_escapes else r"(?:[^']|'')*"
    return re.compile(
        r"(?P<space>\s+)"
        r"|(?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)"
        rf"|(?P<string>[EeNnXxBb]?'{quoted}')"
        r"|(?P<ident>`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|\[[^\]]*\])"
        r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
        r"|(?P<word>[A-Za-z_$][\w$]*)"
        r"|(?P<punct>[(),;.])"
        r"|(?P<other>.)", re.DOTALL)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class InsertRow:
    table: str
    columns: tuple[str, ...] | None  # None when the INSERT names none and no CREATE TABLE did
    values: tuple[str | None, ...]  # strings as text, numbers as written, NULL as None
    line: int  # where the row's "(" is


def _tokens(sql: str, source: str, backslash_escapes: bool) -> Iterator[_Token]:
    # Every character starts a match (`other` takes any one) and no alternative matches empty,
    # so the matches tile the text.
    line = 1
    for match in _token_regex(backslash_escapes).finditer(sql):
        kind, text = match.lastgroup, match.group(0)
        assert kind is not None  # every alternative is a named group
        if kind == "other" and text in "'`\"":
            raise DataError(f"{source}:{line}: unterminated {text} quote",
                            fix="The dump is cut short or not valid SQL.")
        if kind not in ("space", "comment"):
            yield _Token(kind, text, line)
        line += text.count("\n")


def _unquote_ident(text: str) -> str:
    if text[:1] in "`\"":
        return text[1:-1].replace(text[0] * 2, text[0])
    return text[1:-1] if text[:1] == "[" else text


def _decode_string(text: str, backslash_escapes: bool) -> str:
    prefix = text[0].upper() if text[0] != "'" else ""
    body = text[len(prefix) + 1:-1]
    if prefix == "X":  # hex literal: bytes, shown as text when they are UTF-8
        return bytes.fromhex(body).decode("utf-8", errors="replace")
    if backslash_escapes or prefix == "E":
        body = re.sub(r"\\(.)", lambda m: _MYSQL_ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)
    return body.replace("''", "'")


class _Parser:
    def __init__(self, sql: str, source: str, backslash_escapes: bool):
        self.tokens = list(_tokens(sql, source, backslash_escapes))
        self.pos, self.source, self.backslash_escapes = 0, source, backslash_escapes
        self.table_columns: dict[str, tuple[str, ...]] = {}

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise DataError(f"{self.source}: the dump ends in the middle of a statement")
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise DataError(f"{self.source}:{token.line}: expected {text!r}, found {token.text!r}")

    def next_is(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def word_is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def skip_statement(self) -> None:
        depth = 0
        while (token := self.peek()) is not None:
            self.pos += 1
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
            elif token.text == ";" and depth <= 0:
                return

    def name(self) -> str:
        parts = [_unquote_ident(self.take().text)]
        while self.next_is("."):
            self.pos += 1
            parts.append(_unquote_ident(self.take().text))
        return ".".join(parts)

    def rows(self) -> Iterator[InsertRow]:
        while self.peek() is not None:
            if self.word_is("INSERT", "REPLACE"):
                yield from self.insert()
            elif self.word_is("CREATE") and self.create_table():
                continue
            else:
                self.skip_statement()

    def create_table(self) -> bool:
        start = self.pos
        self.pos += 1
        while self.word_is("TEMPORARY", "TEMP", "UNLOGGED"):
            self.pos += 1
        if not self.word_is("TABLE"):
            self.pos = start
            self.skip_statement()
            return True
        self.pos += 1
        while self.word_is("IF", "NOT", "EXISTS"):
            self.pos += 1
        table = self.name()
        if self.next_is("("):
            self.pos += 1
            self.table_columns[table] = tuple(self.column_definitions())
        self.skip_statement()
        return True

    def column_definitions(self) -> Iterator[str]:
        depth, at_item_start = 1, True
        while depth > 0:
            token = self.take()
            if at_item_start and token.kind in ("word", "ident") and (
                    token.kind == "ident" or token.text.upper() not in _CONSTRAINT_WORDS):
                yield _unquote_ident(token.text)
            at_item_start = False
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
            elif token.text == "," and depth == 1:
                at_item_start = True

    def insert(self) -> Iterator[InsertRow]:
        self.pos += 1
        while self.word_is(*_INSERT_MODIFIERS):
            self.pos += 1
        table = self.name()
        columns = self.table_columns.get(table)
        if self.next_is("("):
            self.pos += 1
            columns = tuple(self.name_list())
        if not self.word_is("VALUES", "VALUE"):  # INSERT ... SELECT: no literal rows
            self.skip_statement()
            return
        self.pos += 1
        while True:
            open_paren = self.take()
            if open_paren.text != "(":
                raise DataError(f"{self.source}:{open_paren.line}: expected '(' before a row of VALUES, "
                                f"found {open_paren.text!r}")
            yield InsertRow(table, columns, tuple(self.values()), open_paren.line)
            token = self.peek()
            if token is not None and token.text == ",":
                self.pos += 1
                continue
            self.skip_statement()  # ";" or a trailing ON DUPLICATE KEY / ON CONFLICT clause
            return

    def name_list(self) -> Iterator[str]:
        while True:
            yield _unquote_ident(self.take().text)
            token = self.take()
            if token.text == ")":
                return
            if token.text != ",":
                raise DataError(f"{self.source}:{token.line}: expected ',' or ')' in a column list, "
                                f"found {token.text!r}")

    def values(self) -> Iterator[str | None]:
        """The values of one row, after its "(" up to and including its ")"."""
        while True:
            parts, depth = [], 0
            while True:
                token = self.take()
                if depth == 0 and token.text in (",", ")"):
                    break
                depth += (token.text == "(") - (token.text == ")")
                parts.append(token)
            yield self.value(parts)
            if token.text == ")":
                return

    def value(self, parts: list[_Token]) -> str | None:
        strings = [t for t in parts if t.kind == "string"]
        if len(parts) == 1 and parts[0].text.upper() == "NULL":
            return None
        # A string, possibly after a charset introducer such as _utf8mb4 or _binary.
        if len(strings) == 1 and parts[-1] is strings[0] and all(t.kind == "word" for t in parts[:-1]):
            return _decode_string(strings[0].text, self.backslash_escapes)
        return " ".join(t.text for t in parts)


def uses_backslash_escapes(sql: str) -> bool:
    """MySQL escapes with backslashes; PostgreSQL (standard_conforming_strings) and SQLite do not."""
    head = sql[:20000].lower()
    return not ("standard_conforming_strings = on" in head or "pragma foreign_keys" in head
                or "begin transaction;" in head)


def insert_rows(sql: str, source: str = "<sql>", *, backslash_escapes: bool | None = None) -> list[InsertRow]:
    """Every row of every INSERT in the dump, in order."""
    if backslash_escapes is None:
        backslash_escapes = uses_backslash_escapes(sql)
    return list(_Parser(sql, source, backslash_escapes).rows())
