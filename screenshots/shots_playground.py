"""The playground at 100x32 (and 80x24, stacked) with real answers from a freshly trained demo run.

    python screenshots/shots_playground.py [OUT_DIR] [--run-dir RUN_DIR]

screenshots/make_screenshots.py calls `take`. Without a run the demo is trained first (tiny model, CPU, under a minute),
into a temporary directory. SVG from Textual, PNG through rsvg-convert when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "What is 2 plus 3?"
SIZES = {"playground": (100, 32), "playground_80x24": (80, 24)}


def train_demo(into: Path) -> Path:
    run_dir = into / "demo"
    subprocess.run([sys.executable, "-m", "tui.entry", "train", str(REPO / "presets" / "demo.yaml"),
                    "--run-dir", str(run_dir)], cwd=REPO, check=True, capture_output=True)
    return run_dir


async def shoot(run_dir: Path, svg: Path, size: tuple[int, int]) -> None:
    from tui.app import LorapilotApp

    app = LorapilotApp(start="playground", run_dir=str(run_dir))
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await pilot.press(*[("space" if c == " " else c) for c in PROMPT])
        await pilot.press("enter")
        deadline = time.monotonic() + 120
        while screen.pane("adapter").state not in ("done", "error") and time.monotonic() < deadline:
            await pilot.pause(0.2)
        await pilot.pause(0.2)
        app.save_screenshot(str(svg))
        app.exit()


async def take(out_dir: Path, run_dir: str | Path | None = None) -> list[Path]:
    """Every playground shot into out_dir; the run is run_dir, else $LORAPILOT_SHOT_RUN, else the demo trained now."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        run = run_dir or os.environ.get("LORAPILOT_SHOT_RUN") or train_demo(Path(tmp))
        for name, size in SIZES.items():
            svg = out / f"{name}.svg"
            await shoot(Path(run), svg, size)
            saved.append(svg)
    if shutil.which("rsvg-convert"):
        for svg in list(saved):
            subprocess.run(["rsvg-convert", str(svg), "-o", str(svg.with_suffix(".png"))], check=True)
            saved.append(svg.with_suffix(".png"))
    return saved


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir", nargs="?", default=str(Path(__file__).resolve().parent))
    p.add_argument("--run-dir", help="a finished run (default: $LORAPILOT_SHOT_RUN, else train the demo now)")
    a = p.parse_args()
    for path in asyncio.run(take(Path(a.out_dir), a.run_dir)):
        print(path)


if __name__ == "__main__":
    main()
