"""The wizard in a tmux pane of 80x24, as a newcomer walks it: nothing the user needs is cut off."""

from __future__ import annotations

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

