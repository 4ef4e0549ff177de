"""Helpers for driving the wizard in Pilot tests: wait for the engine, type as a user types."""

from __future__ import annotations

import time


async def settle(app, pilot, limit: float = 180.0) -> None:
    """Wait until every debounce timer has fired and every engine call has answered."""
    deadline = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        quiet = quiet + 1 if not app.wizard.busy else 0
        if quiet >= 2:
            return
    raise AssertionError(f"wizard still busy after {limit} s: {app.wizard.jobs}")


async def type_into(pilot, selector: str, text: str) -> None:
    """Focus a field, clear it as a user would (ctrl+u from the end), and type."""
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    await pilot.press("end", "ctrl+u", *list(text))


async def paste_into(pilot, selector: str, text: str) -> None:
    """A long path arrives as a paste does: one change, not one per character."""
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    widget.value = text
    await pilot.pause()


def row_label(app, path: str, part: str) -> str:
    """What a field row's problem or advice line says ('' when hidden)."""
    label = app.screen.query_one(f"#row-{path.replace('.', '-')} .field-{part}")
    return str(label.render()) if label.display else ""


def row_problem(app, path: str) -> str:
    return row_label(app, path, "problem")


def shown(app, selector: str) -> str:
    """The text a widget shows; for a list of findings (tui.widgets.finding_blocks), every block's, in order."""
    from tui.widgets.finding_blocks import FindingBlock, FindingBlocks

    widget = app.screen.query_one(selector)
    if isinstance(widget, FindingBlocks):
        return "\n".join(str(block.render()) for block in widget.query_children(FindingBlock))
    return str(widget.render())


def own_data(tmp_path, n: int = 48) -> str:
    """A small alpaca file of one's own: n rows."""
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(f'{{"instruction": "say {i}", "output": "number {i} said"}}\n' for i in range(n)),
                    encoding="utf-8")
    return str(path)


async def own_model_and_data(pilot, model_dir, data: str) -> None:
    """From the model step: a model of one's own (the demo's copy), then one's own data; ends on the
    hyperparameters."""
    await paste_into(pilot, "#field-model", str(model_dir))
    await pilot.press("ctrl+n")
    await paste_into(pilot, "#field-dataset-path", data)
    await pilot.press("ctrl+n")


async def type_and_save(pilot, selector: str, text: str) -> None:
    """From the model step: type into a hyperparameter field, then save from Review (ctrl+s)."""
    await pilot.press("ctrl+n", "ctrl+n")
    await type_into(pilot, selector, text)
    await pilot.press("ctrl+n")
    await pilot.pause(0.1)
    await pilot.press("ctrl+s")
    await pilot.pause(0.1)
