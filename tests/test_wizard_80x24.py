"""The wizard in a tmux pane of 80x24, as a newcomer walks it: nothing the user needs is cut off."""

from __future__ import annotations

import json

from tui.app import LorapilotApp
from wizard_pilot import settle

NARROW = (80, 24)


async def test_estimate_line_wraps_rather_than_cuts_at_80_columns():
    """A problem, a card and a price: the line (90 columns) used to end in an ellipsis, the cost and the time
    cut. Now the problem takes a line of its own and every number shows, on every step."""
    from tui.widgets.estimate_line import EstimateLine

    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        s = app.wizard
        s.set_raw("model", "meta-llama/Meta-Llama-3-8B")
        s.select_gpu("t4")
        s.set_many({"training.max_seq_length": 4096, "training.micro_batch_size": 16})
        s.set_price(2.5)
        s.set_raw("lora.r", "0")  # a value the validator refuses: one problem
        await settle(app, pilot)
        assert s.estimate is not None and s.estimate.cost is not None
        for step in ("ctrl+n", "ctrl+n", "ctrl+n", None):
            await pilot.pause()
            line = app.screen.query_one(EstimateLine)
            width = line.content_region.width
            lines = str(line.render()).splitlines()
            assert all(len(text) <= width for text in lines), (type(app.screen).__name__, lines)
            assert line.size.height == len(lines) == 2, lines
            assert lines[0] == "✗ 1 problem"
            for word in ("eff. batch 64", f"{s.estimate.total_steps} steps", "VRAM", "GiB", "~", "$"):
                assert word in lines[1], (word, lines)
            if step:
                await pilot.press(step)
                await settle(app, pilot)

        # Fixed: one line again, the numbers where they were.
        s.set_raw("lora.r", "16")
        await settle(app, pilot)
        line = app.screen.query_one(EstimateLine)
        assert line.size.height == 1 and "problem" not in str(line.render())


async def test_max_seq_length_hint_names_the_length_for_this_dataset(tmp_path):
    """The hint said "recommended covers 95 % of examples" and never a number. Now it names the length, the one
    the pre-flight check's fix proposes (one rule), on both steps that show the field; without data it says so."""
    from wizard_pilot import paste_into, row_label

    data = tmp_path / "long.jsonl"  # responses of 1 to 120 words: a short max_seq_length cuts some
    data.write_text("".join(json.dumps({"instruction": f"count to {k}", "output": " one" * k}) + "\n"
                            for k in range(1, 121)), encoding="utf-8")
    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        s = app.wizard
        await pilot.press("ctrl+n")
        await paste_into(pilot, "#field-dataset-path", str(data))
        await settle(app, pilot)
        n = s.data_length()
        assert n and n % 64 == 0
        hint = row_label(app, "training.max_seq_length", "hint")
        assert hint.startswith(f"recommended at least {n} (keeps 95% of examples whole)"), hint
        # Number and unit stay together however the row wraps (it did: "... keeps 95" / "% of examples whole").
        from textual.content import Content
        for width in range(12, 80):
            lines = [str(ln).strip() for ln in Content(hint).wrap(width)]
            assert not any(ln.endswith("95") or ln.startswith("%") for ln in lines), (width, lines)

        # Too short for the data: the check's fix names the same number.
        s.set_raw("training.max_seq_length", "64")
        await settle(app, pilot)
        fixes = [f.fix for f in s.findings or [] if f.code == "responses_truncated"]
        assert fixes and f"Set training.max_seq_length to {n} " in fixes[0], fixes
        assert row_label(app, "training.max_seq_length", "hint").startswith(f"recommended at least {n} ")

        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert row_label(app, "training.max_seq_length", "hint").startswith(f"recommended at least {n} ")

        # No data read: said plainly, no number from the data that was there before.
        s.set_raw("dataset.path", "/nowhere/data.jsonl")
        await settle(app, pilot)
        hint = row_label(app, "training.max_seq_length", "hint")
        assert "no data read yet" in hint and str(n) not in hint, hint


async def test_statistics_name_the_prompt_format_once():
    """The Statistics tab said "format alpaca, template chat template"; the template has a row of its own, in the
    words the model card uses."""
    from wizard_pilot import shown

    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        stats = shown(app, "#data-stats")
        assert "template chat template" not in stats and "template template" not in stats, stats
        lines = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in stats.splitlines() if "  " in line}
        assert lines["format"] == "alpaca" and lines["prompt format"] == app.wizard.data_report.template, lines


def test_memory_bar_never_runs_past_its_width():
    """Every component big enough to see gets a cell; on the demo (a few MiB each beside 43 MiB of backward
    working memory) those cells ran the bar past its width, and in the Review's 76 columns it wrapped a cell."""
    from tui.widgets.vram_bar import bar_line

    mib = 1 / 1024
    parts = [(name, gib * mib, "") for name, gib in
             (("base", 0.3), ("unquantised", 1), ("adapters", 1), ("gradients", 1), ("optimizer", 1),
              ("activations", 5), ("backward", 43), ("dequantisation", 0.3))]
    for width in (20, 40, 74):
        cells = bar_line(parts, None, 0.9, width).plain
        assert len(cells) == width, (width, cells)
        assert len(set(cells)) >= 3  # the small components still show
    # On a card: the bar and the free cells fill the width, no more.
    assert len(bar_line(parts, 80 * mib, 0.9, 40).plain) == 40


async def test_memory_bar_fits_the_review_at_80_columns(tmp_path):
    """The bar is drawn for the width the Review has once laid out: with a dataset path that does not exist (a
    newcomer's typo) it was drawn for 80 columns before the screen had a size, and its last cell wrapped onto a
    line of its own."""
    from tui.widgets.vram_bar import VramBar

    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        app.wizard.set_raw("dataset.path", str(tmp_path / "missing.jsonl"))
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        await pilot.pause()
        bar = app.screen.query_one(VramBar)
        first = str(bar.render()).splitlines()[0]
        assert len(first) <= bar.content_region.width, (len(first), bar.content_region.width)
        assert len(first) == bar.size.width - 4  # drawn for the width it has, not for the 80 it guessed
        assert "base weights" in str(bar.render()).splitlines()[1]  # no wrapped cell between bar and legend


async def test_a_problem_with_the_value_being_typed_scrolls_into_view():
    """At 80x24 a field focused at the foot of the hyperparameters has its hint, help and problem below the fold:
    typing -1 into learning_rate showed only "✗ 2 problems" at the bottom, not what was wrong, until the user
    moved on. The row now scrolls up far enough to show its problem while the user is still in the field."""
    from textual.containers import VerticalScroll
    from textual.widgets import Input

    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        body = app.screen.query_one("#hyper-body", VerticalScroll)
        field = app.screen.query_one("#field-training-learning_rate", Input)
        app.screen.query_one("#field-training-parallelism").focus()  # the field above; tab, as a user moves
        await pilot.pause()
        await pilot.press("tab")
        await pilot.pause()
        assert field.has_focus
        assert body.region.contains_region(field.region)
        problem = app.screen.query_one("#row-training-learning_rate .field-problem")
        await pilot.press("end", "ctrl+u", "-", "1")
        await pilot.pause()
        await pilot.pause()
        assert "out of range" in str(problem.render())
        assert field.has_focus
        assert body.region.contains_region(problem.region), (body.region, problem.region)
        assert body.region.contains_region(field.region)  # and the field typed in stays in view


async def test_the_cpu_time_on_the_estimate_line_says_it_is_an_idle_machines(monkeypatch):
    """The line said "~17 s" on a machine with no GPU: a busy machine takes several times longer, which only the
    Review step said. Now the time names the CPU and the condition, on one line at 80 columns."""
    import tui.models.wizard_engine_calls as engine_calls
    from engine.estimate import list_gpus
    from tui.widgets.estimate_line import EstimateLine, fmt_duration

    monkeypatch.setattr(engine_calls, "detect_gpus", lambda: (list_gpus(), None))
    app = LorapilotApp()
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        est = app.wizard.estimate
        assert est is not None and est.gpu is None and est.time_caveat
        line = app.screen.query_one(EstimateLine)
        lines = str(line.render()).splitlines()
        assert len(lines) == 1 and len(lines[0]) <= line.content_region.width, lines
        assert lines[0].endswith(f" · no GPU: {fmt_duration(est.time_s)} on this CPU if idle"), lines
