"""`lorapilot prepare`: raw material (HTML, CSV, SQL dumps, text) to a training JSONL.

Each output line is `{"text": ...}`, or `{"instruction": ..., "output": ...}`
when a column pair is chosen, which the data layer reads as completion and
alpaca data. On the way, empty rows are dropped, duplicates (equal after
whitespace normalisation) are dropped unless asked not to, and, when asked,
rows carrying synthetic-data phrases. The report says what was dropped and why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.diagnose.cleaning import SlopMatcher, normalise_whitespace
from engine.diagnose.raw_sources import RawRow, expand_sources, read_rows
from engine.errors import DataError, UserError

# Reasons a row is dropped, as the report names them.
EMPTY, DUPLICATE, SLOP = "empty", "duplicate", "slop phrase"
# Fewer than this and the data doctor will warn (the seeds' checklist).
FEW_RECORDS = 100
# How many sources the report names per drop reason.
SOURCES_SHOWN = 5


@dataclass
class PrepareReport:
    out: Path | None = None
    files: list[tuple[str, int]] = field(default_factory=list)  # (file, rows read)
    written: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    dropped_sources: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few sources
    slop_phrases: Counter = field(default_factory=Counter)  # phrase -> rows dropped for it

    def drop(self, reason: str, source: str) -> None:
        self.dropped[reason] += 1
        shown = self.dropped_sources.setdefault(reason, [])
        if len(shown) < SOURCES_SHOWN:
            shown.append(source)

    @property
    def rows_read(self) -> int:
        return sum(n for _, n in self.files)

    def lines(self) -> list[str]:
        lines = [f"read {self.rows_read} rows from {len(self.files)} file(s)"]
        lines += [f"  {name}: {n}" for name, n in self.files]
        for reason, n in self.dropped.most_common():
            lines.append(f"dropped {n} ({reason}): e.g. {', '.join(self.dropped_sources[reason])}")
        if self.slop_phrases:
            lines.append("  phrases: " + ", ".join(f"\"{p}\" x{n}" for p, n in self.slop_phrases.most_common(5)))
        lines.append(f"wrote {self.written} records" + (f" to {self.out}" if self.out else ""))
        if 0 < self.written < FEW_RECORDS:
            lines.append(f"note: fewer than {FEW_RECORDS} records rarely teach a model anything that generalises")
        return lines

    def to_dict(self) -> dict:
        return {"out": str(self.out) if self.out else None, "files": [list(f) for f in self.files],
                "written": self.written, "dropped": dict(self.dropped), "dropped_sources": self.dropped_sources,
                "slop_phrases": dict(self.slop_phrases)}


def _columns_text(rows: list[RawRow]) -> str:
    names = dict.fromkeys(k for r in rows for k in r.fields if "." not in k)
    return ", ".join(names) or "none"


def _choose_fields(rows: list[RawRow], path: Path, column: str | None,
                   pair: tuple[str, str] | None) -> dict[str, str]:
    """Output field -> input field for this file's rows."""
    if not rows:
        return {}
    if not rows[0].tabular:
        if pair:
            raise UserError(f"{path}: a document has no columns for --instruction-column/--output-column",
                            fix="Use column pairs with CSV or SQL sources only.")
        return {"text": "text"}
    if pair:
        wanted = {"instruction": pair[0], "output": pair[1]}
    elif column is not None:
        wanted = {"text": column}
    else:
        plain = [k for k in rows[0].fields if "." not in k]
        if len(plain) != 1:
            raise UserError(f"{path}: choose the columns to use",
                            problems=[f"columns: {_columns_text(rows)}"],
                            fix="--instruction-column C --output-column C for prompts and their responses, or "
                                "--column C for one column of text")
        wanted = {"text": plain[0]}
    missing = [c for c in wanted.values() if not any(c in r.fields for r in rows)]
    if missing:
        raise UserError(f"{path}: no column {', '.join(repr(c) for c in missing)}",
                        problems=[f"columns: {_columns_text(rows)}"])
    return wanted


def _records(rows: list[RawRow], fields: dict[str, str], report: PrepareReport) -> list[tuple[str, dict]]:
    records = []
    for row in rows:
        record = {out: (row.fields.get(src) or "").strip() for out, src in fields.items()}
        if not all(record.values()):
            report.drop(EMPTY, row.source)
        else:
            records.append((row.source, record))
    return records


def clean_records(records: list[tuple[str, dict]], report: PrepareReport, *, filter_slop: bool = False,
                  dedup: bool = True, slop: SlopMatcher | None = None) -> list[dict]:
    """Drops duplicates and (opt-in) slop, counting each in the report; keeps the first of duplicates."""
    matcher = (slop or SlopMatcher()) if filter_slop else None
    seen: set[str] = set()
    kept = []
    for source, record in records:
        if dedup:
            key = "\x00".join(normalise_whitespace(v) for v in record.values())
            if key in seen:
                report.drop(DUPLICATE, source)
                continue
            seen.add(key)
        if matcher is not None:
            # What the model learns to say: the output, or the whole text.
            found = matcher.find(record.get("output", record.get("text", "")))
            if found:
                report.drop(SLOP, source)
                report.slop_phrases.update(found)
                continue
        kept.append(record)
    return kept


def _write_jsonl(records: list[dict], out: Path) -> None:
    from engine.rundir import replace_file

    out.parent.mkdir(parents=True, exist_ok=True)
    # A reader never sees half a file; the temporary file is one of its own (OUT.jsonl.tmp was the user's to lose).
    replace_file(out, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8"))


def prepare(sources: list[str | Path], out: str | Path, *, column: str | None = None,
            instruction_column: str | None = None, output_column: str | None = None,
            filter_slop: bool = False, dedup: bool = True, slop: SlopMatcher | None = None) -> PrepareReport:
    """Reads every source, cleans, writes `out` (JSONL) and returns what happened."""
    if (instruction_column is None) != (output_column is None):
        raise UserError("--instruction-column and --output-column go together", fix="Give both, or --column.")
    if column and instruction_column:
        raise UserError("--column and --instruction-column/--output-column exclude each other")
    # Both given or neither (checked above): `is not None` only tells mypy so.
    pair = (instruction_column, output_column) if instruction_column and output_column is not None else None
    out = Path(out)
    files = expand_sources(sources)
    if not files:
        raise DataError("no readable files among the sources", fix="Give .html, .csv, .sql or .txt files.")
    if out.resolve() in {f.resolve() for f in files}:
        raise UserError(f"{out}: the output would overwrite a source", fix="Choose another --out path.")
    report = PrepareReport(out=out)
    records: list[tuple[str, dict]] = []
    for path in files:
        rows = read_rows(path)
        report.files.append((str(path), len(rows)))
        records += _records(rows, _choose_fields(rows, path, column, pair), report)
    kept = clean_records(records, report, filter_slop=filter_slop, dedup=dedup, slop=slop)
    if not kept:
        raise DataError("nothing left to write: every row was dropped", problems=report.lines())
    _write_jsonl(kept, out)
    report.written = len(kept)
    return report
