"""How many training examples a local dataset holds, cheaply (no `datasets` import)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config



def count_examples(path: str) -> int | None:
    """Rows in a local file or directory of files; None for a hub dataset or an unreadable format. The reader's rules
    (engine.data.formats): a folder's files as it finds them (subfolders too, lorapilot's run folders not), a .json
    with a BOM or holding JSON Lines; the estimate had refused those files, and counted a folder's top level only."""
    from engine.data.formats import read_file_rows, source_files

    p = Path(path).expanduser()
    if p.is_dir():
        counts = [count_examples(str(f)) for f in source_files(str(p))]
        known = [c for c in counts if c is not None]
        return None if not counts or len(known) < len(counts) else sum(known)
    if not p.is_file():
        return None
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        from engine.data.formats import jsonl_lines

        with p.open(encoding="utf-8-sig", errors="replace", newline=None) as text:
            return sum(1 for line in jsonl_lines(text) if line.strip())
    if suffix == ".json":
        return len(read_file_rows(p)[0])
    if suffix in (".csv", ".tsv"):
        from engine.data.formats import csv_record_lines   # the reader's records: blank lines are none

        lines = csv_record_lines(p.read_text(encoding="utf-8-sig", errors="replace"), p)
        return None if lines is None else len(lines)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None
        return pq.ParquetFile(p).metadata.num_rows
    return None


def dataset_sizes(cfg: Config) -> tuple[int | None, int | None]:
    """(training, validation) examples of a local dataset as the trainer splits it, or (None, None)."""
    total = count_examples(cfg.dataset.path)
    if total is None:
        return None, None
    if cfg.dataset.max_examples:
        total = min(total, cfg.dataset.max_examples)
    n_train = training_examples(total, cfg.dataset.validation_split, bool(cfg.dataset.validation_path))
    n_val = count_examples(cfg.dataset.validation_path) if cfg.dataset.validation_path else total - n_train
    return n_train, n_val


def unreadable(cfg: Config) -> str | None:
    """Why the trainer's reader (engine.data.read_rows, the wizard's row count) refuses the local dataset, its
    message's first line; None when it reads, or is not here (a hub dataset, a missing path: said elsewhere). The
    step count's one rule, `lorapilot estimate`'s and the wizard's: examples are counted from a dataset that reads,
    never from the lines of one that does not."""
    from engine.data import read_rows
    from engine.errors import DataError

    if not cfg.dataset.path.strip() or not Path(cfg.dataset.path).expanduser().exists():
        return None
    try:
        read_rows(cfg.dataset.path, cfg.dataset.format)
    except DataError as e:
        return str(e).splitlines()[0]
    return None


def training_examples(total: int, validation_split: float, has_validation_file: bool) -> int:
    """Examples left for training once the validation share is held out: the trainer's split's own count
    (engine.data.validation_count), without reading a row; a validation file holds none out."""
    from engine.data import validation_count

    return total if has_validation_file else total - validation_count(total, validation_split)


def token_lengths(cfg: Config) -> tuple[list[int], list[int], str | None]:
    """(training lengths, validation lengths, None) through the trainer's own data path (engine.data: template,
    masking, truncation), or ([], [], why not) when the tokenizer or the dataset cannot be read here.

    Imports transformers: for `lorapilot estimate` and helpers, not for the wizard's first paint."""
    data, _, why = local_examples(cfg)
    return lengths_of(data) + (why,)


def lengths_of(data: Any) -> tuple[list[int], list[int]]:
    """(training lengths, validation lengths) of local_examples' data; ([], []) for none."""
    return ([len(e) for e in data.train], [len(e) for e in data.validation]) if data is not None else ([], [])


def local_examples(cfg: Config) -> tuple[Any, Any, str | None]:
    """(examples, tokenizer, None): the trainer's load of cfg's examples (engine.data.load_examples, with its
    tokenizer), where the model's tokenizer and the dataset are files here; else (None, None, why not). A caller
    that needs both the lengths and the tokens' record (the sweep) makes them of this one load."""
    from engine.errors import UserError

    try:
        from engine.model import resolve_model_path

        where = Path(resolve_model_path(cfg.model))
        if not where.is_dir():
            return None, None, "a hub model: its tokenizer is not on this machine"
        if not any((where / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            return None, None, f"no tokenizer in {where}"
        if count_examples(cfg.dataset.path) is None:
            return None, None, "not a local dataset file"
        from engine.data import load_examples
        from engine.model import load_tokenizer

        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        data = load_examples(cfg, tokenizer)
    except UserError as e:
        return None, None, e.message if hasattr(e, "message") else str(e)
    except (OSError, ValueError) as e:
        return None, None, str(e).splitlines()[0] if str(e) else type(e).__name__
    return data, tokenizer, None
