"""Screenshots of the sweep monitor on a fabricated, finished 3 x 3 sweep (sweep_fakerun.py): SVG from
Textual, PNG through rsvg-convert (shots_monitor.svg_to_png). Run directly:
    python screenshots/shots_sweep.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from shots_monitor import _save, svg_to_png  # noqa: E402
from sweep_fakerun import make_sweep  # noqa: E402

# (file stem, terminal size, sweep state)
SHOTS = [
    ("sweep_100x32", (100, 32), "done"),
    ("sweep_80x24_running", (80, 24), "running"),
]


async def _settle(app, timeout: float = 10.0) -> None:
    from tui.screens.sweep_monitor import SweepMonitorScreen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(app.screen, SweepMonitorScreen) and app.screen.summary is not None:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)


async def take(out_dir: Path) -> list[Path]:
    from tui.app import LorapilotApp

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="lorapilot-sweep-shots-") as tmp:
        try:
            for stem, size, state in SHOTS:
                # From the sweep's project folder, so the commands shown read runs/sweep-..., as a user's would.
                os.chdir(Path(tmp).resolve())
                make_sweep(Path(stem) / "runs", state=state)
                os.chdir(Path(tmp) / stem)
                app = LorapilotApp(start="monitor", run_dir="runs/sweep-qwen-alpaca")
                async with app.run_test(size=size) as pilot:
                    await _settle(app)
                    await pilot.pause()
                    written.append(_save(app, out_dir, stem))
        finally:
            os.chdir(cwd)
    pngs = [svg_to_png(p) for p in written]
    return written + [p for p in pngs if p]

if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    for p in asyncio.run(take(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)):
        print(p)
