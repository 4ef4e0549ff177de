"""The monitor and the runs list, driven through Textual's Pilot against real run directories."""

from __future__ import annotations

import io
import re
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run, records  # noqa: E402

from engine.rundir import LOCK_FILE  # noqa: E402
from tui.app import LorapilotApp  # noqa: E402
from tui.screens.confirm_stop import ConfirmStop  # noqa: E402
from tui.screens.monitor import MonitorScreen  # noqa: E402
from tui.screens.runs import RunsScreen  # noqa: E402
from tui.widgets.loss_chart import EVAL_COLOUR, RAW_COLOUR, TRAIN_COLOUR, LossChart  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def text_of(widget) -> str:
    """What a Static-based panel shows, as plain text."""
    con = Console(width=max(40, widget.content_size.width), file=io.StringIO(), record=True, color_system=None)
    con.print(widget.content)
    return con.export_text()


async def until(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def line(chart, colour):
    """The chart's trace drawn in that colour (the order of the traces is the order they are drawn in)."""
    (trace,) = [t for t in chart._traces if t.style == colour]
    return trace


def monitor(app) -> MonitorScreen:
    assert isinstance(app.screen, MonitorScreen)
    return app.screen


def loaded(app) -> bool:
    s = app.screen
    return isinstance(s, MonitorScreen) and s.history.machine is not None and s.history.state != "unknown"


@pytest.fixture
def trainer():
    """A real process standing in for the trainer of `run_dir`: holds its trainer.lock open (as a trainer does for
    its whole life: `stop` signals only a process that does), sleeps, and records the SIGTERM it gets."""
    def spawn(marker: Path, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        ready = marker.with_name(marker.name + ".ready")
        code = ("import signal, sys, time, pathlib\n"
                f"def term(*a):\n    pathlib.Path({str(marker)!r}).write_text('sigterm')\n    sys.exit(0)\n"
                "signal.signal(signal.SIGTERM, term)\n"
                f"lock = open({str(run_dir / LOCK_FILE)!r}, 'a')\n"
                f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
                "time.sleep(120)\n")
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        deadline = time.monotonic() + 120   # a loaded machine starts Python slowly; no fixed pause is enough
        while not ready.exists():           # the handler and the lock are in place before the test signals it
            assert procs[-1].poll() is None and time.monotonic() < deadline, "the stand-in trainer did not start"
            time.sleep(0.05)
        return procs[-1]
    procs: list[subprocess.Popen] = []
    yield spawn
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


async def test_shows_a_realistic_run(tmp_path):
    run = make_run(tmp_path / "llama", pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        screen = monitor(app)
        h = screen.history
        assert len(h.loss) == 90 and len(h.eval_loss) == 18
        chart = screen.query_one("#loss", LossChart)
        assert line(chart, TRAIN_COLOUR).x[-1] == 900     # the latest point is drawn
        progress = text_of(screen.query_one("#progress"))
        assert "training" in progress and "900 / 1,200" in progress and "checkpoint-900" in progress
        assert "ETA" in progress and "tokens/s 3," in progress
        findings = text_of(screen.query_one("#findings-body"))
        assert findings.index("overfitting") < findings.index("grad_norm_spike")   # newest first
        assert re.search(r"fix +Use the checkpoint from step 700", findings), findings
        gpu = text_of(screen.query_one("#gpu"))
        assert "No GPU" in gpu and "peak allocated 18.4" in gpu
        system_text = text_of(screen.query_one("#system"))
        assert f"pid {os.getpid()}" in system_text and "RAM" in system_text
        assert screen.query_one("#log").lines[-1] == "Saving model checkpoint to checkpoints/checkpoint-900"
        assert screen.query_one("#lr-plot")._traces[0].x[-1] == 900


async def test_new_records_appear_while_watching(tmp_path):
    run = make_run(tmp_path / "live", steps_done=300, pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) == 30)
        screen = monitor(app)
        with open(run / "metrics.jsonl", "a") as f:
            for rec in records(301, 400, 1200, t0=time.time() - 400 * 1.6):
                f.write(json.dumps(rec) + "\n")
        status = json.loads((run / "status.json").read_text())
        (run / "status.json").write_text(json.dumps({**status, "step": 400, "updated": time.time()}))
        with open(run / "train.log", "a") as f:
            f.write("[step 400] appended by the test\n")
        await until(pilot, lambda: screen.history.loss.x[-1] == 400)
        # Charts follow at most every CHART_EVERY_S; the text panels at once.
        chart = screen.query_one("#loss", LossChart)
        await until(pilot, lambda: line(chart, TRAIN_COLOUR).x[-1] == 400, timeout=60)
        assert "400 / 1,200" in text_of(screen.query_one("#progress"))
        (run / "status.json").write_text(json.dumps({**status, "step": 401, "updated": time.time(), "memory": "lean",
                                                     "world_size": 2}))
        await until(pilot, lambda: "memory     lean · 2 GPUs" in text_of(screen.query_one("#progress")), timeout=60)
        assert "checkpoint-400" in text_of(screen.query_one("#progress"))
        (run / "status.json").write_text(json.dumps({**status, "step": 402, "updated": time.time(), "memory": "fast",
                                                     "world_size": 2, "parallelism": "fsdp"}))
        await until(pilot, lambda: "memory     fast · 2 GPUs (sharded)" in text_of(
            screen.query_one("#progress")), timeout=60)
        # the plan compiled the decoder layers (training.compile): the monitor says so beside the memory mode
        (run / "status.json").write_text(json.dumps({**status, "step": 403, "updated": time.time(), "memory": "fast",
                                                     "plan": {"compile_layers": True}}))
        await until(pilot, lambda: "memory     fast · compiled layers" in text_of(
            screen.query_one("#progress")), timeout=60)
        assert screen.query_one("#log").lines[-1] == "[step 400] appended by the test"


async def test_half_written_last_line(tmp_path):
    run = make_run(tmp_path / "half", steps_done=100, pid=os.getpid())
    line = json.dumps({"kind": "train", "step": 110, "time": time.time(), "loss": 1.5, "learning_rate": 1e-4})
    with open(run / "metrics.jsonl", "a") as f:
        f.write(line[:25])
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        h = monitor(app).history
        await pilot.pause(0.6)
        assert h.loss.x[-1] == 100
        with open(run / "metrics.jsonl", "a") as f:
            f.write(line[25:] + "\n")
        await until(pilot, lambda: h.loss.x[-1] == 110)
        assert h.loss.y[-1] == 1.5 and app.is_running


async def test_lost_run_says_so_with_its_log(tmp_path):
    run = make_run(tmp_path / "lost", steps_done=200, pid=dead_pid())
    with open(run / "train.log", "a") as f:
        f.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        progress = " ".join(text_of(monitor(app).query_one("#progress")).split())
        assert "lost" in progress and "process is gone" in progress
        assert "lorapilot train --resume" in progress
        assert "CUDA out of memory" in progress
        assert "ETA -" in progress
        await pilot.press("x")      # nothing to stop: no dialog
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmStop)


async def test_quitting_leaves_the_trainer_running(tmp_path, trainer):
    proc = trainer(tmp_path / "marker", tmp_path / "r")
    run = make_run(tmp_path / "r", pid=proc.pid)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        assert monitor(app).history.state == "training"
        await pilot.press("q")
        await pilot.pause(0.2)
    assert not app.is_running
    time.sleep(0.3)
    assert proc.poll() is None and not (tmp_path / "marker").exists()
    assert not (run / "stop.request").exists()


async def test_stop_asks_first_then_sends_sigterm(tmp_path, trainer):
    marker = tmp_path / "marker"
    proc = trainer(marker, tmp_path / "r")
    run = make_run(tmp_path / "r", pid=proc.pid)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop))
        # The trainer goes on while the dialog is open: it stops after the step it is on when asked, not at the
        # step the dialog opened on (on a busy CPU, asked at step 5, it stopped at step 9).
        words = " ".join(" ".join(str(label.render()) for label in app.screen.query("Label")).split())
        assert "after the step it is on (step 900 now)" in words and "at step 900" not in words, words
        # The command that continues it, whole: "lorapilot train --resume." alone left the run to be guessed.
        assert f"lorapilot train --resume {run}" in words, words
        await pilot.press("enter")          # focus is on "Keep training": Enter is safe
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
        time.sleep(0.3)
        assert proc.poll() is None
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
    assert proc.wait(timeout=10) == 0
    assert marker.read_text() == "sigterm"


async def test_small_terminal_uses_tabs_and_large_a_grid(tmp_path):
    from textual.widgets import TabbedContent
    from textual.widgets._tabbed_content import ContentTab
    run = make_run(tmp_path / "r", pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        screen = monitor(app)
        tabs = screen.query_one(TabbedContent)
        assert screen.compact and tabs.active == "tab-overview"
        assert screen.query_one("#loss").region.height >= 8       # the chart is usable at 80x24
        # Keys 1-6 switch the tabs, and each label starts with its key (nothing said so before); all six fit.
        shown = list(screen.query(ContentTab))
        assert [str(tab.label).split(" ")[0] for tab in shown] == list("123456")
        assert shown[-1].region.right <= 80, shown[-1].region
        assert str(tabs.get_tab("tab-diagnostics").label) == "4 Diagnostics (3)"
        for key, tab in zip("65321", [shown[i] for i in (5, 4, 2, 1, 0)]):
            await pilot.press(key)
            assert tabs.active == ContentTab.sans_prefix(tab.id), (key, tabs.active)
        await pilot.press("4")
        assert tabs.active == "tab-diagnostics"
        assert screen.query_one("#findings").region.height > 10
        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: not screen.compact and len(screen.query("#grid")) == 1)
        await pilot.pause(0.2)
        assert not screen.query(TabbedContent)
        for panel in ("#loss", "#lr", "#progress", "#gpu", "#system", "#findings", "#log"):
            region = screen.query_one(panel).region
            assert region.width > 20 and region.height >= 4, panel
        assert screen.query_one("#samples").region.height > 5       # room for samples on a tall terminal
        # The new widgets drew the history they did not see arrive.
        assert line(screen.query_one("#loss", LossChart), TRAIN_COLOUR).x[-1] == 900
        assert screen.query_one("#log").lines


async def test_smoothing_and_log_scale_keys(tmp_path):
    run = make_run(tmp_path / "r", pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        chart = monitor(app).query_one("#loss", LossChart)
        raw_last = line(chart, TRAIN_COLOUR).y[-1]
        # eval first, then the training line over it (it stays visible where the two share a cell)
        assert [t.style for t in chart._traces] == [EVAL_COLOUR, TRAIN_COLOUR]
        await pilot.press("s")
        assert [t.style for t in chart._traces] == [EVAL_COLOUR, RAW_COLOUR, TRAIN_COLOUR]   # raw under smoothed
        assert line(chart, RAW_COLOUR).y[-1] == raw_last and line(chart, TRAIN_COLOUR).y[-1] != raw_last
        await pilot.press("l")
        assert chart.log_scale and line(chart, RAW_COLOUR).y[-1] == pytest.approx(__import__("math").log10(raw_last))
        assert "EMA 0.6" in chart.border_subtitle and "log y" in chart.border_subtitle
        await pilot.press("s", "s", "s")
        assert chart.smoothing == 0.0


async def test_runs_list_opens_a_run_and_comes_back(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "older", steps_done=100, state="done", now=time.time() - 3600)
    make_run(root / "newer", steps_done=300, pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(root))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 2
        assert [r.name for r in app.screen.runs] == ["newer", "older"]
        await pilot.press("down", "enter")
        await until(pilot, lambda: loaded(app))
        assert Path(monitor(app).run_dir).name == "older"
        assert monitor(app).history.state == "done"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_runs_list_when_there_are_none(tmp_path):
    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(tmp_path / "nothing"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert "No runs under" in str(app.screen.query_one("#runs-empty").content)


async def test_escape_from_a_directly_opened_monitor_lists_its_siblings(tmp_path):
    run = make_run(tmp_path / "runs" / "only", pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs)
        assert app.screen.runs[0].name == "only"


async def test_fifty_thousand_records_load(tmp_path):
    run = tmp_path / "big"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for rec in records(1, 500_000, 500_000, t0=time.time() - 500_000, s_per_step=1.0, eval_steps=1000,
                           save_steps=10_000):
            f.write(json.dumps(rec) + "\n")
    (run / "status.json").write_text(json.dumps({"state": "done", "pid": None, "step": 500_000,
                                                 "max_steps": 500_000}))
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(160, 48)) as pilot:
        t = time.monotonic()
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) and monitor(app).history.loss.x[-1] == 500_000, timeout=120)
        elapsed = time.monotonic() - t
        chart = monitor(app).query_one("#loss", LossChart)
        # Drawn downsampled, with the latest point kept.
        drawn = chart._datasets[0]
        assert len(drawn.x) <= 2 * chart.size.width + 4
        assert drawn.x[-1] == 500_000
        assert elapsed < 120, elapsed  # a hang guard; the wait above already bounds it


async def test_a_directory_with_only_metrics(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for rec in records(1, 100, 100, t0=time.time() - 200):
            f.write(json.dumps(rec) + "\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: monitor(app).history.machine is not None and len(monitor(app).history.loss))
        assert "unknown" in text_of(monitor(app).query_one("#progress"))


async def test_a_corrupt_status_json_says_why_and_the_metrics_still_show(tmp_path):
    run = make_run(tmp_path / "corrupt", steps_done=100, pid=os.getpid())
    ckpt = run / "checkpoints" / "checkpoint-100"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 100, "max_steps": 1200}), encoding="utf-8")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        h = monitor(app).history
        assert h.state == "training"
        (run / "status.json").write_text('{\n "state": "training",\n "step": 100,\n\n "pid": }', encoding="utf-8")
        await until(pilot, lambda: h.status_error is not None)
        await until(pilot, lambda: "unreadable" in text_of(monitor(app).query_one("#progress")))
        progress = " ".join(text_of(monitor(app).query_one("#progress")).split())
        assert "unknown" in progress
        assert "status.json unreadable: not valid JSON (line 5, column 9)" in progress
        assert "pid" not in progress                        # the stale status's pid is not shown as the trainer
        assert "step 100 / 1,200" in progress               # the planned steps: the last checkpoint's trainer state
        # Elapsed is what the metrics cover, no longer counted on from the stale status's start.
        assert h.elapsed_s(now=time.time() + 3600) == h.elapsed_s() == pytest.approx(h.last_time - h.first_time)
        line = json.dumps({"kind": "train", "step": 110, "time": time.time(), "loss": 1.25})
        with open(run / "metrics.jsonl", "a") as f:    # the rest of the monitor goes on from metrics.jsonl
            f.write(line + "\n")
        await until(pilot, lambda: h.loss.x[-1] == 110)
        assert h.step == 110 and h.loss.y[-1] == 1.25


async def test_finished_demo_run(finished_demo_run):
    app = LorapilotApp(start="monitor", run_dir=str(finished_demo_run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) > 0, timeout=60)
        h = monitor(app).history
        assert h.state == "done"
        assert h.loss.x[-1] > 0 and all(v == v for v in h.loss.y)   # no NaN in a healthy run
        assert monitor(app).query_one("#loss", LossChart)._traces
        progress = text_of(monitor(app).query_one("#progress"))
        assert "done" in progress
        # The final adapter's row said "adapter    adapter  step 40, ..."; it says where it went.
        adapter = next(line for line in progress.splitlines() if line.strip().startswith("adapter"))
        assert "saved to adapter/  step 40," in adapter and "adapter adapter" not in " ".join(adapter.split())


@pytest.mark.parametrize("state", ["training", "done"])
async def test_a_finished_run_shows_its_average_tokens_per_s_not_its_last_interval(tmp_path, state):
    """The last logging interval of a run is often short or spent evaluating (the demo's read 63 tokens/s after
    intervals of 200-500): a finished run shows the average over its training, said so; a live one the latest."""
    run = make_run(tmp_path / "r", state=state, steps_done=900, pid=os.getpid() if state == "training" else None)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if '"kind": "train"' in line)
    rec = json.loads(lines[last])
    rec["tokens_per_s"] = 63.0
    lines[last] = json.dumps(rec)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) == 90)
        await pilot.pause(0.1)
        progress = text_of(monitor(app).query_one("#progress"))
        if state == "training":
            assert "tokens/s 63" in progress and "avg" not in progress, progress
        else:   # fakerun: ~3,650 a second in every interval but the last, each 16 s; the last 63
            assert "avg tokens/s 3,5" in progress or "avg tokens/s 3,6" in progress, progress
            assert "tokens/s 63" not in progress


async def test_the_monitor_names_its_run_at_80x24(tmp_path):
    """No header fits at 80x24, so the run's name goes in the progress panel's title: a user with two monitors in
    two tmux windows can tell which run each one watches. With the room for a header, the header names it."""
    run = make_run(tmp_path / "llama2-7b-alpaca-r16", state="done", steps_done=1200)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.pause(0.1)
        title = monitor(app).query_one("#progress").border_title
        assert "Progress" in title and "llama2-7b-alpaca-r16" in title
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: loaded(app))
        assert monitor(app).title == "llama2-7b-alpaca-r16"
        assert monitor(app).query_one("#progress").border_title == "Progress"  # said once, in the header


async def test_gpu_panel_with_gpus_and_the_90_percent_line(tmp_path):
    from textual.app import App

    from engine.gpu import GpuSample
    from tui.models.run_history import RunHistory
    from tui.widgets.gpu_panel import GpuPanel

    h = RunHistory(str(tmp_path))
    h.gpu_state, h.gpu_reason = "ok", "8 GPUs"
    h.gpus = [GpuSample(i, "NVIDIA H100 80GB HBM3", 40.0 + 5 * i, 79.6, 97.0, 70.0, 300.0) for i in range(8)]
    h.apply_records([{"kind": "train", "step": 10, "time": 1.0, "loss": 1.0, "gpu_mem_gib": [74.1],
                      "gpu_peak_alloc_gib": [72.5]}])

    class One(App):
        def compose(self):
            yield GpuPanel(h, id="gpu")

    app = One()
    async with app.run_test(size=(80, 24)):
        panel = app.query_one(GpuPanel)
        text = text_of(panel)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 9            # one line a GPU on an 8-GPU node, then the trainer's figures
        assert "GPU7" in text and "75.0/79.6 GiB  94%" in text and "util 97% 70°C" in text
        assert "peak allocated 72.5 · used 74.1 (nvidia-smi) GiB" in text
        h.gpus = h.gpus[:1]
        h.bump("gpu")
        panel.sync()
        text = text_of(panel)
        assert "NVIDIA H100 80GB HBM3 · util 97% · 70°C · 300 W" in text
        assert "┃" in text or "│" in text   # the 90 % line


async def test_log_tail_keeps_the_newest_line_in_view(tmp_path):
    run = make_run(tmp_path / "r", pid=os.getpid())
    with open(run / "train.log", "a") as f:
        f.write("x" * 300 + "\n" + "the newest line\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.pause(0.3)
        log = monitor(app).query_one("#log")
        # Long lines are cut, not wrapped, so the last line is on screen.
        assert log.lines[-1] == "the newest line"
        assert "the newest line" in app.export_screenshot().replace("&#160;", " ")


async def test_a_sweep_directory_opens_the_sweep_monitor(tmp_path):
    # The sweep monitor itself is tested in test_sweep_monitor.py; here: a sweep.json it cannot read is said.
    from tui.screens.sweep_monitor import SweepMonitorScreen
    sweep = tmp_path / "sweep-1"
    make_run(sweep / "trial-lr1e-4-r8", steps_done=100, state="done")
    (sweep / "sweep.json").write_text("{}")
    app = LorapilotApp(start="monitor", run_dir=str(sweep))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepMonitorScreen)
                    and "sweep.json: rungs: missing" in str(app.screen.query_one("#sweep-status").content))


async def test_a_live_run_that_stopped_reporting_says_so(tmp_path, trainer):
    """In the words `lorapilot runs` and the app's runs list use: the progress panel's state said `training` for a
    live run that finished no step for 15 minutes, where they say `stalled?`; one rule (runs_list.stall) now, the
    same word and colour in all three."""
    from engine.runs_list import STALLED, collect, stalled_run
    from tui.widgets.progress_panel import STATE_STYLES

    proc = trainer(tmp_path / "marker", tmp_path / "quiet")
    run = make_run(tmp_path / "quiet", steps_done=200, pid=proc.pid, now=time.time() - 900)
    assert [r.state for r in collect(tmp_path, stalled=stalled_run)] == [STALLED]
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: loaded(app))
        panel = monitor(app).query_one("#progress")
        state_line = text_of(panel).splitlines()[0]
        assert state_line.split()[:2] == ["state", STALLED], state_line
        assert any(span.style == STATE_STYLES[STALLED] for span in panel.content.renderables[0].spans)
        progress = " ".join(text_of(panel).split())
        assert "No step has finished in 15 min" in progress
        assert f"kill {proc.pid}" in progress and "ETA -" in progress


def test_samples_panel_groups_each_evaluation_newest_first_with_its_eval_loss():
    from tui.widgets.samples_list import sample_blocks

    samples = [{"kind": "sample", "step": s, "eval_loss": loss, "prompt": f"p{i}", "output": f"answer {s}.{i}"}
               for s, loss in ((10, 3.25), (20, 2.5)) for i in range(2)]
    blocks = [b.plain for b in sample_blocks(samples)]
    assert len(blocks) == 2
    assert blocks[0].startswith("step 20 · eval loss 2.500\n") and blocks[1].startswith("step 10 · eval loss 3.250")
    assert blocks[0].index("answer 20.0") < blocks[0].index("answer 20.1") and "answer 10" not in blocks[0]


def test_samples_panel_header_leaves_out_an_eval_loss_no_float_holds():
    """A hand-edited sample's eval_loss, an integer no float holds, ended the monitor's samples panel in an
    OverflowError: it is no number (engine.rundir.record_number), as a string is."""
    from tui.widgets.samples_list import sample_blocks

    (block,) = sample_blocks([{"kind": "sample", "step": 10, "eval_loss": 10 ** 400, "prompt": "p", "output": "o"}])
    assert block.plain.startswith("step 10\n")


def test_samples_panel_keeps_a_prompt_s_lines_together_and_shows_the_expected_answer():
    """An alpaca prompt is its instruction, a blank line and its input: the blank line would read as the end of
    the prompt in the panel's narrow column. The held-out answer follows the output, to read it against."""
    from tui.widgets.samples_list import sample_blocks

    (block,) = sample_blocks([{"kind": "sample", "step": 10, "prompt": "Reverse the letters of the word.\n\nwindow",
                               "output": "wodnw", "reference": "The word reversed is\n\nwodniw."}])
    assert ("prompt Reverse the letters of the word.\n       window\noutput wodnw\n"
            "expected The word reversed is\n         wodniw.") in block.plain


def test_samples_panel_indents_a_field_s_further_lines_under_its_text():
    """Flush left, a prompt's second line ("window") sat in the label column and read as one more label beside
    prompt, output and expected (seen at 80x24 on the demo): each field's further lines go under its text."""
    from tui.widgets.samples_list import sample_blocks

    (block,) = sample_blocks([{"kind": "sample", "step": 40, "prompt": "Write the phrase in capitals.\ncastle paper",
                               "output": "In capitals:\nCASTLE", "reference": "In capitals:\nCASTLE PAPER."}])
    lines = block.plain.splitlines()[1:]
    assert lines == ["prompt Write the phrase in capitals.", "       castle paper",
                     "output In capitals:", "       CASTLE",
                     "expected In capitals:", "         CASTLE PAPER."]


async def test_the_loss_chart_and_the_progress_panel_show_the_same_last_record(tmp_path):
    """Seen on the demo: the progress panel read step 24, loss 3.145 while the chart still ended at step 20 (the
    chart is drawn less often than the panels). At every refresh both show the same records."""
    run = make_run(tmp_path / "r", steps_done=300, pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) == 30)
        screen = monitor(app)
        chart, progress = screen.query_one("#loss", LossChart), screen.query_one("#progress")
        await until(pilot, lambda: line(chart, TRAIN_COLOUR).x[-1] == 300)
        rec = {"kind": "train", "step": 310, "time": time.time(), "epoch": 0.78, "loss": 3.145,
               "learning_rate": 1e-4, "grad_norm": 0.4, "tokens_per_s": 3600.0}
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        await until(pilot, lambda: "loss       3.145" in text_of(progress), timeout=30)   # one refresh
        assert "310 / 1,200" in text_of(progress)
        assert line(chart, TRAIN_COLOUR).x[-1] == 310 and line(chart, TRAIN_COLOUR).y[-1] == 3.145
        assert "last train 3.145" in chart.border_subtitle


def footer_descriptions(app) -> list[str]:
    from textual.widgets._footer import FooterKey
    return [k.description for k in app.screen.query(FooterKey)]


@pytest.mark.parametrize("state", ["done", "stopped", "failed", "lost"])
async def test_an_ended_run_shows_no_pid_and_no_stop_key(tmp_path, state):
    """Seen on the demo: `state done  pid 7467` and `x Stop…` in the footer of a run whose trainer had exited."""
    pid = dead_pid()
    run = make_run(tmp_path / "r", state="training" if state == "lost" else state, steps_done=300, pid=pid)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.pause(0.3)   # the footer recomposes after refresh_bindings
        assert monitor(app).history.state == state
        progress = text_of(monitor(app).query_one("#progress"))
        assert progress.splitlines()[0].rstrip() == f"state      {state}", progress   # no pid
        assert "Stop…" not in footer_descriptions(app)


async def test_a_live_run_shows_its_pid_and_the_stop_key(tmp_path):
    run = make_run(tmp_path / "r", steps_done=300, pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))
        await pilot.pause(0.3)
        assert f"pid {os.getpid()}" in text_of(monitor(app).query_one("#progress"))
        assert "Stop…" in footer_descriptions(app)


async def test_the_monitor_refuses_an_export_over_a_folder_in_its_own_words(tmp_path, monkeypatch):
    # The engine's fix says "choose a new folder with --out", a flag the app does not have.
    from engine.export import default_out

    run = make_run(tmp_path / "runs" / "demo-20261203-101500", state="done", steps_done=40, max_steps=40)
    (run / "adapter").mkdir()
    monkeypatch.chdir(tmp_path)
    out = default_out(run, "vllm")
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export_choice(app, pilot)
        await pilot.press("v")
        await pilot.pause(0.3)
        said = " ".join(n.message for n in app._notifications)
    assert "exists and is not empty" in said and "Move or rename that folder" in said
    assert "--for vllm --out DIR" in said and "choose a new folder with --out" not in said
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


async def test_a_failed_export_shows_the_lines_it_logged_before_the_error(tmp_path, monkeypatch):
    """The app's failed export said the error alone in a toast: the lines the export logged before it (the template
    it matched, the merge it began) were thrown away, so a user could not see which step failed. They are shown, as a
    successful export's are, with the error after them."""
    import engine.export
    from engine.errors import UserError
    from tui.screens.export_done import ExportDone

    run = make_run(tmp_path / "runs" / "demo-20261203-101500", state="done", steps_done=40, max_steps=40)
    (run / "adapter").mkdir()
    monkeypatch.chdir(tmp_path)

    def export_for(target, run_dir, out=None, *, log, **kw):   # an export that fails in its second step
        log("template: chatml (matches the run's: [bold]one turn[/bold])")
        log("merging the adapter into the base model (bf16) ...")
        raise UserError("the base model: no space left on device", fix="free some space")

    monkeypatch.setattr(engine.export, "export_for", export_for)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export_choice(app, pilot)
        await pilot.press("o")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        dialog = app.screen
        assert isinstance(dialog, ExportDone), dialog
        shown = [str(line.render()) for line in dialog.query(".export-line")]
        assert shown[:2] == ["template: chatml (matches the run's: [bold]one turn[/bold])",
                             "merging the adapter into the base model (bf16) ..."]
        assert "no space left on device" in shown[2] and "free some space" in shown[2]
        assert "Export for ollama failed" in str(dialog.query_one("Label").render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ExportDone)


async def open_export_choice(app, pilot, limit: float = 60) -> None:
    """The monitor of a finished run, then `e`: until its export dialog is up."""
    from tui.screens.export_choice import ExportChoice

    deadline = time.monotonic() + limit
    while not (isinstance(app.screen, MonitorScreen) and app.screen.history.state == "done"):
        assert time.monotonic() < deadline
        await pilot.pause(0.1)
    await pilot.press("e")
    while not isinstance(app.screen, ExportChoice):
        assert time.monotonic() < deadline
        await pilot.pause(0.1)


async def test_a_finished_runs_checkpoint_age_keeps_counting(tmp_path, monkeypatch):
    """A finished run's panel was drawn once: 'checkpoint-900  step 900, 12s ago' still read 12s an hour later
    (seen on a run watched to its end, then exported and played with). Its ages redraw as the clock moves."""
    from tui.widgets import progress_panel

    now = [time.time()]
    monkeypatch.setattr(progress_panel, "wall_clock", lambda: now[0])
    run = make_run(tmp_path / "r", state="done", steps_done=900, now=now[0])
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app) and "checkpoint-900" in text_of(monitor(app).query_one("#progress")))
        assert " ago" in text_of(monitor(app).query_one("#progress"))
        now[0] += 2 * 3600 + 60
        await until(pilot, lambda: "step 900, 2h ago" in text_of(monitor(app).query_one("#progress")))


async def test_the_epoch_moves_with_the_step_between_logged_steps(tmp_path):
    """Train records come every logging_steps (10 by the recipe); the step counter follows status.json. The epoch
    row read the last train record's (0.06 at step 1) beside 'step 8 / 30': it now reads the status's, as the step."""
    run = make_run(tmp_path / "r", steps_done=900, max_steps=1200, pid=os.getpid())
    status = json.loads((run / "status.json").read_text())
    last = max((json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()),
               key=lambda r: r["step"] if r["kind"] == "train" else -1)
    per_epoch = round(last["step"] / last["epoch"])
    status.update(step=907, epoch=round(907 / per_epoch, 4))
    (run / "status.json").write_text(json.dumps(status), encoding="utf-8")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app) and "907 / 1,200" in text_of(monitor(app).query_one("#progress")))
        progress = text_of(monitor(app).query_one("#progress"))
        assert f"epoch      {907 / per_epoch:.2f}" in progress, progress


async def test_the_palette_offers_the_monitors_keys(tmp_path):
    """ctrl+p finds what the monitor's keys do, footer or not: "log y" runs it; "export" (the `e` key) on a run
    still training is found and says why it cannot run yet, rather than "no matches"."""
    from textual.command import CommandPalette

    run = make_run(tmp_path / "r", pid=os.getpid())
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app))

        async def palette(query: str) -> None:
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*query)
            await until(pilot, lambda: app.screen.query_one("CommandList").option_count > 0
                        and query.split()[0] in str(app.screen.query_one("CommandList").get_option_at_index(0)
                                                    .prompt).lower())
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))

        await palette("log y")
        await until(pilot, lambda: monitor(app).log_scale)
        await palette("export")
        await until(pilot, lambda: any(n.title == "Export…" and "finished run" in n.message
                                       for n in app._notifications))


async def test_a_run_whose_folder_name_has_brackets_is_named_as_it_is(tmp_path):
    """A folder name is text: the export and stop dialogs drew it as markup, so `lora[v2]-[bold]x` read `lora-x`."""
    from tui.screens.export_choice import ExportChoice

    name = "lora[v2]-[bold]x"
    run = make_run(tmp_path / name, state="done", steps_done=40, max_steps=40)
    (run / "adapter").mkdir()
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(100, 32)) as pilot:
        await open_export_choice(app, pilot)
        words = " ".join(str(label.render()) for label in app.screen.query("Label"))
        assert f"Export {name} for" in words, words
        assert isinstance(app.screen, ExportChoice)
        app.screen.dismiss(None)
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
        app.push_screen(ConfirmStop(name, 40))
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop) and app.screen.query("Label"))
        assert f"Stop {name}?" in " ".join(str(label.render()) for label in app.screen.query("Label"))
        app.exit()


async def test_escape_says_where_it_goes(tmp_path):
    """The footer's esc names where it leads: the runs list when the monitor was opened from it (or alone), back
    where it came from otherwise. A run launched from the wizard said "esc Runs" and esc went back to the wizard."""
    from textual.screen import Screen

    root = tmp_path / "runs"
    run = make_run(root / "r", state="done", steps_done=100)

    def esc_label(app) -> str:
        return app.screen.active_bindings["escape"].binding.description

    app = LorapilotApp(start="monitor", run_dir=None, runs_root=str(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs)
        await pilot.press("enter")
        await until(pilot, lambda: loaded(app))
        assert esc_label(app) == "Runs"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))

        below = Screen()  # what launched it: the wizard's Review, a sweep's monitor
        await app.push_screen(below)
        app.open_monitor(run)
        await until(pilot, lambda: loaded(app))
        assert esc_label(app) == "Back"
        from tui.screens.key_commands import KeyCommands
        offered = [title for title, _, _ in KeyCommands(app.screen)._commands()]
        assert "Back" in offered and "Runs" not in offered  # the palette offers what esc does, not "Runs (not now)"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is below)


def test_a_findings_evidence_and_fix_wrap_under_their_text_and_pre_flight_is_named():
    """In a pane of 80 columns the evidence and the fix wrapped back to the pane's edge, under their labels; and
    a pre-flight finding (recorded at step 0) read "step 0", a step the run never took."""
    from tui.models.run_history import RepeatedFinding
    from tui.widgets.findings_list import render_finding

    f = RepeatedFinding(code="few_target_tokens", severity="info", step=0, message="Some examples are short.",
                        evidence="257 of 380 (67.6%) on fewer than 10 (train.jsonl: lines 2, 3, 5, 6, 7 and 252 more)",
                        fix="Fine if short answers are the task (a label, yes or no); otherwise check each row.")
    con = Console(width=60, file=io.StringIO(), record=True, color_system=None)
    con.print(render_finding(f))
    lines = con.export_text().splitlines()
    assert lines[0].rstrip() == "● info few_target_tokens  pre-flight"
    column = lines[2].index("257")
    assert lines[2].startswith("  evidence ") and lines[3][:column].isspace() and lines[3][column] != " ", lines
    fix = next(i for i, line in enumerate(lines) if line.startswith("  fix"))
    assert lines[fix].index("Fine") == column and lines[fix + 1][:column].isspace(), lines
    live = RepeatedFinding(code="overfitting", severity="warning", step=700, message="m", evidence="", fix="")
    con.print(render_finding(live))
    assert "overfitting  step 700" in con.export_text()


async def test_the_first_step_of_a_compiled_run_is_no_speed(tmp_path):
    """Step 1's record covers the compile (minutes): the monitor says it is measuring, not 'tokens/s 35', and shows
    the speed from the next record on."""
    run = make_run(tmp_path / "compiled", steps_done=10, pid=os.getpid())
    now = time.time()
    first = {"kind": "train", "step": 1, "time": now - 10, "loss": 2.0, "tokens_per_s": 35.0, "tokens_seen": 4096}
    (run / "metrics.jsonl").write_text(json.dumps(first) + "\n")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: loaded(app) and len(monitor(app).history.loss) == 1)
        await pilot.pause(0.1)
        progress = text_of(monitor(app).query_one("#progress"))
        # the rows but the state's (its pid is this process's: it may hold "35")
        shown = "\n".join(line for line in progress.splitlines() if not line.startswith("state"))
        assert "tokens/s measuring" in shown and "35" not in shown, progress
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({**first, "step": 10, "time": now, "tokens_per_s": 3686.4, "tokens_seen": 40960}) + "\n")
        await until(pilot, lambda: "tokens/s 3,686" in text_of(monitor(app).query_one("#progress")), timeout=60)


async def test_gpu_panel_says_which_memory_and_compares_the_estimate_with_its_own_kind(tmp_path):
    """Three figures of GPU memory: the allocator's peak (what the estimate's peak counts), the card's use as
    nvidia-smi shows it (the context and the allocator's cache on top), and the estimate. The panel named the
    first 'now' and the second 'peak alloc' beside nothing to compare with: it names both and sets the estimate's
    peak beside the allocator's, never beside nvidia-smi's."""
    from textual.app import App

    from tui.models.run_history import RunHistory
    from tui.widgets.gpu_panel import GpuPanel

    h = RunHistory(str(tmp_path))
    h.gpu_state, h.gpu_reason = "no_gpu", "no NVIDIA GPU on this machine"
    h.status = {"state": "training", "estimate": {"peak_allocated_gib": 70.14, "device_total_gib": 75.9}}
    h.apply_records([{"kind": "train", "step": 10, "time": 1.0, "loss": 1.0, "gpu_mem_gib": [74.1],
                      "gpu_mem_total_gib": [79.6], "gpu_peak_alloc_gib": [72.5]}])

    class One(App):
        def compose(self):
            yield GpuPanel(h, id="gpu")

    async with One().run_test(size=(80, 24)) as pilot:
        text = " ".join(text_of(pilot.app.query_one(GpuPanel)).split())
        assert "peak allocated 72.5 (estimate 70.1) · used 74.1 (nvidia-smi) GiB" in text, text
