"""The diagnostics verbs for the command line: diagnose, prepare, inspect-data.

engine/cli.py builds the subparsers and calls `add_x_arguments(parser)` then
`run_x(args) -> exit code`. User errors are raised as UserError; the
dispatcher prints them and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from engine.diagnose.codes import LIVE_CODES, STATE_CODES, TITLES
from engine.diagnose.finding import Finding, blocking, finding_details, finding_where, newest_first
from engine.errors import EXIT_BAD_INPUT, EXIT_OK, UserError
from engine.overwrite import may_overwrite
from engine.settings import user_path

if TYPE_CHECKING:  # annotations only: rich and the data layer load when a command needs them
    from rich.console import Console
    from rich.table import Table

    from engine.config import Config
    from engine.data.types import DataReport, TokenizedExample
    from engine.estimate.params import Architecture

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _console() -> Console:
    from rich.console import Console  # only when printing for a person

    from engine.wrap import WIDTH

    return Console(highlight=False, width=min(WIDTH, Console().width))


def print_findings(findings: list[Finding], *, empty: str, counts: dict | None = None) -> None:
    """Findings for a person: severity, where, what, the numbers, the fix.

    Their text may come from a run directory: control characters are escaped (rundir.safe_text) and rich
    markup too. counts: per finding, (times raised, first step, last step) when it was raised more than once.
    """
    from rich.markup import escape

    from engine.rundir import safe_text

    def clean(text: str) -> str:
        return escape(safe_text(text))

    from rich.table import Table

    console = _console()
    if not findings:
        console.print(f"[green]{clean(empty)}[/]")
        return
    for f in findings:
        where = finding_where(f)
        times, first, last = (counts or {}).get(id(f), (1, f.step, f.step))
        if times > 1:
            where = f"{times} times, steps {first}-{last}"
        title = TITLES.get(f.code, f.code)
        # Two columns: the severity, and the text wrapped at the console's width under its own start.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=7, no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(f"[{_STYLE[f.severity]}]{f.severity.upper()}[/]",
                     f"[bold]{clean(title)}[/] [dim]({clean(f.code)}, {where})[/]")
        grid.add_row("", clean(f.message))
        for label, text in finding_details(f):
            grid.add_row("", f"[dim]{label}:[/] {clean(text)}")
        _print_unpadded(console, grid)


def group_findings(findings: list[Finding]) -> tuple[list[Finding], dict[int, tuple[int, int | None, int | None]]]:
    """One finding per code (its latest at its worst severity), newest first; with how often it was raised and
    its first and last step (by id of the finding kept). A long run raised one warning thousands of times.
    A state (the learning-curve verdict) is its latest, counted once."""
    latest: dict[str, Finding] = {}
    seen: dict[str, list] = {}
    for f in findings:  # oldest first
        key = f.code
        if key not in latest or f.rank >= latest[key].rank or key in STATE_CODES:
            latest[key] = f
        entry = seen.setdefault(key, [0, f.step, f.step])
        entry[0] += 1
        entry[2] = f.step
        if key in STATE_CODES:  # the current state, once: not a repeat count
            entry[:] = [1, f.step, f.step]
    kept = newest_first(latest.values())
    return kept, {id(latest[k]): tuple(v) for k, v in seen.items()}


def _print_json(value: object) -> None:
    from engine.wrap import json_for_scripts

    print(json_for_scripts(value, indent=2, ensure_ascii=False, default=str))


# ---------------------------------------------------------------- diagnose

def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=user_path,
                        help="a run directory (or just its metrics.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list")


def findings_for_run(records: Iterable[dict]) -> list[Finding]:
    """Live findings recomputed from the metrics, plus those the trainer recorded that cannot be
    recomputed from metrics alone (copied samples, pre-flight), each once; oldest first."""
    from engine.diagnose.live import diagnose_records

    records = list(records)
    computed = diagnose_records(records)
    seen = {(f.code, f.step) for f in computed}
    recorded = [Finding.from_record(r) for r in records if r.get("kind") == "finding"]
    extra = [f for f in recorded if (f.code, f.step) not in seen and f.code not in _RECOMPUTED_CODES]
    return computed + extra


# Codes `diagnose_records` derives from train/eval records alone, so recorded copies are redundant;
# copying needs the training responses, which metrics.jsonl does not hold.
_RECOMPUTED_CODES = set(LIVE_CODES) - {"copies_training_data"}


def run_diagnose(args: argparse.Namespace) -> int:
    import sys

    from engine.errors import DataError
    from engine.rundir import METRICS_FILE, MetricsTail, drop_superseded, load_status

    path = Path(args.run_dir)
    if not path.exists():
        raise UserError(f"{path}: no such run directory")
    metrics = path / METRICS_FILE if path.is_dir() else path
    if not metrics.is_file():
        raise UserError(f"{metrics}: no metrics file", fix="Give a run directory that holds metrics.jsonl.")
    tail = MetricsTail(metrics)
    records = tail.read_new()
    # Nothing but lines that are not records (a binary or unrelated file): "no problems" would be a lie.
    if not records and (tail.bad_lines or tail.pending_bytes() and not tail.pending_is_record_start()):
        raise UserError(f"{metrics}: not a metrics file (no JSON record in it)",
                        fix="Give a run directory, or the metrics.jsonl a run wrote.")
    records = drop_superseded(records)  # a run killed between checkpoints: the re-run copies win
    skipped = tail.skipped_text()
    if skipped:   # torn lines are what a killed trainer leaves: the rest is diagnosed, and where they are is said
        print(f"lorapilot: warning: {skipped}", file=sys.stderr)
    try:
        status = load_status(metrics.parent)
        corrupt = None
    except DataError as e:   # the metrics are still worth diagnosing: that first, then the error (exit 2)
        status, corrupt = None, e
    findings, counts = group_findings(findings_for_run(records) + _stalled(metrics.parent, status, records))
    if args.json:
        _print_json([{**f.to_record(), "count": counts[id(f)][0], "first_step": counts[id(f)][1],
                      "last_step": counts[id(f)][2]} for f in findings])
    else:
        last = f", last step {max(r['step'] for r in records)}" if records else ""
        print_findings(findings, empty=f"No problems found in {len(records)} records{last}.", counts=counts)
    if corrupt is not None:
        raise DataError(f"{corrupt.message}; the findings above come from {METRICS_FILE} alone", fix=corrupt.fix)
    return EXIT_OK


def _stalled(run_dir: Path, status: dict | None, records: list[dict]) -> list[Finding]:
    """no_progress for a live run that stopped reporting (only the run directory can tell)."""
    import time

    from engine.diagnose.stall import REPORTING_STATES, no_progress
    from engine.rundir import effective_state, finite_number

    if effective_state(status, run_dir) not in REPORTING_STATES:
        return []
    times = [t for r in records if (t := finite_number(r.get("time"))) is not None]
    found = no_progress(status, max(times, default=None), time.time(), str(run_dir))
    return [found] if found else []


# ---------------------------------------------------------------- prepare

def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", metavar="SOURCE", nargs="+", type=user_path,
                        help="HTML, CSV/TSV, SQL dump or text files, or directories of them")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", type=user_path, help="the training file to write")
    parser.add_argument("--column", metavar="C", help="the CSV/SQL column holding the text")
    parser.add_argument("--instruction-column", metavar="C", help="CSV/SQL column of prompts (with --output-column)")
    parser.add_argument("--output-column", metavar="C", help="CSV/SQL column of responses")
    parser.add_argument("--filter-slop", action="store_true",
                        help="drop rows with synthetic-data phrases (presets/slop_phrases.txt)")
    parser.add_argument("--no-dedup", action="store_true", help="keep duplicate rows")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def run_prepare(args: argparse.Namespace) -> int:
    from engine.diagnose.prepare import prepare

    may_overwrite(Path(args.out), getattr(args, "force", False), flag="--out", example="data/train.jsonl")
    report = prepare(args.sources, args.out, column=args.column, instruction_column=args.instruction_column,
                     output_column=args.output_column, filter_slop=args.filter_slop, dedup=not args.no_dedup)
    if getattr(args, "json", False):
        _print_json(report.to_dict())
    else:
        print("\n".join(report.lines()))
    return EXIT_OK


# ---------------------------------------------------------------- inspect-data

def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.config import DatasetConfig, TrainingConfig

    formats = next(f for f in dataclasses.fields(DatasetConfig) if f.name == "format").metadata["choices"]
    default_length = TrainingConfig().max_seq_length
    train_on = next(f for f in dataclasses.fields(DatasetConfig) if f.name == "train_on").metadata["choices"]
    parser.add_argument("path", metavar="PATH", type=user_path,
                        help="a dataset file, a directory of them, or a hub id")
    parser.add_argument("--model", metavar="M", type=user_path,
                        help="tokenizer to count tokens with (hub id or directory)")
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="N",
                        help=f"the training max_seq_length (default: the config's, else {default_length})")
    parser.add_argument("--format", dest="fmt", default="auto", choices=formats, help="how examples are laid out")
    parser.add_argument("--train-on", dest="train_on", default=None, choices=train_on,
                        help="completions (default): the responses are trained, the prompt masked; all: every "
                             "token (default: the config's)")
    parser.add_argument("--json", action="store_true", help="print the report and findings as JSON")
    parser.add_argument("--config", metavar="CONFIG", type=user_path,
                        help="check this config's settings too, and show exactly what it trains on (its model, "
                             "max_seq_length, format, train_on, validation split and max_examples are used)")
    parser.add_argument("--fix", metavar="CONFIG", type=user_path,
                        help="as --config, then write each finding's setting into CONFIG (comments kept)")


def _jsonable(report: object) -> object:
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if dataclasses.is_dataclass(report) and not isinstance(report, type):  # an instance, not the class
        return dataclasses.asdict(report)
    return report


def _print_unpadded(console: Any, renderable: Any) -> None:
    """A rich table or grid printed without the spaces it pads each row with to the width: none trail what is
    copied from the terminal."""
    with console.capture() as captured:
        console.print(renderable)
    print("\n".join(line.rstrip(" ") for line in captured.get().rstrip("\n").split("\n")))


def _report_table(report: DataReport, examples: list[TokenizedExample], max_seq_length: int,
                  tokenizer: str = "") -> Table:
    """The numbers a user checks before training, one per line."""
    from rich.table import Table
    from rich.text import Text

    lengths = sorted(e.full_length for e in examples) or [0]
    pct = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    t = Table(show_header=False, box=None, padding=(0, 2))
    t.add_column(width=_LABEL_WIDTH)
    t.add_column()
    t.add_row("format", f"{report.format}, prompt format: {report.template}")
    if tokenizer:
        t.add_row("tokenizer", Text(tokenizer))  # Text: a path the user typed is not rich markup ([old] kept)
    held_out = getattr(report, "n_validation", 0)
    t.add_row("examples", f"{report.n_rows} rows -> {len(examples)} usable" +
              (f" for training, {held_out} held out for validation" if held_out else "") +
              (f"; dropped: {', '.join(f'{n} {why}' for why, n in report.dropped.items())}" if report.dropped else ""))
    t.add_row("tokens", f"{report.total_tokens:,} in all, {report.trained_tokens:,} trained "
              f"({report.trained_tokens / max(1, report.total_tokens):.0%}; the rest is masked prompt)")
    t.add_row("length", f"median {pct(0.5)}, 95th percentile {pct(0.95)}, longest {lengths[-1]} tokens "
              f"(max_seq_length {max_seq_length})")
    t.add_row("cut", report.cuts())
    if getattr(report, "n_system_left_out", 0):
        t.add_row("system", f"{report.n_system_left_out} rows train without their system prompt (the chat template "
                  "leaves it out of a conversation that ends with an answer)")
    for note in getattr(report, "notes", None) or []:
        t.add_row("note", Text(note))  # a note may name a path (validation from data/[old]/val.jsonl)
    return t


# The report's labels ("tokenizer" the longest): the file line, printed above the table, lines up with its rows.
_LABEL_WIDTH = 9


def _file_line(path: str, width: int) -> str:
    """The report's first line, the dataset read, whole: a table cell would cut a long path with "…", and the user
    could not see which file it was. fit puts a path too long for the line on a line of its own."""
    from engine.wrap import fit

    return fit(f"  {'file':<{_LABEL_WIDTH}}    {path}", width)


def _every_row(cfg: Config) -> Config:
    """No config given: the whole file, nothing held out."""
    cfg.dataset.validation_split, cfg.dataset.max_examples = 0.0, None
    return cfg


def run_inspect(args: argparse.Namespace) -> int:
    from engine.config import Config, TrainingConfig, check_override, load_config
    from engine.diagnose.settings_check import SETTINGS_CODES

    if args.max_seq_length is not None:
        check_override("training.max_seq_length", args.max_seq_length, flag="--max-seq-length")
    config_path = getattr(args, "fix", None) or getattr(args, "config", None)
    cfg = load_config(config_path) if config_path else _every_row(Config())
    model = args.model or (cfg.model if config_path else None)
    if args.max_seq_length is not None:
        cfg.training.max_seq_length = args.max_seq_length
    elif not config_path:
        cfg.training.max_seq_length = TrainingConfig().max_seq_length
    fmt = args.fmt if args.fmt != "auto" or not config_path else cfg.dataset.format
    report, examples, findings = _inspect(args.path, model, cfg, fmt, args.train_on, settings=bool(config_path))
    if not config_path:
        # No config was given: advice about settings would be about defaults the user never wrote.
        findings = [f for f in findings if f.code not in SETTINGS_CODES]
    changes: list[str] = []
    if getattr(args, "fix", None):
        changes = _write_fixes(args.fix, findings)
        if changes:  # the config changed: check again with what it now says
            cfg = load_config(args.fix)
            if args.max_seq_length is not None:
                cfg.training.max_seq_length = args.max_seq_length
            report, examples, findings = _inspect(args.path, model, cfg, fmt, args.train_on, settings=True)
    tokenizer = model or "lorapilot-demo (the demo's; --model M counts with your model's)"
    if args.json:
        _print_json({"report": _jsonable(report), "tokenizer": model or "lorapilot-demo",
                     "findings": [f.to_record() for f in findings], "changed": changes})
    else:
        from rich.text import Text

        console = _console()
        console.print(Text(_file_line(str(report.path), console.width)), soft_wrap=True)
        _print_unpadded(console, _report_table(report, examples, cfg.training.max_seq_length, tokenizer))
        if changes:
            from engine.wrap import fit

            # Wrapped by fit, which keeps a path longer than the line whole (rich would cut it where the line ends).
            console.print(Text(fit(f"wrote {len(changes)} change{'s' * (len(changes) > 1)} into {args.fix} "
                                   "(comments and order kept):"), style="bold"), soft_wrap=True)
            for line in changes:
                console.print(f"  {line}", markup=False)
        print_findings(findings, empty="No problems found in the data.")
        if not config_path:
            console.print("[dim]settings not checked: add --config CONFIG (or --fix CONFIG to apply the fixes)[/]")
    return EXIT_BAD_INPUT if blocking(findings) else EXIT_OK


def _inspect(path: str, model: str | None, cfg: Config, fmt: str, train_on: str | None = None, *,
             settings: bool = False) -> tuple[DataReport, list[TokenizedExample], list[Finding]]:
    """The trainer's own preparation of PATH under the config (engine.data.inspect_config), and the doctor's
    findings. Without a config every row is shown (no validation split, no max_examples). settings: a config was
    given, so its settings are checked, against the model's type too."""
    import copy

    import engine.data  # looked up at call time: tests stand in for the data layer

    cfg = copy.deepcopy(cfg)
    cfg.dataset.path, cfg.dataset.format = str(path), fmt
    if train_on:
        cfg.dataset.train_on = train_on
    report, examples = engine.data.inspect_config(cfg, model=model)
    from engine.diagnose.preflight import preflight
    arch = _model_shapes(model) if settings else None
    processes, planned = _planned_steps(cfg, examples) if settings else (1, None)
    return report, examples, preflight(examples, cfg, dropped=getattr(report, "dropped", None),
                                       too_long_lengths=getattr(report, "too_long_lengths", ()),
                                       model=arch, num_gpus=processes, planned_steps=planned)


def _planned_steps(cfg: Config, examples: list[TokenizedExample]) -> tuple[int, tuple[int | None, int | None] | None]:
    """The processes a launch here would start and the plan's (steps per epoch, total steps) for these examples:
    the plan `lorapilot estimate`, the wizard's checklist and the trainer count by (engine.plan, on the GPU present,
    training.num_gpus of them), not a second count for one process. (1, None) without examples."""
    from engine.estimate import detect_gpu
    from engine.estimate.command import planned_processes
    from engine.plan import Machine, plan_run

    gpu = detect_gpu()
    processes = planned_processes(cfg, gpu)
    if not examples:
        return processes, None
    plan = plan_run(cfg, Machine.for_gpu(gpu, processes), lengths=[len(e) for e in examples])
    return processes, (plan.steps_per_epoch, plan.max_steps)


def _model_shapes(model: str | None) -> Architecture | None:
    """The model's shapes from its config.json (after its tokenizer loaded: that error comes first), for the checks
    of the lora settings against it (a mixture's experts and LoRA dropout), as `estimate` and `train` check them;
    None without a model (the demo's tokenizer counts)."""
    if not model:
        return None
    from engine.estimate import read_model_config

    return read_model_config(model).arch


def _write_fixes(config_path: str, findings: list[Finding]) -> list[str]:
    """Each finding's named setting written into the config (engine.config_edit keeps its comments)."""
    from engine.config_edit import apply_settings, fix_setting

    settings: dict = {}
    for f in findings:
        setting = fix_setting(f.fix)
        if setting:
            settings.setdefault(*setting)
    return apply_settings(config_path, settings) if settings else []
