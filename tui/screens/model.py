"""Step 1: the base model — a hub id, a local directory, or a preset from the list."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from engine.config import FIELDS
from tui.error_log import log_error
from tui.screens.wizard import WizardStep
from tui.widgets.field_row import FieldRow
from tui.widgets.model_info import ModelInfoPanel, fmt_params
from tui.widgets.typed_input import TypedInput


def _presets() -> list[dict]:
    from engine.demo.model import DEMO_MODEL_ID
    # The demo first: the way back to a run that trains anywhere, in seconds, after trying another model.
    demo: dict[str, Any] = {"id": DEMO_MODEL_ID, "aliases": ["demo", "tiny"], "published_params": None}
    try:
        from engine.estimate import read_model_config
        from engine.estimate.presets import list_model_presets
        demo["published_params"] = read_model_config(DEMO_MODEL_ID).param_count  # shapes only, no weights
        return [demo, *list_model_presets()]
    except Exception as exc:  # noqa: BLE001 - presets are a convenience; typing a model id always works
        log_error(exc, "reading the model presets")
        return [demo]


class ModelScreen(WizardStep):
    STEP = "model"
    CSS_PATH = "model.tcss"

    def compose_body(self) -> ComposeResult:
        raw = self.state.raw
        # The model id runs the full width: a pod path or a hub id is long, and 80 columns are few.
        yield FieldRow(FIELDS["model"], raw["model"], placeholder="hub id, local directory or preset", wide=True)
        with Horizontal(id="model-body"):
            with VerticalScroll(id="model-left", can_focus=False):
                yield ModelInfoPanel(id="model-info")
                yield FieldRow(FIELDS["quantization"], raw["quantization"])
                yield FieldRow(FIELDS["trust_remote_code"], raw["trust_remote_code"])
            with Vertical(id="model-presets"):
                yield Label("Presets (Enter picks)", classes="section-title")
                yield TypedInput(placeholder="filter: llama, qwen, 7b…", id="preset-filter", compact=True)
                yield OptionList(id="preset-list")

    def on_mount(self) -> None:
        self._all_presets = sorted(_presets(), key=lambda e: e.get("published_params") or 0)
        self._fill_presets("")
        self.query_one("#model-info", ModelInfoPanel).border_title = "Model"
        super().on_mount()

    def _fill_presets(self, query: str) -> None:
        words = query.lower().split()
        options = []
        for entry in self._all_presets:
            names = " ".join([entry["id"], *entry.get("aliases", [])]).lower()
            if all(w in names for w in words):
                size = fmt_params(entry.get("published_params"))
                # Size first, aligned: the column a user scans when choosing what fits their card. The name
                # without its organisation (the field shows the full id once picked): it fits 80 columns.
                name = entry["id"].rsplit("/", 1)[-1]
                options.append(Option(f"[dim]{size:>8}[/] {name}", id=entry["id"]))
        presets = self.query_one("#preset-list", OptionList)
        presets.clear_options()
        presets.add_options(options)
        if options:
            presets.highlighted = 0  # so Enter straight after filtering picks the best match

    @on(Input.Changed, "#preset-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill_presets(event.value)

    @on(Input.Submitted, "#preset-filter")
    def _filter_done(self) -> None:
        presets = self.query_one("#preset-list", OptionList)
        if presets.option_count == 1:  # one match: Enter picks it
            presets.highlighted = 0
            presets.action_select()
            return
        presets.focus()

    @on(OptionList.OptionSelected, "#preset-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.state.set_raw("model", event.option.id or "")
        self.query_one("#field-model").focus()

    def refresh_from_state(self, what: str) -> None:
        super().refresh_from_state(what)
        s = self.state
        self.query_one("#model-info", ModelInfoPanel).show(
            s.model_info, s.model_error, pending=s.busy_with("model"))
