"""What the engine read about the base model: size, architecture, vocabulary, context, and from where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.content import Content
from textual.widgets import Static

SOURCES = {"local": "a local directory (config.json)", "hub": "the Hugging Face hub (config.json only)",
           "preset": "a bundled preset (no download)"}
DEMO = "the embedded demo (built here, no download)"


def fmt_params(n: float | None) -> str:
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.0f} M"
    return f"{n:,.0f}"


class ModelInfoPanel(Static):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, info: Any, error: str | None, pending: bool) -> None:
        if pending:
            self.update(Content.styled("reading the model's config.json…", "italic $text-muted"))
            return
        if error:
            self.update(Content.from_markup("[$text-error]✗ $error[/]", error=error))
            self.set_class(True, "-error")
            return
        self.set_class(False, "-error")
        if info is None:
            self.update("")
            return
        approx = "" if getattr(info, "exact", True) else "  (approximate)"
        from engine.demo.model import DEMO_MODEL_ID
        source = DEMO if getattr(info, "name", None) == DEMO_MODEL_ID else SOURCES.get(info.source, info.source)
        rows = [
            ("read from", source),
            ("architecture", str(info.architecture)),
            ("parameters", fmt_params(info.param_count) + approx),
            ("vocabulary", f"{info.vocab_size:,} tokens"),
            ("context", f"{info.context_length:,} tokens"),
        ]
        lines = [Content.from_markup("[b]$k[/b]", k=f"{k:<13}") + Content(v) for k, v in rows]
        notes = getattr(getattr(info, "arch", None), "notes", None) or []
        lines += [Content.styled(f"note: {n}", "$text-warning") for n in notes]
        self.update(Content("\n").join(lines))
