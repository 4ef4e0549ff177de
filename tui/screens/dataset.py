"""Step 2: the training data — where it is, how it is laid out, and what the model will learn from it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import TabbedContent, TabPane

from engine.config import FIELDS
from tui.screens.file_picker import FilePicker
from tui.screens.wizard import WizardStep
from tui.widgets.data_stats import DataStats
from tui.widgets.field_row import FieldRow
from tui.widgets.length_histogram import LengthHistogram
from tui.widgets.problem_list import ProblemList
from tui.widgets.token_preview import TokenPreview

# Findings about the hardware belong to the review step; the rest are about the data.
NOT_DATA = {"precision_unsupported", "memory_estimate_high"}


class DatasetScreen(WizardStep):
    STEP = "dataset"
    CSS_PATH = "dataset.tcss"
    BINDINGS = [Binding("ctrl+o", "browse", "Browse files")]

    def compose_body(self) -> ComposeResult:
        raw = self.state.raw
        with Vertical(id="dataset-body"):
            with Vertical(id="dataset-fields"):
                yield FieldRow(FIELDS["dataset.path"], raw["dataset.path"], wide=True, compact=True,
                               placeholder="file, directory or hub dataset id (ctrl+o browses)")
                yield FieldRow(FIELDS["dataset.format"], raw["dataset.format"], compact=True)
                yield FieldRow(FIELDS["dataset.train_on"], raw["dataset.train_on"], compact=True)
                yield FieldRow(FIELDS["dataset.validation_split"], raw["dataset.validation_split"], compact=True)
                yield FieldRow(FIELDS["training.max_seq_length"], raw["training.max_seq_length"], compact=True)
            with TabbedContent(id="dataset-tabs"):
                with TabPane("Preview", id="tab-preview"):
                    yield TokenPreview(id="token-preview")
                with TabPane("Statistics", id="tab-stats"):
                    with VerticalScroll():
                        yield DataStats(id="data-stats")
                        yield LengthHistogram(id="length-histogram")
                with TabPane("Problems", id="tab-problems"):
                    with VerticalScroll():
                        yield ProblemList(id="data-problems")

    def action_browse(self) -> None:
        def picked(path: str | None) -> None:
            if path:
                self.state.set_raw("dataset.path", path)
        self.app.push_screen(FilePicker(self.state.raw["dataset.path"] or "."), picked)

    def shown_findings(self) -> list[Any]:
        return [f for f in (self.state.findings or []) if f.code not in NOT_DATA]

    def refresh_from_state(self, what: str) -> None:
        super().refresh_from_state(what)
        s = self.state
        busy = s.busy_with("data")
        fmt_row = self.query_one("#row-dataset-format", FieldRow)
        if s.data_format and s.cfg.dataset.format == "auto":
            fmt_row.set_hint(f"detected: {s.data_format}" + (f" · {s.data_rows:,} rows" if s.data_rows else ""))
        else:
            fmt_row.set_hint("reading…" if busy else "")
        max_len = s.cfg.training.max_seq_length
        self.query_one(TokenPreview).show(s.examples)
        self.query_one(DataStats).show(s.data_report, max_len, s.cfg.dataset.validation_split,
                                       s.cfg.dataset.validation_path)
        self.query_one(LengthHistogram).show([e.full_length for e in s.examples], max_len)
        errors = [s.data_error] if s.data_error else [e for e in (s.inspect_error,) if e]
        findings = self.shown_findings()
        empty = "checking…" if busy or s.busy_with("estimate") else "No problems found in the data."
        self.query_one("#data-problems", ProblemList).show(findings, errors, empty=empty)
        n = len(errors) + sum(1 for f in findings if f.severity != "info")
        tab = self.query_one(TabbedContent).get_tab("tab-problems")
        tab.label = f"Problems ({n})" if n else "Problems"
        if errors and what == "data":
            self.query_one(TabbedContent).active = "tab-problems"
