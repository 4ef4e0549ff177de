"""Screenshots of every wizard step at 100x32: SVG from Textual, PNG through rsvg-convert when installed.

    python screenshots/shots_wizard.py [OUT_DIR]

The demo is preselected, and shown as a user sees it: the model field says
`lorapilot-demo`, which the estimator knows without a network or a GPU, so the
model panel, the estimate and the checklist all have something to show.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SIZE = (100, 32)
STEPS = ("model", "dataset", "hyperparams", "review")


async def _settle(app, pilot, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        if not app.wizard.busy:
            await pilot.pause(0.1)
            if not app.wizard.busy:
                return


async def take(out_dir: Path) -> list[Path]:
    from tui.app import LorapilotApp

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a screenshot must not wait on the network
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        for i, step in enumerate(STEPS):
            if i:
                await pilot.press("ctrl+n")
                await _settle(app, pilot)
            if step == "hyperparams":
                app.wizard.set_raw("lora.dropout", "0.3")  # a warning: valid, outside the usual range
                app.screen.query_one("#field-training-learning_rate").focus()
                await pilot.press("end", "ctrl+u", "-", "1")  # show an inline problem
                await _settle(app, pilot)
                app.screen.query_one("#row-training-learning_rate").scroll_visible(animate=False)
                await pilot.pause(0.1)
            if step == "review":
                app.wizard.set_many({"training.learning_rate": 2e-4, "lora.dropout": 0.05})  # nothing to fix
                await _settle(app, pilot)
                app.screen.query_one("#review-body").scroll_home(animate=False)
                await pilot.pause(0.1)
            svg = out_dir / f"wizard_{i + 1}_{step}.svg"
            app.save_screenshot(str(svg))
            saved.append(svg)
            if step == "review":  # and its lower half: the pre-flight checklist
                body = app.screen.query_one("#review-body")
                body.scroll_to_widget(app.screen.query_one("#checklist"), top=True, animate=False)
                await pilot.pause(0.1)
                svg = out_dir / f"wizard_{i + 1}_{step}_checklist.svg"
                app.save_screenshot(str(svg))
                saved.append(svg)
                # One key on one finding applies its fix: warmup off, the finding it raises focused (enter).
                from tui.widgets.finding_blocks import FindingBlock
                app.wizard.set_raw("training.warmup_ratio", "0")
                await _settle(app, pilot)
                next(b for b in app.screen.query(FindingBlock)
                     if b.finding is not None and b.finding.code == "no_warmup").focus()
                await pilot.pause(0.5)  # the footer redraws its keys for the focused finding
                svg = out_dir / f"wizard_{i + 1}_{step}_finding.svg"
                app.save_screenshot(str(svg))
                saved.append(svg)
        app.exit()
    if shutil.which("rsvg-convert"):
        for svg in list(saved):
            png = svg.with_suffix(".png")
            subprocess.run(["rsvg-convert", str(svg), "-o", str(png)], check=True)
            saved.append(png)
    return saved


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in asyncio.run(take(target)):
        print(path)
