"""A bool field's checkbox and the validator read its text by one rule: the config's. The checkbox treated "1" as on
while the validator refused 1 for a bool, so the box showed on beside a value the config would not load."""

from __future__ import annotations

from textual.app import App
from textual.containers import Vertical
from textual.widgets import Checkbox

from engine.config import FIELDS, value_problem
from engine.config_text import from_raw
from tui.widgets.field_row import FieldRow

TEXTS = ("true", "True", "yes", "on", "1", "0", "tRue", "y", "false", "off", "")


class Rows(App):
    def compose(self):
        spec = FIELDS["training.packing"]
        for k, text in enumerate(TEXTS):
            with Vertical(id=f"box-{k}"):
                yield FieldRow(spec, text)


async def test_a_bool_checkbox_is_on_exactly_where_the_config_reads_true():
    spec = FIELDS["training.packing"]
    app = Rows()
    async with app.run_test(size=(100, 60)):
        shown = {text: app.query_one(f"#box-{k}").query_one(Checkbox).value for k, text in enumerate(TEXTS)}
        # set from elsewhere (a recipe, a loaded config): the same rule
        row = app.query_one("#box-0").query_one(FieldRow)
        row.sync("1", [], overwrite=True)
        assert row.query_one(Checkbox).value is False
    read = {text: value_problem(spec, from_raw(spec, text)) is None and from_raw(spec, text) is True
            for text in TEXTS}
    assert shown == read
    assert shown["yes"] and shown["on"] and not shown["1"] and not shown["tRue"]
    assert value_problem(spec, from_raw(spec, "1")) is not None  # the row's problem line says why it is off
