"""Datasets: reading, format detection, templating, label masking and batching."""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field

from engine.data.types import IGNORE_INDEX, DataReport, TokenizedExample, TooLong
from engine.errors import DataError

__all__ = ["PreparedData", "read_rows", "load_examples", "prepare_examples", "tokenize_rows", "inspect_config",
           "inspect_dataset", "load_tokenizer",
           "preview_segments", "split_indices", "validation_count", "DataReport", "TokenizedExample", "IGNORE_INDEX"]


EMPTY_TURNS_NOTE = "assistant turns with no text, not trained (kept as context):"
EMPTY_QUESTIONS_NOTE = "user turns with no text before a trained answer:"


@dataclass
class PreparedData:
    train: list[TokenizedExample]
    validation: list[TokenizedExample]
    report: DataReport = field(default_factory=lambda: DataReport(path="", format=""))


def read_rows(path: str | os.PathLike, fmt: str = "auto", notes: list[str] | None = None,
              revisions: dict[str, str] | None = None) -> tuple[list[dict], str, list[str]]:
    """(rows normalised to their format's shape, format, sources). Cheap: no tokenizer; fails fast. `notes` gets
    what the user should know about the read (a hub dataset read from its cached copy, which revision);
    `revisions` each hub dataset's revision read ({id: revision})."""
    from engine.data.formats import read_rows as _read

    return _read(path, fmt, notes, revisions)


def validation_count(n: int, fraction: float) -> int:
    """Rows of n that dataset.validation_split `fraction` holds out: its share rounded, at least one to measure and
    at least one to train on; none at 0 or under 2 rows. The one rule: split_indices draws this many, and the
    estimate counts with it without reading a row (engine.estimate.dataset_size.training_examples)."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) row indices: a seeded draw of validation_count rows, each list in file order. 0 -> no
    validation."""
    n_val = validation_count(n, fraction)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return [i for i in range(n) if i not in val], sorted(val)


def _build(rows: list[dict], fmt: str, sources: list[str], tokenizer, max_seq_length: int, train_on: str,
           report: DataReport) -> list[TokenizedExample | str]:
    """One TokenizedExample per row, or why it was dropped; counted into the report."""
    from engine.data.masking import Masker
    from engine.data.template import Renderer

    renderer = Renderer(tokenizer, train_on)
    rendered = [renderer.render(row, fmt, src) for row, src in zip(rows, sources)]
    built = Masker(tokenizer, max_seq_length).build_many(rendered, sources)
    examples = [b for b in built if isinstance(b, TokenizedExample)]
    report.template = renderer.name(fmt)
    for reason, count in Counter(b for b in built if isinstance(b, str)).items():
        report.dropped[reason] = report.dropped.get(reason, 0) + count
    report.n_truncated += sum(e.response_tokens_lost > 0 for e in examples)
    report.n_prompt_shortened += sum(e.prompt_shortened for e in examples)
    report.n_system_left_out += sum(e.system_left_out for e in examples)
    report.notes += sorted(n for n in renderer.notes if n not in report.notes)
    kept = [r for r in rendered if not r.skip]
    _add_counted(report, "n_empty_turns", sum(r.empty_turns for r in kept), EMPTY_TURNS_NOTE,
                 "trained, an empty answer would teach the model to answer nothing")
    _add_counted(report, "n_empty_questions", sum(r.empty_questions for r in kept), EMPTY_QUESTIONS_NOTE,
                 "the answer after each is trained as the reply to an empty question")
    return built


def _add_counted(report: DataReport, field: str, found: int, note: str, meaning: str) -> None:
    """Adds found to the report's running count `field`; its note says the total once (replacing the one an earlier
    call, the validation rows', wrote)."""
    if found:
        setattr(report, field, getattr(report, field) + found)
        report.notes = [n for n in report.notes if not n.startswith(note)] + [
            f"{note} {getattr(report, field)}; {meaning}"]


def tokenize_rows(rows: list[dict], fmt: str, sources: list[str], tokenizer, *, max_seq_length: int,
                  train_on: str = "completions", report: DataReport | None = None) -> list[TokenizedExample]:
    """Render and tokenize rows (dropped ones left out); drops and truncations are counted into `report`."""
    report = report if report is not None else DataReport(path="", format=fmt)
    built = _build(rows, fmt, sources, tokenizer, max_seq_length, train_on, report)
    report.too_long_lengths += _too_long_lengths(built)
    return [b for b in built if isinstance(b, TokenizedExample)]


def _too_long_lengths(built: list[TokenizedExample | str]) -> list[int]:
    return [b.full_length for b in built if isinstance(b, TooLong)]


def _refuse_if_empty(train: list[TokenizedExample], report: DataReport) -> None:
    if train:
        return
    why = ", ".join(f"{count} {reason}" for reason, count in report.dropped.items()) or "no rows"
    fix = ("raise training.max_seq_length" if "too long" in report.dropped
           else "check that the responses (output / completion / assistant turns) are filled in")
    raise DataError(f"{report.path}: nothing to train: no training row has a response left to learn "
                    f"({report.n_rows} rows; dropped: {why})", fix=fix)


def _count(report: DataReport, train: list[TokenizedExample], validation: list[TokenizedExample]) -> None:
    report.n_train, report.n_validation = len(train), len(validation)
    report.trained_tokens = sum(e.trained_tokens for e in train)
    report.total_tokens = sum(len(e) for e in train)


def load_examples(cfg, tokenizer) -> PreparedData:
    """The training and validation examples for a config, ready for the collator.

    Validation comes from dataset.validation_path, else a seeded draw of
    dataset.validation_split of the rows (after max_examples; drawn from the
    rows, so a change of tokenizer or max_seq_length does not move a row
    between the two). A dataset with nothing to train is refused with a
    DataError naming the file. The report's token counts are the training
    examples'; its drop and truncation counts cover both parts.
    """
    data = prepare_examples(cfg, tokenizer)
    _refuse_if_empty(data.train, data.report)
    return data


@dataclass
class _Rows:
    """A config's rows as read (and validated) from its files, before any tokenizer is loaded."""
    rows: list[dict]
    fmt: str
    sources: list[str]
    validation: tuple[list[dict], str, list[str]] | None
    notes: list[str] = field(default_factory=list)   # about the read: a hub dataset's cached copy
    revisions: dict[str, str] = field(default_factory=dict)   # {hub id: the revision read}


def _read_config_rows(cfg) -> _Rows:
    """The training rows (after max_examples) and those of dataset.validation_path: a bad line or a missing key is
    refused here, cheaply, before a tokenizer is loaded."""
    ds = cfg.dataset
    notes: list[str] = []
    revisions: dict[str, str] = {}
    rows, fmt, sources = read_rows(ds.path, ds.format, notes, revisions)
    if ds.max_examples:
        rows, sources = rows[: ds.max_examples], sources[: ds.max_examples]
    validation = read_rows(ds.validation_path, ds.format, notes, revisions) if ds.validation_path else None
    return _Rows(rows, fmt, sources, validation, notes, revisions)


def prepare_examples(cfg, tokenizer) -> PreparedData:
    """load_examples without the refusal: what the trainer would train on, even when that is nothing."""
    return _prepare(cfg, _read_config_rows(cfg), tokenizer)


def _prepare(cfg, read: _Rows, tokenizer) -> PreparedData:
    ds, seq = cfg.dataset, cfg.training.max_seq_length
    rows, fmt, sources = read.rows, read.fmt, read.sources
    report = DataReport(path=str(ds.path), format=fmt, n_rows=len(rows), notes=list(read.notes),
                        hub_revisions=dict(read.revisions))
    from engine.data.prompt import shared_system_prompt
    report.system_prompt = shared_system_prompt(rows, fmt)
    built = _build(rows, fmt, sources, tokenizer, seq, ds.train_on, report)
    for i, b in enumerate(built):
        if isinstance(b, TokenizedExample):
            b.row = i
    if read.validation is not None:
        train_built = built
        val_rows, val_fmt, val_sources = read.validation
        val_built = _build(val_rows, val_fmt, val_sources, tokenizer, seq, ds.train_on, report)
        report.notes.append(f"validation from {ds.validation_path} ({len(val_rows)} rows)")
    else:
        train_idx, val_idx = split_indices(len(rows), ds.validation_split, cfg.training.seed)
        train_built, val_built = [built[i] for i in train_idx], [built[i] for i in val_idx]
        if ds.validation_split > 0 and not val_idx:
            report.notes.append("too few rows to hold any out for validation: no eval loss")
    train = [b for b in train_built if isinstance(b, TokenizedExample)]
    validation = [b for b in val_built if isinstance(b, TokenizedExample)]
    _count(report, train, validation)
    report.too_long_lengths = _too_long_lengths(train_built)
    report.validation_lengths = [len(e) for e in validation]
    return PreparedData(train=train, validation=validation, report=report)


def load_tokenizer(model: str | os.PathLike | None = None):
    """The tokenizer of a local model directory or hub id; None -> the demo model's."""
    from engine.demo.model import DEMO_MODEL_ID
    from engine.model import load_tokenizer as _load

    return _load(str(model) if model is not None else DEMO_MODEL_ID)


def inspect_config(cfg, *, model: str | None = None, tokenizer=None) -> tuple[DataReport, list[TokenizedExample]]:
    """What the trainer will train on, for the wizard's preview and inspect-data.

    The trainer's own preparation (prepare_examples: format, template, masking
    with dataset.train_on, truncation, validation split, max_examples): the
    report and the training examples, each with its preview runs. `model`
    names the tokenizer; None: cfg.model, else the demo model's ("" is no model: an error, as in the wizard
    before a model is chosen).
    """
    read = _read_config_rows(cfg)  # a broken file is refused before the tokenizer (and torch) loads
    if tokenizer is None:
        from engine.demo.model import DEMO_MODEL_ID
        from engine.model import load_tokenizer as _load

        name = model if model is not None else (cfg.model or DEMO_MODEL_ID)
        tokenizer = _load(str(name), getattr(cfg, "trust_remote_code", False))
    data = _prepare(cfg, read, tokenizer)
    for example in data.train:
        example.segments = preview_segments(example, tokenizer)
    return data.report, data.train


def inspect_dataset(path: str | os.PathLike, *, model: str | None = None, max_seq_length: int = 512,
                    fmt: str = "auto", tokenizer=None, train_on: str = "completions",
                    ) -> tuple[DataReport, list[TokenizedExample]]:
    """Every row of a file as training would tokenize it (no validation split): inspect_config on a
    config that names only the file."""
    from engine.config import Config

    cfg = Config()
    cfg.dataset.path, cfg.dataset.format, cfg.dataset.train_on = str(path), fmt, train_on
    cfg.dataset.validation_split, cfg.dataset.max_examples = 0.0, None
    cfg.training.max_seq_length = max_seq_length
    return inspect_config(cfg, model=model, tokenizer=tokenizer)


def split_lengths(cfg, examples: list[TokenizedExample], n_rows: int) -> tuple[list[int], list[int] | None]:
    """(training, validation) token lengths of inspect_dataset's examples, split as load_examples splits the rows
    (max_examples, then the seeded validation draw): what the run's plan packs, for the wizard's estimate."""
    ds = cfg.dataset
    n = min(n_rows, ds.max_examples) if ds.max_examples else n_rows
    kept = [e for e in examples if e.row < n]
    if ds.validation_path:
        return [len(e) for e in kept], None
    _, val_idx = split_indices(n, ds.validation_split, cfg.training.seed)
    val_rows = set(val_idx)
    return [len(e) for e in kept if e.row not in val_rows], [len(e) for e in kept if e.row in val_rows] or None


def preview_segments(example: TokenizedExample, tokenizer=None) -> list[tuple[str, bool]]:
    """The row as (text, trained) runs, for the coloured preview.

    Decoded from the tokens and labels themselves, so it shows what the loss
    is computed on, not what the template meant. Without a tokenizer, the runs
    inspect_dataset stored on the example.
    """
    if tokenizer is None:
        if not example.segments:
            raise ValueError(f"{example.source}: no stored preview; pass the tokenizer (inspect_dataset stores one)")
        return list(example.segments)
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(example.input_ids, example.labels):
        trained = label != IGNORE_INDEX
        if runs and runs[-1][1] == trained:
            runs[-1][0].append(token)
        else:
            runs.append(([token], trained))
    return [(tokenizer.decode(ids, skip_special_tokens=False), trained) for ids, trained in runs]
