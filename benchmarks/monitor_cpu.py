"""How much CPU the monitor costs while a user watches a live run.

A writer process appends to a run directory the way a trainer does (a train
record with its train.log line and status.json update every second, an eval
every 50 steps, a checkpoint event every 100), and the monitor watches it:
headless through Textual's run_test, and for real in a tmux pane (the
terminal output included). The monitor process's CPU time per wall second
(psutil, user + system, children included) is measured after a warm-up that
covers the first read of the history.

    python benchmarks/monitor_cpu.py [--seconds 30] [--out benchmarks/results/monitor_cpu.txt]

The target: under 5 % of one core while watching a live run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "screenshots"))

from monitor_fakerun import make_run, records  # noqa: E402

WARMUP_S = 6.0


@dataclass
class Case:
    name: str
    how: str            # "headless" | "tmux"
    size: tuple[int, int]
    preload_steps: int  # logged steps already in metrics.jsonl (one train record each)
    rate_hz: float      # train records appended per second; 0 = a finished run, nothing appended


CASES = [
    Case("live, typical (1 per 5 s)", "headless", (100, 32), 2_000, 0.2),
    Case("live, 2k records", "headless", (100, 32), 2_000, 1.0),
    Case("live, 50k records", "headless", (160, 48), 50_000, 1.0),
    Case("live, typical (1 per 5 s)", "tmux", (160, 48), 2_000, 0.2),
    Case("live, 2k records", "tmux", (80, 24), 2_000, 1.0),
    Case("live, 2k records", "tmux", (160, 48), 2_000, 1.0),
    Case("live, 50k records", "tmux", (160, 48), 50_000, 1.0),
    Case("live, fast logger (5/s)", "tmux", (160, 48), 2_000, 5.0),
    Case("finished run, idle", "tmux", (100, 32), 2_000, 0.0),
]


# ---------------------------------------------------------------- the run directory and its writer

def prepare_run(base: Path, steps: int, live_pid: int | None) -> tuple[Path, int]:
    run = make_run(base, steps_done=10, max_steps=steps * 3, pid=live_pid,
                   state="training" if live_pid else "done")
    t0 = time.time() - steps * 1.0
    n = 0
    with open(run / "metrics.jsonl", "w") as f:
        for rec in records(1, steps, steps * 3, t0=t0, s_per_step=1.0, logging_steps=1, eval_steps=50,
                           save_steps=100):
            f.write(json.dumps(rec) + "\n")
            n += 1
    status = json.loads((run / "status.json").read_text())
    status.update(step=steps, started=t0)
    (run / "status.json").write_text(json.dumps(status))
    return run, n


def writer_main(run_dir: str, first_step: int, rate_hz: float) -> None:
    """The stand-in trainer: appends records at rate_hz until killed."""
    run = Path(run_dir)
    step = first_step
    metrics = open(run / "metrics.jsonl", "a")
    log = open(run / "train.log", "a")
    period = 1.0 / rate_hz
    next_t = time.monotonic()
    while True:
        step += 1
        for rec in records(step, step, step * 3, t0=time.time() - step, s_per_step=1.0, logging_steps=1):
            metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        log.write(f"{{'loss': '1.02', 'grad_norm': '0.41', 'learning_rate': '1.9e-04', 'step': {step}}}\n")
        log.flush()
        status = json.loads((run / "status.json").read_text())
        status.update(step=step, updated=time.time())
        tmp = run / "status.json.tmp"
        tmp.write_text(json.dumps(status))
        os.replace(tmp, run / "status.json")
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))


# ---------------------------------------------------------------- the monitor, two ways

def headless_main(run_dir: str, width: int, height: int, seconds: float) -> None:
    """Runs the app headless for `seconds`; prints when the history was loaded."""
    from tui.app import LorapilotApp
    from tui.screens.monitor import MonitorScreen

    async def go() -> None:
        app = LorapilotApp(start="monitor", run_dir=run_dir)
        t0 = time.monotonic()
        async with app.run_test(size=(width, height)) as pilot:
            loaded = None
            while time.monotonic() - t0 < seconds:
                s = app.screen
                if loaded is None and isinstance(s, MonitorScreen) and s.history.records and s.history.machine:
                    loaded = time.monotonic() - t0
                    print(f"LOADED {loaded:.3f} {s.history.records}", flush=True)
                await pilot.pause(0.1 if loaded is None else 1.0)

    asyncio.run(go())


class MonitorDied(Exception):
    pass


def measure(proc: psutil.Process, seconds: float) -> float:
    def cpu() -> float:
        total = 0.0
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise MonitorDied(f"the monitor (pid {proc.pid}) exited during the measurement") from None
        for p in family:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total
    time.sleep(WARMUP_S)
    c0, w0 = cpu(), time.monotonic()
    time.sleep(seconds)
    return (cpu() - c0) / (time.monotonic() - w0) * 100


def run_case(case: Case, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="lorapilot-bench-") as tmp:
        writer = None
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)"])
        try:
            run, n = prepare_run(Path(tmp) / "run", case.preload_steps, sleeper.pid if case.rate_hz else None)
            if case.rate_hz:
                writer = subprocess.Popen([sys.executable, __file__, "--writer", str(run), str(case.preload_steps),
                                           str(case.rate_hz)])
            if case.how == "headless":
                mon = subprocess.Popen([sys.executable, __file__, "--headless", str(run), str(case.size[0]),
                                        str(case.size[1]), str(WARMUP_S + seconds + 2)],
                                       stdout=subprocess.PIPE, text=True)
                pct = measure(psutil.Process(mon.pid), seconds)
                out = mon.communicate(timeout=60)[0]
                load = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("LOADED")), "?")
                load_s = f"{float(load):.2f} s" if load != "?" else "?"
            else:
                pct, load_s = _run_tmux(run, case.size, seconds), "-"
        finally:
            for p in (writer, sleeper):
                if p:
                    p.kill()
                    p.wait()
    return {"case": case, "cpu_pct": pct, "load": load_s, "records": n}


def _run_tmux(run: Path, size: tuple[int, int], seconds: float) -> float:
    session = f"lpbench{os.getpid()}"
    # remain-on-exit keeps the pane (and what the app printed) if the monitor dies.
    cmd = f"exec {sys.executable} -m tui.entry monitor {run}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), cmd],
                   check=True, cwd=ROOT, env={**os.environ, "TERM": "xterm-256color"})
    subprocess.run(["tmux", "set-option", "-t", session, "remain-on-exit", "on"], check=False)
    try:
        pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                                 text=True, check=True).stdout.split()[0])
        try:
            return measure(psutil.Process(pid), seconds)
        except MonitorDied:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
            print(pane.stdout, file=sys.stderr)
            raise
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--headless":
        headless_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per case, after the warm-up")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--only", help="run the cases whose name or terminal contains this")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per case; the table shows the median (a shared machine's neighbours add noise)")
    args = ap.parse_args()
    has_tmux = shutil.which("tmux") is not None
    lines = [f"monitor CPU, % of one core (user+system, children included); {args.seconds:.0f} s measured after "
             f"{WARMUP_S:.0f} s warm-up; median of {args.repeat} runs (min-max)",
             f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}", "",
             f"{'case':<26} {'terminal':<9} {'size':>7} {'records':>8} {'append/s':>8} {'CPU %':>6} "
             f"{'(min-max)':>11} {'first load':>10}",
             "-" * 94]
    print("\n".join(lines), flush=True)
    for case in CASES:
        if case.how == "tmux" and not has_tmux:
            continue
        if args.only and args.only not in case.name and args.only != case.how:
            continue
        runs = [run_case(case, args.seconds) for _ in range(args.repeat)]
        pcts = sorted(r["cpu_pct"] for r in runs)
        r = runs[0]
        spread = f"({pcts[0]:.1f}-{pcts[-1]:.1f})"
        row = (f"{case.name:<26} {case.how:<9} {case.size[0]:>3}x{case.size[1]:<3} {r['records']:>8,} "
               f"{case.rate_hz:>8g} {statistics.median(pcts):>6.2f} {spread:>11} {r['load']:>10}")
        print(row, flush=True)
        lines.append(row)
    lines += ["", "records: preloaded metrics.jsonl lines (train, eval, event, finding, sample).",
              "target: < 5 % of one core while watching a live run."]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
