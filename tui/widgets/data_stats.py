"""The dataset's numbers as the engine counted them: rows, split, trained tokens, what gets cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.content import Content
from textual.widgets import Static


class DataStats(Static):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, report: Any, max_seq_length: int, validation_split: float = 0.0,
             validation_path: str | None = None) -> None:
        if report is None:
            self.update(Content.styled("No statistics yet.", "italic $text-muted"))
            return
        r = report
        share = f" ({r.trained_tokens / r.total_tokens:.0%} of all tokens)" if r.total_tokens else ""
        # The trainer's own split (the report is engine.data.inspect_config's): the count the checklist uses too.
        if validation_path:
            split = f"{r.n_train:,} train; {r.n_validation:,} validation from {Path(validation_path).name}"
        else:
            split = (f"{r.n_train:,} train, {r.n_validation:,} validation (validation_split {validation_split:g})"
                     if validation_split else f"{r.n_train:,} train, no validation (validation_split 0)")
        rows = [
            ("examples", f"{r.n_rows:,} read: {split}"),
            ("format", r.format),
            # The engine's name of the template ("chat template", "default (alpaca)", "none (raw text + EOS)"),
            # under the words the model card uses for it.
            *([("prompt format", r.template)] if r.template else []),
            ("trained tokens", f"{r.trained_tokens:,}{share}"),
            ("all tokens", f"{r.total_tokens:,}"),
            (f"> {max_seq_length} tok", r.cuts()),  # the words of train.log and inspect-data
        ]
        for reason, n in (r.dropped or {}).items():
            rows.append(("dropped", f"{n:,} ({reason})"))
        if getattr(r, "n_system_left_out", 0):
            rows.append(("system prompt", f"{r.n_system_left_out:,} rows train without it (the chat template "
                                          "leaves it out)"))
        # A cut is a warning whichever side it takes: lost response tokens are never learnt, and a shortened prompt
        # loses context the model was meant to see before its answer.
        cut = r.n_truncated or r.n_prompt_shortened
        lines = []
        for key, value in rows:
            warn = (key.startswith(">") and cut) or key in ("dropped", "system prompt")
            lines.append(Content.assemble(Content.styled(f"{key:<15}", "bold"),
                                          Content.styled(value, "$text-warning" if warn else "")))
        lines += [Content.styled(f"note: {n}", "$text-muted") for n in (r.notes or [])]
        self.update(Content("\n").join(lines))
