"""Screenshots of the monitor and the runs list: SVG from Textual, PNG through rsvg-convert.

Uses the run directory in $LORAPILOT_SHOT_RUN when set (a real run), else a
synthetic one with realistic records (monitor_fakerun.py). Run directly:
    python screenshots/shots_monitor.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from monitor_fakerun import make_run  # noqa: E402

# (file stem, terminal size, tab to show in the compact layout)
SHOTS = [
    ("monitor_100x32", (100, 32), None),
    ("monitor_80x24", (80, 24), None),
    ("monitor_80x24_diagnostics", (80, 24), "diagnostics"),
    ("monitor_80x24_hardware", (80, 24), "hardware"),
    ("monitor_160x48", (160, 48), None),
]


async def _settle(app, timeout: float = 10.0) -> None:
    """Waits until the monitor has read the run and sampled the machine once."""
    from tui.screens.monitor import MonitorScreen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = app.screen
        if isinstance(screen, MonitorScreen):
            h = screen.history
            if h.gpu_state is not None and h.machine is not None and (h.records or h.state != "unknown"):
                break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)   # one more poll: the second CPU sample is a real one


async def take(out_dir: Path) -> list[Path]:
    from tui.app import LorapilotApp

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = None
    run_dir = os.environ.get("LORAPILOT_SHOT_RUN")
    if not run_dir:
        tmp = tempfile.TemporaryDirectory(prefix="lorapilot-shots-")
        root = Path(tmp.name) / "runs"
        # Our own pid stands in for a live trainer, so the run reads as training.
        run_dir = str(make_run(root / "llama2-7b-alpaca-r16", pid=os.getpid()))
        # Neighbours for the runs list: one of each ending.
        now = time.time()
        make_run(root / "qwen2.5-1.5b-chat-r8", steps_done=1200, state="done", now=now - 3 * 3600)
        make_run(root / "mistral-7b-sql", steps_done=40, state="failed", now=now - 26 * 3600,
                 error="CUDA out of memory")
        make_run(root / "llama3-8b-dolly", steps_done=610, state="training", pid=_dead_pid(), now=now - 600)
    # A live trainer (our own pid) that stopped finishing steps 15 minutes ago: no_progress.
    stalled_tmp = tempfile.TemporaryDirectory(prefix="lorapilot-shots-stalled-")
    stalled = make_run(Path(stalled_tmp.name) / "llama2-13b-stuck", steps_done=200, pid=os.getpid(),
                       now=time.time() - 900)
    written: list[Path] = []
    try:
        for stem, size, tab in SHOTS:
            app = LorapilotApp(start="monitor", run_dir=run_dir)
            async with app.run_test(size=size) as pilot:
                await _settle(app)
                if tab:
                    await pilot.press(str(1 + ("overview", "lr", "hardware", "diagnostics").index(tab)))
                    await pilot.pause(0.3)
                written.append(_save(app, out_dir, stem))
        app = LorapilotApp(start="monitor", run_dir=str(stalled))
        async with app.run_test(size=(80, 24)) as pilot:
            await _settle(app)
            written.append(_save(app, out_dir, "monitor_80x24_stalled"))
        app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(Path(run_dir).parent))
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause(1.0)
            written.append(_save(app, out_dir, "monitor_runs_100x32"))
    finally:
        stalled_tmp.cleanup()
        if tmp:
            tmp.cleanup()
    pngs = [svg_to_png(p) for p in written]
    return written + [p for p in pngs if p]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _save(app, out_dir: Path, stem: str) -> Path:
    path = out_dir / f"{stem}.svg"
    app.save_screenshot(filename=path.name, path=str(out_dir))
    return path


_TEXT = re.compile(r'<text class="([^"]*)" x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)" '
                   r'clip-path="([^"]*)">([^<]*)</text>')


def _one_cell_per_char(m: re.Match) -> str:
    cls, x, y, length, clip, content = m.groups()
    chars = html.unescape(content)
    if len(chars) <= 1:
        return m.group(0)
    w = float(length) / len(chars)
    return "".join(
        f'<text class="{cls}" x="{float(x) + i * w:.1f}" y="{y}" textLength="{w:.1f}" clip-path="{clip}">'
        f'{html.escape(c).replace(" ", "&#160;")}</text>' for i, c in enumerate(chars))


def svg_to_png(svg: Path) -> Path | None:
    """PNG of an SVG screenshot; None where rsvg-convert is missing (apt-get install librsvg2-bin).

    rsvg ignores textLength and takes braille and block glyphs from a
    proportional fallback font, so a chart row would drift right; placing
    every character in its own cell keeps the PNG a faithful grid.
    """
    exe = shutil.which("rsvg-convert")
    if not exe:
        return None
    text = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
    text = _TEXT.sub(_one_cell_per_char, text)
    png = svg.with_suffix(".png")
    subprocess.run([exe, "-o", str(png)], input=text.encode("utf-8"), check=True)
    return png


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for p in asyncio.run(take(out)):
        print(p)
