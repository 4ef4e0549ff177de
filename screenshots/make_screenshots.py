"""Regenerates every screenshot in this folder: the wizard, the monitor on a real demo run, the playground.

    python screenshots/make_screenshots.py [--run RUN_DIR]

Without --run it first trains the embedded demo for real (about a minute on 2 CPU cores) so the
monitor and the playground show a real run, not made-up numbers. SVGs come from Textual; PNGs
from rsvg-convert (Debian: librsvg2-bin) when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHOT_MODULES = ("shots_wizard", "shots_monitor", "shots_playground", "shots_sweep")


def train_demo(runs: Path) -> Path:
    run_dir = runs / "demo"
    cmd = [sys.executable, "-m", "tui.entry", "train", str(REPO / "presets" / "demo.yaml"), "--run-dir", str(run_dir)]
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a finished run directory to show (default: train the demo now)")
    a = ap.parse_args()
    sys.path[:0] = [str(HERE), str(REPO)]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(a.run) if a.run else train_demo(Path(tmp))
        os.environ["LORAPILOT_SHOT_RUN"] = str(run_dir)
        for name in SHOT_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError:
                print(f"{name}: not there, skipped")
                continue
            for path in asyncio.run(module.take(HERE)):
                print(path.relative_to(REPO))


if __name__ == "__main__":
    main()
