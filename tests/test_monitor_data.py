"""The monitor's data side without a screen: reading the run directory, folding records, downsampling."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run, records  # noqa: E402

from tui.models.chart_data import Ema, downsample  # noqa: E402
from tui.models.run_feed import LogFollower, RunFeed  # noqa: E402
from tui.models.run_history import FINDINGS, LOSS, RunHistory  # noqa: E402
from tui.widgets.chart_axis import compact_number  # noqa: E402


def test_downsample_keeps_spikes_and_the_latest_point():
    n = 50_000
    x = np.arange(n, dtype=float)
    y = np.ones(n)
    y[31_337] = 40.0           # a spike that striding would skip
    y[-1] = 0.5                # the newest point, which must always be drawn
    dx, dy = downsample(x, y, 200)
    assert len(dx) <= 204
    assert 40.0 in dy and dx[-1] == n - 1 and dy[-1] == 0.5 and dx[0] == 0
    assert np.all(np.diff(dx) > 0)


def test_downsample_survives_nans_and_small_inputs():
    y = np.array([1.0, math.nan, 2.0, math.inf, 3.0] * 100)
    dx, dy = downsample(np.arange(500.0), y, 20)
    assert np.isfinite(dy).sum() >= 2
    x3 = np.arange(3.0)
    assert downsample(x3, x3, 100)[0] is x3


def test_ema_incremental_equals_full_and_restarts_on_rewind():
    vals = [2.0, 1.8, math.nan, 1.7, 1.5, 1.4]
    full = Ema().smooth(vals, 0.9)
    inc = Ema()
    inc.smooth(vals[:2], 0.9)
    assert list(inc.smooth(vals, 0.9)) == pytest.approx(list(full), nan_ok=True)
    assert full[0] == pytest.approx(2.0)      # debiased: the first point is itself
    assert math.isnan(full[2]) and not math.isnan(full[3])
    assert list(inc.smooth(vals[:3], 0.9, key="rewound")) == pytest.approx(list(full[:3]), nan_ok=True)


def test_compact_numbers_fit_the_axis_margin():
    for v in (2e-4, 1.5e-4, 5e-5, 0.3, 1.25, 3650, 12_000, 2.5e6):
        assert len(compact_number(v)) <= 6, (v, compact_number(v))


def test_axis_labels_share_their_decimals_as_the_loss_beside_them_keeps_its_zeros():
    """A loss axis read 1, 1.2, 1.4 ... 2, 2.2 beside a last loss of 1.200: each tick's own trailing zeros dropped."""
    from tui.widgets.chart_axis import CompactFormatter, same_decimals

    axis = CompactFormatter()
    assert axis.get_labels_for_ticks([1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2]) == \
        ["1.0", "1.2", "1.4", "1.6", "1.8", "2.0", "2.2"]
    assert axis.get_labels_for_ticks([2.4, 2.45, 2.5]) == ["2.40", "2.45", "2.50"]
    assert axis.get_labels_for_ticks([3.0, 4.0, 5.0]) == ["3", "4", "5"]
    # an exponent or a suffix, or more than the margin holds: as compact_number writes them
    assert axis.get_labels_for_ticks([0.0, 1e-4, 2e-4]) == ["0", "1e-4", "2e-4"]
    assert axis.get_labels_for_ticks([0.0, 5000.0, 10_000.0]) == ["0", "5000", "10k"]
    assert same_decimals(["-100", "-100.25"]) == ["-100", "-100.25"]   # -100.00: wider than the margin


def test_history_folds_records():
    h = RunHistory("x")
    recs = list(records(1, 900, 1200, t0=1000.0))
    changed = h.apply_records(recs)
    assert {LOSS, FINDINGS} <= changed
    assert len(h.loss) == 90 and len(h.eval_loss) == 18 and len(h.lr) == 90
    assert h.last_checkpoint["path"] == "checkpoints/checkpoint-900"
    assert [f.code for f in h.findings_newest_first()] == ["overfitting", "grad_norm_spike", "learning_curve"]
    # The last 40 intervals (steps 500-900, 640 s) less the pauses in them: 8 evaluations and 4 saves of 0.5 s each.
    assert h.steps_per_s() == pytest.approx(400 / (640 - 8 * 0.5 - 4 * 0.5))
    assert len(h.samples) == 3


def test_repeated_finding_counts_instead_of_repeating():
    h = RunHistory("x")
    for step in (100, 200, 300):
        h.apply_records([{"kind": "finding", "step": step, "time": 1.0, "code": "loss_flat",
                          "severity": "warning", "message": f"flat at {step}"}])
    (f,) = h.findings_newest_first()
    assert (f.count, f.first_step, f.step, f.message) == (3, 100, 300, "flat at 300")


def test_resume_rewinds_the_series():
    h = RunHistory("x")
    h.apply_records([{"kind": "train", "step": s, "time": float(s), "loss": 1.0} for s in (10, 20, 30, 40)])
    # Resumed from the checkpoint at step 20: the trainer logs step 30 again.
    h.apply_records([{"kind": "train", "step": 30, "time": 100.0, "loss": 0.5}])
    assert list(h.loss.x) == [10, 20, 30] and list(h.loss.y) == [1.0, 1.0, 0.5] and h.loss.rewinds == 1
    h.apply_records([{"kind": "train", "step": s, "time": float(s), "loss": 0.1} for s in range(40, 4000, 10)])
    assert len(h.loss) == 399 and h.loss.x[-1] == 3990 and h.loss.last() == 0.1


def test_nan_loss_is_kept_for_the_record_but_not_fatal():
    h = RunHistory("x")
    h.apply_records([{"kind": "train", "step": 10, "time": 1.0, "loss": math.nan}, {"kind": "train"},
                     {"kind": "train", "step": "bad"}, {"step": 5}])
    assert len(h.loss) == 1 and math.isnan(h.loss.y[0])


def test_feed_reads_only_complete_lines_of_a_growing_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    metrics = run / "metrics.jsonl"
    line = json.dumps({"kind": "train", "step": 10, "time": 1.0, "loss": 2.0})
    metrics.write_text(line + "\n" + line[:17])     # the trainer is mid-write
    feed = RunFeed(run, sample_gpus=False)
    assert len(feed.poll().records) == 1
    with open(metrics, "a") as f:
        f.write(line[17:] + "\n")
    assert [r["step"] for r in feed.poll().records] == [10]
    assert feed.poll().records == []


def test_feed_status_and_lost_state(tmp_path):
    import subprocess
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = make_run(tmp_path / "r", steps_done=50, pid=dead.pid)
    up = RunFeed(run, sample_gpus=False).poll()
    assert up.state == "lost" and up.status["pid"] == dead.pid
    assert up.log_lines and up.log_reset


def test_feed_a_corrupt_status_json_is_reported_at_once_and_not_retried(tmp_path):
    # The trainer replaces status.json atomically (temp file + rename): a reader never sees half a file, so one
    # that does not parse is corrupt, not caught mid-write. It is said at the first poll, with why.
    run = make_run(tmp_path / "r", steps_done=50, pid=os.getpid())
    feed = RunFeed(run, sample_gpus=False)
    up = feed.poll()
    assert up.state == "training" and up.status_error is None
    (run / "status.json").write_text('{\n "state": "training",\n "step": 50\n\n}}', encoding="utf-8")
    up = feed.poll()
    assert up.status == {} and up.state == "unknown"        # the last good status is stale: not shown as live
    assert up.status_error == "status.json unreadable: not valid JSON (line 5, column 2)"
    assert up.records == [] and not feed.poll()              # read once, not re-read every poll
    before = (run / "status.json").read_bytes()
    for _ in range(3):
        feed.poll()
    assert (run / "status.json").read_bytes() == before      # the monitor never writes the run directory
    from engine.rundir import write_status
    write_status(run, state="training", pid=os.getpid(), step=60)   # the trainer rewrites it: shown again
    up = feed.poll()
    assert up.status["step"] == 60 and up.status_error is None and up.state in ("training", "lost")


def test_feed_reads_a_large_file_in_chunks(tmp_path):
    run = make_run(tmp_path / "r", steps_done=3000, pid=os.getpid())
    feed = RunFeed(run, sample_gpus=False, chunk_bytes=16 * 1024)
    got, polls = 0, 0
    while True:
        up = feed.poll()
        got += len(up.records)
        polls += 1
        if not up.more:
            break
    assert polls > 3 and got == sum(1 for _ in open(run / "metrics.jsonl"))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("what", ["a named pipe", "a folder"])
def test_feed_of_a_run_whose_files_are_not_files(tmp_path, what):
    """A run directory from elsewhere whose status.json, metrics.jsonl and train.log are named pipes (or folders):
    the monitor's reader hung opening the pipe (it waits for a writer) and its log follower raised on a folder.
    Now the status is said to be unreadable, and the rest reads as empty."""
    run = tmp_path / "r"
    run.mkdir()
    for name in ("status.json", "metrics.jsonl", "train.log"):
        os.mkfifo(run / name) if what == "a named pipe" else (run / name).mkdir()
    feed = RunFeed(run, sample_gpus=False)
    for _ in range(2):
        up = feed.poll()
    up = RunFeed(run, sample_gpus=False).poll()
    assert up.status_error == f"status.json unreadable: not a regular file ({what})" and up.status == {}
    assert up.records == [] and not up.log_lines and up.state == "unknown"


def test_log_follower_tail_progress_bars_and_partial_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(20_000)))
    f = LogFollower(log, first_bytes=1024)
    lines, reset = f.read_new()
    assert reset and lines[-1] == "line 19999" and len(lines) < 200 and lines[0].startswith("line ")
    assert f.read_new() == ([], False)
    with open(log, "a") as fh:
        fh.write(" 10%|#   | 1/10\r 50%|#####  | 5/10\r100%|##########| 10/10\nhalf a li")
    lines, reset = f.read_new()
    assert lines == ["100%|##########| 10/10"] and not reset
    with open(log, "a") as fh:
        fh.write("ne\n")
    assert f.read_new()[0] == ["half a line"]
    log.write_text("fresh start\n")     # replaced (a new run in the same directory)
    assert f.read_new() == (["fresh start"], True)


def test_fifty_thousand_records_fold_quickly(tmp_path):
    run = tmp_path / "big"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for rec in records(1, 500_000, 500_000, t0=0.0, logging_steps=10, eval_steps=500, save_steps=10**9):
            f.write(json.dumps(rec) + "\n")
    feed, h = RunFeed(run, sample_gpus=False), RunHistory(str(run))
    t = time.perf_counter()
    while True:
        up = feed.poll()
        h.apply_records(up.records)
        if not up.more:
            break
    elapsed = time.perf_counter() - t
    assert h.records >= 50_000
    # A hang guard only (a few hundred ms on a laptop); benchmarks/monitor_cpu.py measures it properly.
    assert elapsed < 120, elapsed


def test_the_monitor_shows_the_latest_verdict_once():
    from engine.diagnose.live import diagnose_records

    evals = {20: 1.8, 30: 1.6, 40: 1.6}
    recs = []
    for step in (10, 20, 30, 40):
        recs += [{"kind": "train", "step": step, "time": 1000.0 + step, "loss": 2.0 - 0.01 * step},
                 {"kind": "eval", "step": step, "time": 1000.5 + step, "eval_loss": evals.get(step, 2.0)}]
    # What the trainer writes: each new finding as a record beside the train and eval records.
    written = recs + [f.to_record() for f in diagnose_records(recs)]
    h = RunHistory("x")
    h.apply_records(written)
    verdict = h.findings["learning_curve"]
    assert verdict.step == 40 and verdict.count == 1 and "well-fit" in verdict.message


def test_close_ticks_get_labels_that_tell_them_apart():
    """A run stopped at step 3 had a loss from 8.2424 to 8.2464: the axis read 8.25, 8.24, 8.24, 8.24. Labels take
    the digits that tell the ticks apart, within the axis margin."""
    from tui.widgets.chart_axis import CompactFormatter, LogFormatter

    f = CompactFormatter()
    ticks = f.get_ticks(8.2424, 8.2464, 6)
    labels = f.get_labels_for_ticks(ticks)
    assert len(set(labels)) == len(labels) and all(len(x) <= 6 for x in labels), labels
    assert f.get_labels_for_ticks([0.5, 1.0, 1.5]) == ["0.5", "1.0", "1.5"]  # no digits added past the ticks' own decimals
    log = LogFormatter()
    labels = log.get_labels_for_ticks(log.get_ticks(math.log10(8.2424), math.log10(8.2464), 6))
    assert len(set(labels)) == len(labels), labels


def _train(step: int, t: float, tps: float, seen: int) -> dict:
    return {"kind": "train", "step": step, "time": t, "loss": 1.0, "tokens_per_s": tps, "tokens_seen": seen}


def test_tokens_per_s_waits_for_a_record_after_the_first_of_each_life():
    """The first train record of a launch covers the warm-up (with compiled layers, minutes of compile): its
    tokens/s is no speed of the run. The monitor said 'tokens/s 35' for the first ten minutes of a compiled run."""
    h = RunHistory("x")
    h.apply_records([_train(1, 1000.0, 35.0, 4096)])
    assert h.tokens_per_s() is None
    h.apply_records([_train(10, 1009.0, 4096.0, 40960)])
    assert h.tokens_per_s() == 4096.0
    h.apply_records([{"kind": "event", "step": 10, "time": 9000.0, "code": "resumed", "message": "resumed"},
                     _train(11, 9100.0, 41.0, 45056)])
    assert h.tokens_per_s() is None
    h.apply_records([_train(20, 9109.0, 4000.0, 81920)])
    assert h.tokens_per_s() == 4000.0


def test_average_tokens_per_s_weighs_each_interval_by_its_training_time_not_its_pauses():
    """The trainer's tokens/s leaves out an interval's evaluation and save: the run's average is its tokens over
    its training seconds, so an interval with a long evaluation must not weigh as if it trained all along."""
    h = RunHistory("x")
    h.apply_records([_train(1, 1000.0, 50.0, 2000),
                     _train(11, 1005.0, 4000.0, 22000),       # 20,000 tokens in 5 s
                     _train(21, 1175.0, 2000.0, 32000)])      # 10,000 tokens in 5 s, then 165 s of evaluation
    assert h.avg_tokens_per_s() == pytest.approx(30_000 / 10)


def test_a_resume_cuts_the_charts_back_to_its_checkpoint_at_once():
    """Stopped at step 160 after an evaluation at 150, resumed from the checkpoint at 100: the evaluation at 150
    belongs to a trajectory the adapter no longer follows. It stayed on the chart ahead of the resumed training
    line (and the progress panel's 'eval' showed it) until the run evaluated step 150 again."""
    h = RunHistory("x")
    for step in range(10, 170, 10):
        h.apply_records([{"kind": "train", "step": step, "time": float(step), "loss": 1.0, "learning_rate": 1e-4,
                          "grad_norm": 0.3}])
        if step % 50 == 0:
            h.apply_records([{"kind": "eval", "step": step, "time": step + 0.5, "eval_loss": 1.0 + step / 1000}])
    h.apply_records([{"kind": "event", "step": 100, "time": 900.0, "code": "resumed", "message": "resumed"}])
    assert list(h.eval_loss.x) == [50, 100] and h.eval_loss.last() == pytest.approx(1.1)
    assert h.loss.x[-1] == h.lr.x[-1] == h.grad_norm.x[-1] == 100 and h.loss.rewinds == 1
    assert h.step == 100   # not the stopped life's 160, while the resumed trainer loads
    h.apply_records([{"kind": "train", "step": 110, "time": 910.0, "loss": 0.9}])
    assert list(h.loss.x[-3:]) == [90, 100, 110] and h.loss.rewinds == 1


def test_history_takes_an_integer_too_large_for_a_float_as_no_number():
    """JSON allows an integer no float holds (a line edited by hand): the monitor reads it as no number
    (engine.rundir.json_number), as it reads a string, and goes on drawing."""
    huge = 10 ** 400
    h = RunHistory("x")
    recs = list(records(1, 30, 1200, t0=1000.0))
    recs.append({"kind": "train", "step": 40, "time": 1400.0, "loss": huge, "tokens_per_s": huge, "tokens_seen": huge,
                 "gpu_mem_gib": [huge, 3.0], "gpu_peak_alloc_gib": [huge]})
    h.apply_records(recs)
    assert h.trainer_gpu_mem()[0] == [3.0] and h.trainer_gpu_mem()[3] == []
    assert h.loss.x[-1] == 30 and h.last_train["step"] == 40   # no loss at step 40, its record read


def test_progress_panel_leaves_out_the_age_of_a_save_whose_time_no_float_holds():
    """A hand-edited checkpoint event's time, an integer no float holds, ended the progress panel's ages in an
    OverflowError; its age is unknown, its checkpoint still named."""
    from tui.widgets.progress_panel import ProgressPanel

    h = RunHistory("x")
    h.apply_records([{"kind": "event", "step": 5, "time": 10 ** 400, "code": "checkpoint_saved",
                      "message": "checkpoint saved", "path": "checkpoints/checkpoint-5"}])
    panel = ProgressPanel(h)
    assert panel._ages() == () and panel._saved(h.last_checkpoint, None).plain == "checkpoint-5"
