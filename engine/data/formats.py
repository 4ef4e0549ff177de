"""Reading datasets and recognising their layout.

Inputs: a .jsonl/.json/.csv/.tsv/.parquet file, a directory of them, or a hub
dataset id. Output: rows normalised to one shape per format, plus where each
row came from ("train.jsonl:12", "train.csv:7", "train.parquet: row 3"; see
`where`) so that every later error can name it.

- alpaca:      {"instruction", "input", "output"[, "system"]}
- chat:        {"messages": [{"role": user|assistant|system, "content"[, "weight": 0]}]}
               (ShareGPT `conversations` with from/value is mapped here; a row with
               tool definitions, tool calls or tool turns is refused: text only;
               content parts are joined, an image part refused; an answer's
               `weight: 0` (axolotl's `training: false`) leaves it untrained;
               `train_detail` is refused; a list stored as JSON text is read;
               TRL's conversational {"prompt": [...], "completion": [...]} is read
               as its prompt's turns, then the completion's, the completion trained)
- completion:  {"prompt", "completion"}
- text:        {"text"}

JSON and JSON Lines are parsed here in pure Python rather than through
`datasets`: we need the line of every row for error messages anyway (so every
line is parsed once regardless), and Arrow's schema inference rejects rows
whose types differ (a `content` that is a list in one row and a string in
another) with a message that names neither file nor line. CSV (and TSV, its tab-separated twin),
Parquet and hub datasets go through `datasets.load_dataset`, imported inside the
functions that need it (it takes a second to import).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import DataError, shell_word, type_word
from engine.settings import DATA_SUFFIXES

if TYPE_CHECKING:
    from engine.config import DatasetConfig

EXTENSIONS = DATA_SUFFIXES
FORMATS = ("alpaca", "chat", "completion", "text")
EXPECTED = ("alpaca (instruction, input, output), chat (messages with role/content, or ShareGPT "
            "conversations with from/value), completion (prompt, completion), text (text)")
# ShareGPT's human/gpt; Gemma writes the assistant's turns as "model"; some chat exports as "bot"
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "human": "user", "gpt": "assistant",
         "model": "assistant", "bot": "assistant"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ---------------------------------------------------------------- reading raw rows

def where(name: str | Path, line: int | None = None, *, nth: int | None = None, unit: str = "row") -> str:
    """Where a row is, as every message names it: "train.jsonl:12", the line it starts on, where the file has lines
    an editor shows; else the format's unit counted from 1, "train.parquet: row 3" (a JSON array's element, a CSV
    record the two CSV readers split differently). Not a 0-based "[2]": it read as a line, or sent the user to
    the row after the one meant."""
    return f"{name}:{line}" if line is not None else f"{name}: {unit} {nth}"


def _os_error(path: Path, e: OSError) -> DataError:
    """An unreadable file (permissions, I/O error, a path that vanished) as a user error naming it."""
    if isinstance(e, PermissionError):
        return DataError(f"{path}: permission denied", fix="check the file's owner and mode (ls -l)")
    return DataError(f"{path}: cannot read: {e.strerror or type(e).__name__}",
                     fix="check the disk or the network mount the file is on")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _os_error(path, e) from None


def _first_bytes(path: Path, n: int = 1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise _os_error(path, e) from None


def _line_of(text: str, e: ValueError) -> int | None:
    """The line of a whole-file JSON value that a huge number or deep nesting is on (for the message)."""
    if isinstance(e, _HugeNumber):
        pos = text.find(e.digits)
    elif isinstance(e, _TooDeep):
        pos = _deepest_point(text)
    else:
        return None
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def _deepest_point(text: str, limit: int = 500) -> int:
    """Where bracket nesting (outside strings) first exceeds `limit`; -1 if it never does."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return m.start()
        elif c in "]}":
            depth -= 1
    return -1


def _check_text_file(path: Path) -> str:
    """The file's text; a clear error for empty and binary files."""
    data = _read_bytes(path)
    if not data.strip():
        raise DataError(f"{path}: the file is empty", fix="point dataset.path at a file with examples")
    # A NUL byte never occurs in UTF-8 text; it is the cheap tell of a binary file (a zip, a model, an image).
    if b"\x00" in data[:8192]:
        raise DataError(f"{path}: not a text file (binary content)",
                        fix="use a .jsonl, .json, .csv or .tsv text file, or name a .parquet file .parquet")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1   # the line an editor opens; the byte alone sent the user counting
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {e.start}): {e.reason}",
                        fix="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


class _HugeNumber(ValueError):
    """A JSON integer longer than Python converts (sys.get_int_max_str_digits); carries its digits."""

    def __init__(self, digits: str):
        super().__init__(digits)
        self.digits = digits


def _parse_int(digits: str) -> int:
    # Python refuses to convert integers of more than ~4300 digits (a guard against quadratic time);
    # raising our own error keeps the digits so that the message can say where they are.
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _HugeNumber(digits)
    return int(digits)


class JsonFloat(float):
    """A JSON number written with a fraction or an exponent, and the text it was written as: in a text field the
    model trains on that text ("1e5", "0.10", "2.50"), not Python's float of it ("100000.0", "0.1", "2.5"). A
    number everywhere else (a message's weight)."""

    literal: str

    def __new__(cls, literal: str) -> JsonFloat:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number


# Python's own limit (sys.get_int_max_str_digits), fixed here so the reader does not depend on a setting.
MAX_INT_DIGITS = 4300
# A lone UTF-16 surrogate escape (\ud800 without its pair) parses to a str that cannot be encoded as UTF-8:
# tokenizers reject it much later with a TypeError naming nothing. Escapes are rare, so the raw line is
# searched first and only lines that have one are checked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_json(text: str) -> object:
    """json.loads, with the inputs it fails on badly (deep nesting, huge integers) as ValueErrors."""
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=JsonFloat)
    except RecursionError:
        raise _TooDeep() from None


class _TooDeep(ValueError):
    """Arrays or objects nested deeper than the parser's recursion limit."""


def _decode_error_text(e: json.JSONDecodeError) -> str:
    """json's message and its column: a message that ends in "at" ("Unterminated string starting at", "Invalid
    control character at") reads on into the column, as json's own text does, not "starting at (column 17)"."""
    if e.msg.endswith(" at"):
        return f"invalid JSON: {e.msg} column {e.colno}"
    return f"invalid JSON: {e.msg} (column {e.colno})"


def _bad_json_reason(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return _decode_error_text(e)
    if isinstance(e, _HugeNumber):
        return f"a number with {len(e.digits.lstrip('-'))} digits (more than {MAX_INT_DIGITS}); quote it as text"
    if isinstance(e, _TooDeep):
        return "arrays or objects nested too deeply to read"
    return f"invalid JSON: {e}"


def _lone_surrogate(value: object) -> str | None:
    """The first text in a parsed JSON value that holds a lone surrogate (not encodable as UTF-8), or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return v
        elif isinstance(v, dict):
            stack += list(v.keys()) + list(v.values())
        elif isinstance(v, list):
            stack += v
    return None


def _check_surrogates(obj: object, raw: str, where: str) -> None:
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(obj) is not None:
        raise DataError(f"{where}: text with a lone surrogate escape (\\ud800-\\udfff without its pair), "
                        "which is not valid Unicode", fix="remove the escape or write the character itself")


def jsonl_lines(stream: Iterable[str]) -> Iterator[str]:
    """The lines of JSON Lines text, from a stream read with universal newlines (open(..., newline=None), or
    io.StringIO(text, newline=None)): a line ends at "\n", "\r\n" or a lone "\r" (old Mac files), as editors count
    them, and never at U+2028, U+2029 or U+0085, which JSON writes raw inside strings (ensure_ascii=False) and
    str.splitlines splits at. JSON has no raw "\r" inside a string. The reader and the estimate's count use it."""
    yield from stream


def _read_jsonl_text(text: str, path: Path) -> tuple[list[dict], list[str]]:
    rows, sources = [], []
    for lineno, line in enumerate(jsonl_lines(io.StringIO(text, newline=None)), start=1):
        if not line.strip():
            continue
        try:
            # Without its newline: json counts that as a second line, and every error at the line's end (a missing
            # brace) was reported at column 1.
            obj = _parse_json(line.rstrip("\n"))
        except ValueError as e:
            fix = "each line must be one JSON object" if isinstance(e, json.JSONDecodeError) else None
            raise DataError(f"{path}:{lineno}: {_bad_json_reason(e)}", fix=fix) from None
        _check_surrogates(obj, line, f"{path}:{lineno}")
        if not isinstance(obj, dict):
            raise DataError(f"{where(path, lineno)}: expected a JSON object, got {type_word(obj)}")
        rows.append(obj)
        sources.append(where(path, lineno))
    return rows, sources


def _read_json(path: Path) -> tuple[list[dict], list[str]]:
    text = _check_text_file(path)
    try:
        data = _parse_json(text)
    except json.JSONDecodeError as e:
        # "Extra data" after a first complete value: the file is JSON Lines under a .json name.
        if e.msg == "Extra data" and path.suffix == ".json":
            return _read_jsonl_text(text, path)
        raise DataError(f"{path}:{e.lineno}: {_decode_error_text(e)}") from None
    except ValueError as e:
        line = _line_of(text, e)
        raise DataError(f"{path}{f':{line}' if line else ''}: {_bad_json_reason(e)}") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a list of objects (or JSON Lines), got an object with keys "
                            f"{', '.join(map(str, data))}")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or JSON Lines), got {type_word(data)}")
    if not data:
        raise DataError(f"{path}: the file has no examples (an empty list)")
    has_escape = bool(_SURROGATE_ESCAPE.search(text))
    sources = _element_sources(text, path, len(data))
    for obj, source in zip(data, sources):
        if not isinstance(obj, dict):
            raise DataError(f"{source}: expected a JSON object, got {type_word(obj)}")
        if has_escape:
            _check_surrogates(obj, text, source)
    return data, sources


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _element_starts(text: str) -> list[int]:
    """Where each element of the file's list of rows starts in its text: the top-level array's, or that of the one
    array inside a top-level object. For text json.loads has read already (so this cannot fail): each element is
    skipped with the json module's own decoder, at C speed; numbers are kept as text, never converted."""
    decoder = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)

    def skip(pos: int) -> int:
        return _JSON_SPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string too

    def members(pos: int, close: str):
        """(start of each member, after it) of the array or object whose bracket is at pos."""
        pos = skip(pos + 1)
        while text[pos] != close:
            start = pos
            if close == "}":  # a key and its colon come before the value
                _, pos = decoder.raw_decode(text, pos)
                pos = skip(skip(pos) + 1)
                start = pos
            _, pos = decoder.raw_decode(text, pos)
            yield start, pos
            pos = skip(pos)
            if text[pos] == ",":
                pos = skip(pos + 1)

    top = skip(0)
    if text[top] == "{":  # {"data": [...]}: its one array (the reader refuses others); of a repeated key, the last
        top = [start for start, _ in members(top, "}") if text[start] == "["][-1]
    return [start for start, _ in members(top, "]")]


def _element_sources(text: str, path: Path, count: int) -> list[str]:
    """Where each of the `count` elements of a JSON file's list is: the line it starts on; "element N" where elements
    share lines (a file on one line), as a line would not tell them apart."""
    starts = _element_starts(text)
    if len(starts) != count:  # not the list json.loads kept (cannot happen as far as known): never a wrong line
        starts = []
    lines, line, last = [], 1, 0
    for pos in starts:
        line += text.count("\n", last, pos)
        lines.append(line)
        last = pos
    if starts and len(set(lines)) == len(lines):
        return [where(path, n) for n in lines]
    return [where(path, nth=i + 1, unit="element") for i in range(count)]


def _read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    return _read_jsonl_text(_check_text_file(path), path)


# The field separator of each delimited-text suffix (a .tsv file is a CSV file split by tabs, read by the same rules)
DELIMITERS = {".csv": ",", ".tsv": "\t"}
# What a user meant when the header row reads as one column holding one of these
_SEPARATOR_WORDS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def delimiter_of(path: Path) -> str:
    """The field separator a delimited-text file is read with: a tab for .tsv, else a comma."""
    return DELIMITERS.get(path.suffix.lower(), ",")


def _check_header_is_split(header: list[str], delimiter: str, path: Path, line: int) -> None:
    """A DataError where the header row is one column holding another separator: a spreadsheet saved with
    semicolons (a European locale's "CSV"), or a tab-separated file named .csv. Read as it is, every row was one
    column named like the whole header: refused as no known format, or, with dataset.format set, a missing field,
    in words that never said why."""
    if len(header) != 1:
        return
    found = [d for d in _SEPARATOR_WORDS if d != delimiter and d in header[0]]
    if not found:
        return
    meant = max(found, key=header[0].count)
    shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
    if meant == "\t":
        fix = "name the file .tsv (tab-separated), or save it with commas between the fields"
    elif meant == ",":
        fix = "name the file .csv (comma-separated), or save it with tabs between the fields"
    else:
        fix = ("save it with commas between the fields (a spreadsheet's \"CSV, comma-delimited\"), or with tabs and "
               "name it .tsv")
    raise DataError(f"{path}:{line}: the header row is one column, {shown!r}: the fields are separated by "
                    f"{_SEPARATOR_WORDS[meant]}, but a {path.suffix or 'CSV'} file is split on "
                    f"{_SEPARATOR_WORDS[delimiter]}", fix=fix)


class CsvSyntaxError(ValueError):
    """Text Python's csv module cannot split into records; `line` is where it stopped."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


def csv_records(text: str, path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(the line it starts on, its fields) for each record of CSV text, the header first; empty and whitespace-only
    lines left out as pandas' reader leaves them out. The one rule for where a CSV record is: a quoted field may hold
    newlines, so a record's index is not its line, nor is the line the csv module is on after reading it (its last).

    A DataError for a record with more fields than the header (an unquoted comma in a text): pandas reads a first
    such row's extra fields as the row index and shifts its text into the wrong columns, and a DictReader files them
    under no column, silently; and for a header row that is one column holding another separator
    (_check_header_is_split). A CsvSyntaxError where the csv module cannot split the text."""
    csv.field_size_limit(sys.maxsize)  # a long text column exceeds the 128 KiB default; pandas has no such limit
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = 0
    end = 0  # the last line of the previous record
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            # pandas skips empty and whitespace-only lines; the csv module returns them as [] or ['  ']
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header:
                _check_header_is_split(row, delimiter, path, start)
            if header and len(row) > header:
                raise DataError(f"{path}:{start}: {len(row)} fields, but the header has {header}",
                                fix="quote a text that holds a comma (\"like, this\") or remove the extra fields")
            header = header or len(row)
            yield start, row
    except csv.Error as e:
        raise CsvSyntaxError(reader.line_num, str(e)) from None


def csv_record_lines(text: str, path: Path) -> list[int] | None:
    """The line each data record of CSV (or TSV: delimiter_of) text starts on (csv_records, the header left out); None
    where Python's csv module cannot parse the text. A message saying "[3]" sent the user counting rows in an editor
    that shows lines."""
    try:
        return [line for line, _ in itertools.islice(csv_records(text, path, delimiter_of(path)), 1, None)]
    except CsvSyntaxError:
        return None


def _csv_as_written(text: str, path: Path) -> dict:
    """load_dataset's options that read every cell of CSV text as the text written (_csv_text_options), with its
    columns named as pandas names them (a repeated name gets ".1", an empty one "Unnamed: 2"): named from the header
    as written, such a column stayed typed."""
    import pandas as pd

    try:
        names = [str(name) for name in pd.read_csv(io.StringIO(text), sep=delimiter_of(path), nrows=0).columns]
    except Exception:  # noqa: BLE001 - a header pandas cannot read: load_dataset says why, naming the file
        names = []
    return _csv_text_options(names)


def _csv_text_options(names: list[str]) -> dict:
    """load_dataset's options that read every CSV cell as the text written: pandas typed a column of numbers ("007"
    read "7.0", "3.10" read "3.1", "00501" read 501.0) and read the words "None", "NA", "null", "nan" as missing (an
    answer "None" trained as an empty one). An empty cell is missing, as before. names: the columns, as pandas names
    them (every one read as a string)."""
    import datasets

    options: dict = {"keep_default_na": False, "na_values": [""]}
    if names and len(set(names)) == len(names):
        options["features"] = datasets.Features({name: datasets.Value("string") for name in names})
    return options


def _read_with_datasets(path: Path) -> tuple[list[dict], list[str]]:
    kind = path.suffix.lstrip(".").lower()
    delimited = path.suffix.lower() in DELIMITERS
    lines: list[int] | None = None
    options: dict = {}
    if delimited:
        text = _check_text_file(path)
        lines = csv_record_lines(text, path)
        if lines == []:  # datasets words it 'Instruction "train" corresponds to no data!'
            raise DataError(f"{path}: the file has no rows (a header only)")
        options = {**_csv_as_written(text, path), "sep": delimiter_of(path)}
    elif not _first_bytes(path):  # also says "permission denied" before pyarrow words it its own way
        raise DataError(f"{path}: the file is empty")
    import datasets

    datasets.disable_progress_bars()
    level = datasets.logging.get_verbosity()
    # datasets logs a broken Parquet file's error itself ("Failed to read schema ...") before raising it: the user
    # saw the reason twice, once without lorapilot's prefix.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        ds = datasets.load_dataset("csv" if delimited else kind, data_files=str(path), split="train", **options)
    except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types; all mean "this file cannot be read"
        cause: BaseException = e
        while cause.__cause__ is not None:  # "An error occurred while generating the dataset" wraps pandas' reason
            cause = cause.__cause__
        reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise DataError(f"{path}: cannot read as {kind.upper()}: {reason}") from None
    finally:
        datasets.logging.set_verbosity(level)
    rows = ds.to_list()
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    if lines is not None and len(lines) == len(rows):
        return rows, [where(path, line) for line in lines]
    # A CSV split differently by the two readers: its record, counted after the header. Parquet has no lines.
    unit = "record" if delimited else "row"
    return rows, [where(path, nth=i + 1, unit=unit) for i in range(len(rows))]


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_with_datasets, ".tsv": _read_with_datasets,
            ".parquet": _read_with_datasets}


def _looks_like_hub_id(path: str) -> bool:
    return (bool(_HUB_ID.match(path)) and not path.startswith(".")
            and not path.lower().endswith(EXTENSIONS) and "/" in path)


def load_hub_dataset(repo_id: str, notes: list[str]):
    """A hub dataset's train split (a datasets.Dataset), loaded as the trainer loads it. With the hub out of reach
    (or HF_HUB_OFFLINE set) its copy in datasets' cache is read, and a line in `notes` says so and which revision
    was read (engine.hub.read_from); refused only when nothing is cached."""
    import datasets

    from engine.hub import has_cached_copy, hub_reachable, read_from
    from engine.settings import hub_offline

    datasets.disable_progress_bars()
    fix = "download it where there is network (it is cached then), or point dataset.path at a local file"
    offline, why = hub_offline(), None
    if offline or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub is unreachable (offline?)"
        if not has_cached_copy(repo_id):
            raise DataError(f"{repo_id}: not a local path, {why}, and the dataset is not in the cache "
                            f"({datasets.config.HF_DATASETS_CACHE})", fix=fix)
    ds = _load_hub(repo_id, offline=why is not None, fix=fix, notes=notes)
    if why is not None and (copy := read_from(ds)) is not None:
        notes.append(copy.line(repo_id, why))
    return ds


def _read_hub(repo_id: str, notes: list[str], revisions: dict[str, str]) -> tuple[list[dict], list[str]]:
    """A hub dataset's train split as rows (load_hub_dataset); the revision read goes into `revisions`."""
    from engine.hub import read_from

    ds = load_hub_dataset(repo_id, notes)
    if (copy := read_from(ds)) is not None:
        revisions[repo_id] = copy.revision
    rows = ds.to_list()
    if not rows:
        raise DataError(f"{repo_id}: the dataset's train split has no rows")
    return rows, [where(repo_id, nth=i + 1) for i in range(len(rows))]


def _load_hub(repo_id: str, *, offline: bool, fix: str, notes: list[str]):
    """datasets.load_dataset's train split; offline: from the cache only, datasets' own notices about it silenced
    (lorapilot's line says it). A dataset of CSV files is read with every cell as the text written, as a local CSV
    file is (_csv_text_options): datasets' csv builder typed its columns as pandas does (a zip code "00501" trained as
    "501.0", an answer "NA" as an empty one). Where that cannot be read (offline, a cache holding only the typed
    copy), the typed copy is read and `notes` says so."""
    import datasets

    level, was_offline = datasets.logging.get_verbosity(), datasets.config.HF_HUB_OFFLINE
    if offline:
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)
        datasets.config.HF_HUB_OFFLINE = True   # datasets reads the cache without asking the hub first
    try:
        ds = datasets.load_dataset(repo_id, split="train")
    except Exception as e:  # noqa: BLE001 - network, auth, missing split: all end the same way for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where_from = "the cached copy of " if offline else ""
        raise DataError(f"{repo_id}: cannot load {where_from}the hub dataset: {reason}", fix=fix) from None
    else:
        if ds.info.builder_name != "csv":
            return ds
        try:
            return datasets.load_dataset(repo_id, split="train", **_csv_text_options(ds.column_names))
        except Exception:  # noqa: BLE001 - the typed copy is read, and the note says what that means
            notes.append(f"{repo_id}: its CSV files were read with the columns pandas typed (a column of numbers "
                         "loses its leading zeros and trailing decimal zeros: 00501 reads 501.0; NA, null and None "
                         "read as empty), the only copy that could be read" + (" offline" if offline else "")
                         + "; load it once with network to read every cell as written")
            return ds
    finally:
        datasets.logging.set_verbosity(level)
        datasets.config.HF_HUB_OFFLINE = was_offline


def lorapilots_own_folder(p: Path) -> bool:
    """A run directory (status.json, metrics.jsonl, its lock) or a sweep directory (sweep.json) of lorapilot's."""
    from engine.rundir import LOCK_FILE, is_run_dir
    from engine.sweep.sweepdir import SWEEP_FILE

    return is_run_dir(p) or (p / LOCK_FILE).exists() or (p / SWEEP_FILE).is_file()


def _dir_files(path: Path) -> list[Path]:
    """The data files under a folder. lorapilot's own run and sweep folders under it are skipped: `dataset.path: .`
    with runs/ beside the data means the data, and metrics.jsonl, status.json and trainer_state.json are no rows
    (read as rows they were refused as a data file with the wrong fields; and they grow while the run trains)."""
    files: list[Path] = []
    skipped: list[Path] = []
    for parent, dirs, names in os.walk(path):
        here = Path(parent)
        own = [d for d in dirs if not d.startswith(".") and lorapilots_own_folder(here / d)]
        skipped += [here / d for d in sorted(own)]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in own)
        files += [here / n for n in names if not n.startswith(".") and Path(n).suffix.lower() in EXTENSIONS
                  and (here / n).is_file()]
    if not files:
        note = f" (lorapilot's run folders under it are skipped: {', '.join(str(s) for s in skipped[:3])})" \
            if skipped else ""
        raise DataError(f"{path}: the directory has no {', '.join(EXTENSIONS)} files{note}",
                        fix="point dataset.path at the data files or their folder" if skipped else None)
    return sorted(files)


def read_file_rows(path: Path) -> tuple[list[dict], list[str]]:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
                        f"expected one of {', '.join(EXTENSIONS)}")
    return reader(path)


# ---------------------------------------------------------------- formats

def detect_format(rows: list[dict], where: str, source: str = "", folder: str = "") -> str:
    """The format named by the fields of the first rows (the union, so an optional field may be missing).
    source: the file read (a CSV's refusal names the `lorapilot prepare` command that turns it into one); folder:
    the dataset.path folder it was read from, if any (the training file is made outside it)."""
    keys: set[str] = set()
    for row in rows[:100]:
        keys.update(row)
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "chat" if _conversational_completion(rows[:100]) else "completion"
    if "text" in keys:
        return "text"
    found = ", ".join(sorted(map(str, keys))) or "(none)"
    raise DataError(f"{where}: no known format matches the fields found: {found}",
                    problems=[f"expected one of: {EXPECTED}"], fix=_fields_fix(keys, source, folder))


# The names a question and its answer often go by in data made elsewhere, likeliest first.
_QUESTION_NAMES = ("question", "query", "prompt", "input", "user", "human", "q")
_ANSWER_NAMES = ("answer", "response", "reply", "output", "target", "assistant", "gpt", "a")


def _fields_fix(keys: set[str], source: str, folder: str = "") -> str:
    """What to do with rows no format reads. No dataset.format can help (each format reads its own fields); a
    question and an answer under other names (question/answer, prompt/response) are named with their renames, or,
    in a CSV, with the `lorapilot prepare` command that makes the training file and the dataset.path that reads it.
    A CSV read from a folder gets its training file beside the folder: made inside it, the CSV beside it would
    still be read, and refused again."""
    lower = {str(k).lower(): str(k) for k in keys}
    question = next((lower[n] for n in _QUESTION_NAMES if n in lower), None)
    answer = next((lower[n] for n in _ANSWER_NAMES if n in lower), None)
    guessed = question is not None and answer is not None and question != answer
    if Path(source).suffix.lower() in (".csv", ".tsv"):
        out = str(_outside(folder) / Path(source).with_suffix(".jsonl").name if folder
                  else Path(source).with_suffix(".jsonl"))   # beside the folder, or beside the file
        if not guessed:   # the command with the columns to name, not a guess at them
            question, answer = "QUESTION_COLUMN", "ANSWER_COLUMN"
        return (f"make a training file of it: `lorapilot prepare {shell_word(source)} --instruction-column "
                f"{shell_word(question)} --output-column {shell_word(answer)} --out {shell_word(out)}`"
                f"{'' if guessed else ' (with your columns)'}, then set dataset.path to {out}; or rename the columns")
    if question is None or answer is None or not guessed:
        return "rename the fields to those of one of these formats"
    want = ("prompt", "completion") if question.lower() == "prompt" else ("instruction", "output")
    renames = [f"{old} -> {new}" for old, new in zip((question, answer), want) if old != new]
    return f"rename the fields: {', '.join(renames)} (the {'completion' if want[0] == 'prompt' else 'alpaca'} format)"


def _outside(folder: str) -> Path:
    """The folder that holds `folder` (".", "..", "a/.." have no lexical parent outside them: made absolute)."""
    p = Path(os.path.expanduser(folder))
    return (p if p.name not in ("", ".", "..") else Path(os.path.abspath(p))).parent


# A float that is no JSON number: a Parquet file's or a hub dataset's typed column. The text it was made from is gone.
_TYPED_FLOAT_NOTE = ("some text fields are stored as floating-point numbers (a Parquet file's or a hub dataset's typed "
                     "column): trained as Python writes them (3.0, 1e-05, 100000.0), which may not be the text they "
                     "were made from; store the column as strings to train on the text as written")


def _text(value, field: str, source: str, *, required: bool, notes: list[str] | None = None) -> str:
    if isinstance(value, float) and math.isnan(value):
        value = None  # pandas' empty cell of a number column (and JSON's NaN): no text, not the text "nan"
    if value is None:
        if required:
            raise DataError(f"{source}: missing field {field!r}")
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, JsonFloat):
        return value.literal  # as the JSON file writes it: 1e5, not 100000.0
    if isinstance(value, float) and notes is not None and _TYPED_FLOAT_NOTE not in notes:
        notes.append(_TYPED_FLOAT_NOTE)
    # a JSON integer (its digits, as written), a Parquet or hub dataset's typed column (its value: the text it was
    # made from is gone)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{source}: field {field!r} must be text, got {type_word(value)}")


def _content(value, key: str, source: str, notes: list[str] | None = None) -> str:
    """A message's text. OpenAI-style content parts ([{"type": "text", "text": ...}]) are joined with nothing between
    them, as Hugging Face's chat templates that read parts join them (Gemma 3, Llama 3.2 Vision, Qwen2-VL), a note
    saying so where a message has several; a part of any other type (an image, audio, "input_text") is refused: read
    without it (as it was), the answer trained on a question about an image the model never saw, or on no text."""
    if isinstance(value, list) and not value:
        return ""   # no parts: no text, as null is (Arrow writes a missing list so)
    if not (isinstance(value, list) and all(isinstance(p, dict) for p in value)):
        return _text(value, key, source, required=False, notes=notes)
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if part.get("type") is not None else _untyped_part(part)
        if kind != "text":
            what = "an image part" if isinstance(kind, str) and "image" in kind else "a part"
            raise DataError(f"{source}: {key}[{j}] is {what} of type {json.dumps(kind, default=str)}: lorapilot "
                            "trains text models, and left out, the turn would train without what it refers to",
                            fix="leave out the rows with images or other media, or write what they show into the "
                                "text; a text part is {\"type\": \"text\", \"text\": ...}")
        texts.append(_text(part.get("text"), f"{key}[{j}].text", source, required=True, notes=notes))
    if len(texts) > 1 and notes is not None and _SEVERAL_PARTS_NOTE not in notes:
        notes.append(_SEVERAL_PARTS_NOTE)
    return "".join(texts)


def _untyped_part(part: dict) -> str | None:
    """The type of a part that names none ({"text": ...}; Parquet and Arrow write a type left out as null): text,
    unless it holds something else (an image beside a null text, as Arrow unites the parts' fields)."""
    return "text" if all(v is None for k, v in part.items() if k not in ("type", "text")) else None


_SEVERAL_PARTS_NOTE = ("messages with several text parts: joined with nothing between them, as Hugging Face's chat "
                       "templates that read parts join them (vLLM's server joins them with a newline)")
# A message's `weight` (axolotl's ShareGPT convention): 0 leaves an answer untrained, kept as context; 1 trains it.
# Kept in the normalised message only on an answer whose weight is 0, as `"weight": 0` (engine.data.template reads
# it): the other turns are never trained.
_WEIGHTS = (0, 1)


def _weight(m: dict, role: str, key: str, source: str, notes: list[str] | None) -> int:
    """A message's weight, 0 or 1 (absent or null: 1). A fraction is refused (no per-turn loss scale here). 1 on a
    turn that is no answer is read, a note saying it is not trained: datasets put a weight on every turn (OpenHermes),
    and only answers are trained here. axolotl's chat_template says the same with `training` (true or false), read
    as weight 1 or 0; its `train_detail` (character spans to train) cannot be honoured here, and is refused."""
    w, t = (_missing_as_none(m.get(k)) for k in ("weight", "training"))
    if w is not None and (not isinstance(w, (int, float)) or w not in _WEIGHTS):  # true and false are 1 and 0
        raise DataError(f"{source}: {key}.weight is {json.dumps(w, default=str)}; lorapilot "
                        "reads 0 (not trained, kept as context) or 1 (trained)",
                        fix="set each message's weight to 0 or 1, or leave it out")
    if t is not None and not isinstance(t, bool):
        raise DataError(f"{source}: {key}.training is {json.dumps(t, default=str)}; lorapilot "
                        "reads true (trained) or false (not trained, kept as context)",
                        fix="set each message's training to true or false, or leave it out")
    if w is not None and t is not None and bool(w) != t:
        raise DataError(f"{source}: {key} has weight {json.dumps(w)} and training {json.dumps(t)}; which one is meant?",
                        fix="keep one of the two")
    if _has_text(m.get("train_detail")):
        raise DataError(f"{source}: {key}.train_detail: character spans to train are not read: lorapilot trains "
                        "a whole answer or none of it",
                        fix="leave out train_detail; to keep an answer as context only, set its training to false")
    trained = int(w) if w is not None else int(t) if t is not None else 1
    if trained and role != "assistant" and (w is not None or t is not None) and notes is not None \
            and _WEIGHT_1_NOTE not in notes:
        notes.append(_WEIGHT_1_NOTE)
    return trained


def _missing_as_none(value):
    """None for an absent value: null, or Parquet's NaN."""
    return None if value is None or isinstance(value, float) and math.isnan(value) else value


_WEIGHT_1_NOTE = ("user and system turns with weight 1 (or training: true) in the data are not trained: lorapilot trains the answers only "
                  "(axolotl's chat_template would train them)")


def _messages(row: dict, source: str, notes: list[str] | None = None, key: str | None = None) -> list[dict]:
    key = key or ("messages" if "messages" in row else "conversations")
    turns = _json_list(row.get(key))
    if not isinstance(turns, list):
        raise DataError(f"{source}: field {key!r} must be a list of messages, "
                        f"got {type_word(turns)}")
    out = []
    for i, m in enumerate(turns):
        if not isinstance(m, dict):
            raise DataError(f"{source}: {key}[{i}] must be an object with role and content")
        role = m.get("role", m.get("from"))
        if "content" not in m and "value" not in m:
            # Read as empty, a turn under another key ("text") trained an answer to an empty question.
            raise DataError(f"{source}: {key}[{i}] has no content; found {', '.join(map(str, m)) or '(none)'}",
                            fix="name each message's text 'content' (ShareGPT: 'value')")
        content = m["content"] if "content" in m else m.get("value")
        if _has_tools(m.get("tool_calls")):
            raise DataError(f"{source}: {key}[{i}] has tool_calls: lorapilot trains text conversations, and the "
                            "chat template would write the call as the answer; read as absent, the turn trained "
                            "nothing and the turns after it followed a call never made", fix=_TOOLS_FIX)
        reasoning = next((k for k in _REASONING_KEYS if _has_text(m.get(k))), None)
        if reasoning:
            raise DataError(f"{source}: {key}[{i}] has {reasoning!r}: it is not read, and left out, the answer would "
                            "train without the reasoning it was written after",
                            fix=f"write the reasoning into the content as the model writes it (e.g. "
                                f"<think>...</think> before the answer), or leave out {reasoning!r}")
        mapped = ROLES.get(role) if isinstance(role, str) else None
        if mapped is None:
            raise DataError(f"{source}: {key}[{i}] has role {role!r}; expected user, assistant or system "
                            "(ShareGPT: human, gpt, system; also model, bot)")
        text_key = f"{key}[{i}].{'content' if 'content' in m else 'value'}"
        message: dict = {"role": mapped, "content": _content(content, text_key, source, notes)}
        if mapped == "system" and not message["content"].strip():
            # an empty system message (ShareGPT exports open with one) is none: kept, the row trained after an empty
            # system block no prompt at inference has, and a template without a system role refused the row
            continue
        if not _weight(m, mapped, f"{key}[{i}]", source, notes) and mapped == "assistant":  # other turns are not trained
            message["weight"] = 0
        out.append(message)
    return out


# A message's reasoning beside its content (Qwen3's and DeepSeek's templates read `reasoning_content`, gpt-oss's
# `thinking`): not read here, so refused where it holds text.
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _has_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip()) or isinstance(value, list) and bool(value)


def _conversational_completion(rows: list[dict]) -> bool:
    """TRL's conversational prompt-completion rows: {"prompt": [messages], "completion": [messages]}. A list of
    objects only: a plain prompt may be text that parses as a list ("[3, 1, 2]", a sorting task)."""
    return any(_is_message_list(_json_list(r.get("prompt"))) for r in rows if "completion" in r)


def _is_message_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _prompt_completion_messages(row: dict, source: str, notes: list[str] | None) -> list[dict]:
    """A conversational prompt-completion row as one conversation: the prompt's turns, then the completion's; an
    answer in the prompt is context (TRL trains the completion only), as an answer of weight 0."""
    prompt = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in _messages(row, source, notes, "prompt")]
    return prompt + _messages(row, source, notes, "completion")


def _json_list(value):
    """A list of messages as CSV (which has no lists) and many Parquet exports store it: JSON text in the cell."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = _parse_json(value)   # a number in it is its text, as in a JSON file (JsonFloat)
        except ValueError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


_TOOLS_FIX = ("leave out the rows with tools (and the 'tools' field), or write the tool definitions into the system "
              "message and the calls into the answers' text, as the model should read and write them")


def _has_tools(value) -> bool:
    """A row's tools or a message's tool_calls that hold something (an export's empty column holds nothing)."""
    if isinstance(value, str):
        return value.strip() not in ("", "[]", "null")
    return bool(value)


def _with_row_system(messages: list[dict], row: dict, source: str) -> list[dict]:
    """A chat row's top-level "system" field (ShareGPT exports, e.g. {"system": ..., "conversations": [...]}) as its
    first message: left out, the row trained without the instructions its answers were written under."""
    if row.get("system") is None:
        return messages
    system = _text(row["system"], "system", source, required=False)
    if not system.strip():
        return messages
    if messages and messages[0]["role"] == "system":
        if messages[0]["content"].strip() != system.strip():
            raise DataError(f"{source}: a 'system' field and a system message that differ; which one is meant?",
                            fix="keep one of the two")
        return messages
    return [{"role": "system", "content": system}, *messages]


# The fields each format reads from a row; any other field is left out of training.
READ_FIELDS = {"alpaca": ("instruction", "input", "output", "system"), "completion": ("prompt", "completion"),
               "text": ("text",), "chat": ("system",)}   # chat's messages field: normalize names what it found


@functools.lru_cache(maxsize=1024)  # asked for every field of every row: a dataset has a handful of names
def _near_field(key: str, wanted: tuple[str, ...]) -> list[str]:
    import difflib

    return difflib.get_close_matches(key.lower(), wanted, n=1, cutoff=0.8)


def _check_misspelt(row: dict, fmt: str, source: str) -> None:
    """A DataError for a field that is one the format reads, misspelt or in other case ("Input", "inptu"), where
    the row lacks that field: read as absent, its text would silently be left out of every such row."""
    wanted = tuple(f for f in READ_FIELDS.get(fmt, ()) if f not in row)
    for key in row:
        if not isinstance(key, str) or key in READ_FIELDS.get(fmt, ()):
            continue
        near = _near_field(key, wanted)
        if near:
            raise DataError(f"{source}: field {key!r} is not one the {fmt} format reads; did you mean {near[0]!r}? "
                            f"As it is, its text would be left out of training",
                            fix=f"rename the field to {near[0]!r} (the {fmt} format reads "
                                f"{', '.join(READ_FIELDS[fmt])})")


def normalize(row: dict, fmt: str, source: str, notes: list[str] | None = None) -> dict:
    """One row in the format's canonical shape; a DataError naming the row when it does not fit. `notes` gets what
    the user should know about how a row was read (content parts joined)."""
    _check_misspelt(row, fmt, source)
    if fmt == "chat":
        conversational = "messages" not in row and "conversations" not in row and _conversational_completion([row])
        if "messages" not in row and "conversations" not in row and not conversational:
            raise DataError(f"{source}: chat format needs a 'messages' (or 'conversations') field; "
                            f"found {', '.join(map(str, row)) or '(none)'}")
        if _has_tools(row.get("tools")):
            # Llama 3.1+, Qwen2.5/3, Granite and Mistral templates write them into the prompt
            raise DataError(f"{source}: field 'tools' (tool definitions) is not read: the chat template would write "
                            "them into the prompt, so the answers would train without the tools they were written "
                            "for", fix=_TOOLS_FIX)
        messages = (_prompt_completion_messages(row, source, notes) if conversational
                    else _messages(row, source, notes))
        return {"messages": _with_row_system(messages, row, source)}
    if fmt == "alpaca":
        out = {"instruction": _text(row.get("instruction"), "instruction", source, required=True, notes=notes),
               "input": _text(row.get("input"), "input", source, required=False, notes=notes),
               "output": _text(row.get("output"), "output", source, required="output" not in row, notes=notes)}
        system = _text(row.get("system"), "system", source, required=False, notes=notes)
        if system.strip():   # a blank one is none, as a chat row's blank system message (_messages)
            out["system"] = system
        return out
    if fmt == "completion":
        return {"prompt": _text(row.get("prompt"), "prompt", source, required="prompt" not in row, notes=notes),
                "completion": _text(row.get("completion"), "completion", source,
                                    required="completion" not in row, notes=notes)}
    if fmt == "text":
        return {"text": _text(row.get("text"), "text", source, required="text" not in row, notes=notes)}
    raise DataError(f"unknown dataset format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")


def check_found(path: str, key: str = "dataset.path", config_file: str | None = None) -> None:
    """A DataError for a dataset path that is no local file, no folder with data files, and no hub dataset id:
    a typo or a moved file. What `lorapilot estimate` and a sweep's dry run check without reading the data (a hub
    id passes: they need no network); said as the reader says it. A relative path names where it was looked for:
    beside `config_file` (the file it was read from, load_config's rule), then in the current folder."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        _dir_files(p)
    elif not p.is_file() and not _looks_like_hub_id(path):
        where = f"{config_file}: {key}: " if config_file else ""
        fix = f"check {key}{f' in {config_file}' if config_file else ''}"
        looked = ""
        if not p.is_absolute():
            here = Path.cwd() / p
            tried = [f"{here}, in the current folder"]
            if config_file:
                beside = Path(config_file).resolve().parent / p
                # A config in the current folder: one place, not named twice as if two.
                tried = [f"{beside}, beside the config file, in the current folder"] if beside == here else \
                    [f"{beside}, beside the config file", *tried]
                fix += "; a relative path is read beside the config file, then from the current folder"
            looked = f" (looked for {', and '.join(tried)})"
        raise DataError(f"{where}{path}: no such file or directory{looked}",
                        fix=f"{fix}; a hub dataset id looks like org/name")


def check_dataset_found(ds: DatasetConfig) -> None:
    """check_found for dataset.path and dataset.validation_path of a config's dataset section."""
    check_found(ds.path, config_file=ds.read_from.get(ds.path))
    if ds.validation_path:
        check_found(ds.validation_path, "dataset.validation_path", config_file=ds.read_from.get(ds.validation_path))


def source_files(path: str) -> list[Path]:
    """The local files a dataset path is read from: the file, a folder's data files (lorapilot's run and sweep
    folders, hidden and other files skipped), none for a hub id. The one rule for the reader and for what a run's
    data fingerprint covers (engine.data.fingerprint)."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        return _dir_files(p)
    return [p] if p.is_file() else []


def _read_source(path: str, notes: list[str], revisions: dict[str, str]) -> list[tuple[str, list[dict], list[str]]]:
    """[(name, rows, sources)] per file; one entry for a file or a hub id, several for a directory."""
    files = source_files(path)
    if files:
        return [(str(f), *read_file_rows(f)) for f in files]
    check_found(path)
    return [(path, *_read_hub(path, notes, revisions))]


def read_rows(path: str | os.PathLike, fmt: str = "auto", notes: list[str] | None = None,
              revisions: dict[str, str] | None = None) -> tuple[list[dict], str, list[str]]:
    """Read and normalise every row: (rows, format, sources). Cheap: no tokenizer, no model. `notes`: where what
    the user should know about the read goes (a hub dataset read from its cached copy). `revisions`: where a hub
    dataset's revision read goes ({id: revision}, engine.hub.read_from)."""
    path = str(path)
    if not path.strip():
        raise DataError("dataset.path is empty", fix="set dataset.path to a data file, a directory or a hub id")
    if fmt not in ("auto", *FORMATS):
        raise DataError(f"{path}: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    notes = notes if notes is not None else []
    parts = _read_source(path, notes, revisions if revisions is not None else {})
    folder = path if Path(os.path.expanduser(path)).is_dir() else ""
    chosen = fmt
    rows: list[dict] = []
    sources: list[str] = []
    for name, raw, srcs in parts:
        file_fmt = fmt if fmt != "auto" else detect_format(raw, srcs[0] if srcs else name, name, folder)
        if chosen == "auto":
            chosen = file_fmt
        elif file_fmt != chosen:
            raise DataError(f"{name}: this file is in {file_fmt} format but {parts[0][0]} is in {chosen} format",
                            fix="keep one format per dataset, or set dataset.format")
        rows += [normalize(r, file_fmt, s, notes) for r, s in zip(raw, srcs)]
        sources += srcs
    return rows, chosen, sources
