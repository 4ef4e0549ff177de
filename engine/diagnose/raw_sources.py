"""Readers for raw material: HTML pages, CSV tables, SQL dumps and plain text.

Each reader turns one file into rows: a source label ("posts.csv:12") and
the row's fields. Documents (HTML, text) are one row with a `text` field;
tables (CSV, SQL) are one row per record with their column names.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from engine.data.formats import CsvSyntaxError, csv_records
from engine.diagnose.sql_inserts import insert_rows
from engine.errors import DataError

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
CSV_SUFFIXES = (".csv", ".tsv")
SQL_SUFFIXES = (".sql",)
TEXT_SUFFIXES = (".txt", ".md")
ALL_SUFFIXES = HTML_SUFFIXES + CSV_SUFFIXES + SQL_SUFFIXES + TEXT_SUFFIXES


@dataclass(frozen=True)
class RawRow:
    source: str  # file:line (or file for a whole document)
    fields: dict[str, str | None]
    tabular: bool  # from a CSV or SQL table (columns to choose from), else a document


# ---------------------------------------------------------------- HTML

# Content that is not text a reader sees.
_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "object"}
# Elements that start a new line of text.
_BLOCK_TAGS = {"address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt", "figcaption",
               "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
               "ol", "p", "pre", "section", "summary", "table", "title", "tr", "ul", "caption", "th", "td"}
_SPACES = re.compile(r"\s+")


class _HtmlText(HTMLParser):
    """Visible text of a page: one line per block element, whitespace collapsed except inside <pre>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.in_pre = 0

    def _line_break(self) -> None:
        if self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
            if not self.parts[-1].endswith("\n"):
                self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self._line_break()
        self.in_pre += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._line_break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self._line_break()
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.in_pre:
            self.parts.append(data)
            return
        text = _SPACES.sub(" ", data)
        if not self.parts or self.parts[-1].endswith(("\n", " ")):
            text = text.lstrip(" ")
        if text:
            self.parts.append(text)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in "".join(self.parts).strip().split("\n"))


def html_to_text(html: str) -> str:
    """The text a reader of the page sees (no scripts, styles or markup)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text()


# ---------------------------------------------------------------- CSV

def _delimiter(first_line: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    # The header rarely holds quoted text, so its most frequent separator is the delimiter.
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def read_csv_rows(path: Path) -> list[RawRow]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        text = f.read()
    delimiter = _delimiter(text.partition("\n")[0], path.suffix.lower())
    try:
        # the data layer's rule: a record is named by the line it starts on, blank lines are no records
        records = list(csv_records(text, path, delimiter))
    except CsvSyntaxError as e:
        raise DataError(f"{path}:{e.line}: not valid CSV ({e.reason})") from None
    if not records:
        raise DataError(f"{path}: the CSV file is empty (no header row)")
    (_, header), rows = records[0], records[1:]
    # A short record's missing fields are None, as csv.DictReader gives them.
    return [RawRow(f"{path.name}:{line}", dict(itertools.zip_longest(header, fields)), True)
            for line, fields in rows]


# ---------------------------------------------------------------- SQL

def read_sql_rows(path: Path) -> list[RawRow]:
    sql = path.read_text(encoding="utf-8", errors="replace")
    rows = []
    for row in insert_rows(sql, str(path)):
        columns = row.columns or tuple(str(i + 1) for i in range(len(row.values)))
        fields = {f"{row.table}.{c}": v for c, v in zip(columns, row.values)}
        fields.update(zip(columns, row.values))  # plain column names too, when unambiguous to the user
        rows.append(RawRow(f"{path.name}:{row.line}", fields, True))
    if not rows:
        raise DataError(f"{path}: no INSERT ... VALUES statements found",
                        fix="pg_dump writes COPY blocks by default: dump again with `pg_dump --inserts`.")
    return rows


# ---------------------------------------------------------------- dispatch

def read_rows(path: Path) -> list[RawRow]:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return read_csv_rows(path)
    if suffix in SQL_SUFFIXES:
        return read_sql_rows(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix in HTML_SUFFIXES:
        text = html_to_text(text)
    elif suffix not in TEXT_SUFFIXES:
        raise DataError(f"{path}: unknown kind of file", fix=f"Use one of: {', '.join(ALL_SUFFIXES)}.")
    return [RawRow(path.name, {"text": text}, False)]


def expand_sources(sources: list[str | Path]) -> list[Path]:
    """Files named, plus the readable files inside directories named (sorted), each once."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ALL_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    return list(dict.fromkeys(files))
