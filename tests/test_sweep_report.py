"""A sweep's numbers from its trials' metrics, the winner, the table and heatmap, --apply, summarize_sweep."""

from __future__ import annotations

import io
import math
import os

import pytest

from conftest import hold_run_lock
from engine.config import config_from_dict, load_config
from engine.errors import UserError
from engine.rundir import MetricsWriter, number_text, process_start, write_status
from engine.sweep import summarize_sweep
from engine.sweep.plan import Trial
from engine.sweep.report import apply_winner, choose_winner, print_report, table_rows, trial_metrics
from engine.sweep.sweepdir import read_sweep, write_sweep


def records(losses, evals, **train_fields):
    at = dict(evals)
    out = []
    for i, x in enumerate(losses):
        out.append({"kind": "train", "step": i + 1, "time": 0.0, "loss": x, "tokens_per_s": 100.0 + i, **train_fields})
        if i + 1 in at:
            out.append({"kind": "eval", "step": i + 1, "time": 0.0, "eval_loss": at[i + 1]})
    return out


def test_trial_metrics_from_records():
    m = trial_metrics(records([3.0, 2.5, 2.0, 1.8, 1.7, 1.6], [(3, 2.4), (6, 1.9)], gpu_peak_alloc_gib=[5.5]))
    assert m["eval_loss"] == 1.9 and m["eval_step"] == 6 and m["best_eval_loss"] == 1.9
    assert m["train_loss"] == pytest.approx((1.8 + 1.7 + 1.6) / 3)
    assert m["gap"] == pytest.approx(1.9 - m["train_loss"])
    assert m["verdict"] == "underfit"  # eval still falling by more than 2 %
    assert m["tokens_per_s"] == pytest.approx(103.0) and m["peak_mem_gib"] == 5.5   # step 1 is the warm-up
    assert m["evals"] == [[3, 2.4], [6, 1.9]] and len(m["losses"]) == 6


def test_a_trials_numbers_take_an_integer_too_large_for_a_float_and_true_as_no_number():
    """JSON allows an integer no float holds (a line edited by hand); Python counts true as 1: neither is a loss,
    a speed or a memory, as a string would not be (engine.rundir.json_number)."""
    huge = 10 ** 400
    recs = records([3.0, huge, True, 2.0], [(2, huge), (4, 1.9)], gpu_peak_alloc_gib=[huge, 5.5])
    recs[2]["tokens_per_s"] = huge
    m = trial_metrics(recs)
    assert m["losses"] == [3.0, 2.0] and m["evals"] == [[4, 1.9]] and m["verdict"] != "diverged"
    assert m["tokens_per_s"] == 103.0 and m["peak_mem_gib"] == 5.5   # step 1 warms up, 2 and 3 have no loss
    assert [number_text(x) for x in (huge, True, math.inf, None, 1.5)] == ["-", "-", "nan", "-", "1.500"]


def test_a_trials_speed_leaves_out_each_launchs_warm_up_as_the_monitor_does():
    """The first train record of a launch (the run's first, the first after a resume) covers the warm-up and the
    compile: the monitor and train.log say "measuring" for it (engine.rundir.LaunchStart). The trial's tokens/s is
    the median of the others: with the warm-ups in, a 3-record trial read the slow record as its speed."""
    from engine.rundir import RESUMED

    speeds = [5.0, 1000.0, 10.0, 1010.0]   # steps 1 and 3 start a launch each
    recs = [{"kind": "train", "step": s, "time": 0.0, "loss": 1.0, "tokens_per_s": v}
            for s, v in zip((1, 2, 3, 4), speeds)]
    recs.insert(2, {"kind": "event", "step": 2, "time": 0.0, "code": RESUMED, "message": "resumed"})
    assert trial_metrics(recs)["tokens_per_s"] == pytest.approx(1005.0)
    assert trial_metrics(recs[:1])["tokens_per_s"] is None   # only the warm-up: not measured yet


def test_a_trials_peak_is_the_allocators_never_nvidia_smis_used_memory():
    """An older run's records have only nvidia-smi's used memory (gpu_mem_gib: the CUDA context and the allocator's
    cache too, GiBs above its peak): the table's "peak GiB" fell back to it, one column with two kinds of number
    compared as one. Left out ('-') where the allocator's peak was not recorded."""
    old = trial_metrics(records([3.0, 2.5], [(2, 2.4)], gpu_mem_gib=[14.0]))
    new = trial_metrics(records([3.0, 2.5], [(2, 2.4)], gpu_mem_gib=[14.0], gpu_peak_alloc_gib=[9.5]))
    assert old["peak_mem_gib"] is None and new["peak_mem_gib"] == 9.5


def test_a_trial_whose_loss_barely_moved_is_too_short_to_judge():
    m = trial_metrics(records([3.0, 2.99, 2.98, 2.97, 2.96, 2.95], [(3, 2.98), (6, 2.97)]))
    assert m["verdict"] == "too short to judge"  # not "well-fit": 1.7 % lower after 6 steps


def test_trial_metrics_of_a_diverged_trial():
    recs = records([3.0, float("nan")], [(2, float("nan"))])
    recs.append({"kind": "finding", "step": 2, "time": 0.0, "code": "nan_loss", "severity": "error"})
    m = trial_metrics(recs)
    assert m["verdict"] == "diverged" and m["best_eval_loss"] is None and m["error_findings"] == ["nan_loss"]
    assert m["peak_mem_gib"] is None and trial_metrics([])["eval_loss"] is None


def trial(lr, r, state="done", eval_loss=None, **kw):
    t = Trial(lr, r)
    return {"id": t.id, "learning_rate": lr, "r": r, "alpha": t.alpha, "state": state, "eval_loss": eval_loss,
            "stopped_by": None, "stop_reason": None, "step": 12, **kw}


def test_winner_is_the_finished_trial_with_the_lowest_eval_loss():
    trials = [trial(1e-4, 4, eval_loss=2.0), trial(2e-4, 8, eval_loss=1.5),
              trial(5e-4, 8, "stopped", eval_loss=1.2, stopped_by="halving"),  # fewer steps: not comparable
              trial(1.0, 8, "stopped", eval_loss=float("nan"), stopped_by="nan_loss")]
    w = choose_winner(trials)
    assert (w["id"], w["r"], w["alpha"], w["finished"]) == ("lr2e-4_r8", 8, 16, True)
    only_stopped = choose_winner(trials[2:])
    assert only_stopped["id"] == "lr5e-4_r8" and only_stopped["finished"] is False
    assert choose_winner(trials[3:]) is None


def test_a_trial_that_diverged_never_wins_on_an_evaluation_before_it():
    """No trial finished: the one nan_loss stopped after a good first evaluation was crowned on that evaluation."""
    trials = [trial(3e-3, 8, "stopped", eval_loss=1.0, eval_step=4, stopped_by="nan_loss", error_findings=["nan_loss"]),
              trial(1e-4, 8, "stopped", eval_loss=1.5, eval_step=4, stopped_by="halving")]
    assert choose_winner(trials)["id"] == "lr1e-4_r8"
    assert choose_winner(trials[:1]) is None


def test_stopped_trials_are_compared_at_one_step():
    """No trial finished: one halving stopped at step 4 beat one that trained on to step 8, on a loss of 4 steps."""
    trials = [trial(1e-4, 8, "stopped", eval_loss=1.2, eval_step=4, stopped_by="halving"),
              trial(2e-4, 8, "stopped", eval_loss=1.4, eval_step=8, stopped_by="budget"),
              trial(5e-4, 8, "stopped", eval_loss=1.3, eval_step=8, stopped_by="user")]
    w = choose_winner(trials)
    assert (w["id"], w["step"], w["finished"]) == ("lr5e-4_r8", 8, False)


def test_a_tie_goes_to_the_smaller_r_then_the_lower_lr_and_is_said(tmp_path):
    """Two trials at one eval loss: the first in run order won, unsaid."""
    from rich.console import Console

    sweep = finished_sweep(tmp_path)
    sweep["trials"] = [trial(5e-4, 8, eval_loss=1.25), trial(2e-4, 8, eval_loss=1.25), trial(5e-4, 4, eval_loss=1.25),
                       trial(1e-4, 4, eval_loss=1.5)]
    sweep["winner"] = w = choose_winner(sweep["trials"])
    assert (w["id"], w["tied"]) == ("lr5e-4_r4", ["lr2e-4_r8", "lr5e-4_r8"])
    assert choose_winner(sweep["trials"][::-1])["id"] == "lr5e-4_r4"
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=200))
    assert "note: tied at eval loss 1.250 with lr 2e-4, r 8; lr 5e-4, r 8: the smaller r, then the lower lr won" \
        in buf.getvalue()


def finished_sweep(tmp_path, base_raw=None) -> dict:
    base = config_from_dict(base_raw or {"model": "some/model", "dataset": {"path": str(tmp_path / "d.jsonl")},
                                         "training": {"max_steps": 400, "learning_rate": 2e-4}})
    sweep = {"sweep_dir": str(tmp_path / "sw"), "state": "done", "base_config_path": str(tmp_path / "base.yaml"),
             "base_config": base.to_dict(), "steps": 12, "rungs": [4, 8], "grid": {"learning_rate": [1e-4, 5e-4],
                                                                                    "r": [4, 8]},
             "trials": [trial(1e-4, 4, eval_loss=2.0, verdict="underfit"),
                        trial(1e-4, 8, eval_loss=1.9, verdict="underfit"),
                        trial(5e-4, 4, eval_loss=1.4, verdict="well-fit", gap=0.2),
                        trial(5e-4, 8, "stopped", eval_loss=float("nan"), stopped_by="nan_loss",
                              stop_reason="nan_loss: The training loss is NaN")]}
    sweep["winner"] = choose_winner(sweep["trials"])
    sweep["table"] = table_rows(sweep)
    return sweep


def test_table_rows_in_grid_order_with_the_winner_marked(tmp_path):
    rows = finished_sweep(tmp_path)["table"]
    assert [(r["learning_rate"], r["r"]) for r in rows] == [(1e-4, 4), (1e-4, 8), (5e-4, 4), (5e-4, 8)]
    assert [r["winner"] for r in rows] == [False, False, True, False]
    assert {"eval_loss", "train_loss", "gap", "verdict", "tokens_per_s", "peak_mem_gib"} <= rows[0].keys()


def test_report_renders_table_heatmap_and_stops(tmp_path):
    from rich.console import Console

    buf = io.StringIO()
    print_report(finished_sweep(tmp_path), Console(file=buf, width=120))
    text = buf.getvalue()
    assert "★" in text and "well-fit" in text and "✗ nan" in text
    assert "lr5e-4_r8: nan_loss: The training loss is NaN\n" in text   # the code said once
    assert "winner: lr 5e-4, r 4 (alpha 8), eval loss 1.400\n" in text


def test_the_heatmap_never_colours_a_trial_that_diverged_by_an_evaluation_before_it(tmp_path):
    from rich.console import Console

    sweep = finished_sweep(tmp_path)
    sweep["trials"][3]["eval_loss"] = 0.5   # its first evaluation, before the NaN that stopped it
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=120))
    assert "✗ nan" in buf.getvalue() and "0.500 †" not in buf.getvalue()


def test_a_winner_of_a_sweep_cut_short_says_how_few_trials_ran(tmp_path):
    """Ctrl-C after the first trial: the report crowned it "winner" as if the whole grid had been tried."""
    from rich.console import Console

    sweep = finished_sweep(tmp_path)
    sweep["state"] = "stopped"
    for t in sweep["trials"][:2]:
        t.update(state="skipped", eval_loss=None, stopped_by="user", stop_reason="not started (user)")
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=120))
    assert "eval loss 1.400 (of the 2 trials that ran; 2 never started)" in buf.getvalue()


def test_report_fits_80_columns_keeping_lr_r_and_eval_whole(tmp_path):
    from rich.console import Console

    buf = io.StringIO()
    print_report(finished_sweep(tmp_path), Console(file=buf, width=80))
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    head = next(line for line in lines if "outcome" in line)
    assert " r " in head and "eval loss" in head and "tok/s" not in head  # dropped, not cut
    assert any("★ 5e-4" in line and " 4 " in line and "1.400" in line for line in lines)


def test_the_heatmaps_legend_is_one_line_under_a_grid_of_one_r(tmp_path):
    """A sweep of one r: the legend was the grid's caption, wrapped at its 22 columns ("★ winner, † stopped" and
    "early, · no eval" on two lines)."""
    from rich.console import Console

    sweep = finished_sweep(tmp_path)
    sweep["trials"] = [t for t in sweep["trials"] if t["r"] == 4]
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=80))
    assert "\n★ winner, † stopped early, · no eval\n" in buf.getvalue()


def test_apply_writes_the_base_config_with_the_winners_lr_and_r(tmp_path):
    out = apply_winner(finished_sweep(tmp_path), tmp_path / "best" / "best.yaml")
    cfg = load_config(out)
    assert (cfg.training.learning_rate, cfg.lora.r, cfg.lora.alpha) == (5e-4, 4, 8)
    assert cfg.training.max_steps == 400 and cfg.training.eval_steps == 50  # the base's, not the sweep's
    assert cfg.model == "some/model" and cfg.run_name is None
    assert out.read_text().startswith("# From sweep")
    assert "  alpha: 8\n" in out.read_text() and "  r: 4\n" in out.read_text()   # not alpha: 8.0
    # The wizard's sweep reads a temporary copy of its config, gone by now: the header named a file that was not
    # there; it names the sweep's own copy instead.
    assert f"# The base config {tmp_path / 'sw' / 'base_config.yaml'} otherwise" in out.read_text()
    (tmp_path / "base.yaml").write_text("model: some/model\n")   # the user's file, still there: named
    assert f"# The base config {tmp_path / 'base.yaml'} otherwise" in apply_winner(
        finished_sweep(tmp_path), tmp_path / "again.yaml").read_text()


def test_apply_keeps_the_users_file_as_written_but_the_winners_keys(tmp_path):
    """--apply wrote the whole resolved config: the user's comments and order gone, every default pinned, and a data
    path relative to their config read, from the written file's folder, as another file of that name there."""
    folder, out = tmp_path / "cfgs", tmp_path / "out" / "best.yaml"
    folder.mkdir()
    out.parent.mkdir()
    (folder / "data.jsonl").write_text("{}\n")
    (out.parent / "data.jsonl").write_text("{}\n")   # another file of the same name, beside the written config
    mine = folder / "my.yaml"
    mine.write_text("# my experiment\nmodel: some/model   # the base\ndataset:\n  path: data.jsonl\n"
                    "training:\n  learning_rate: 2.0e-4  # my guess\n  max_steps: 400\nlora: {r: 16, alpha: 32}\n")
    sweep = finished_sweep(tmp_path, base_raw=load_config(mine).to_dict())
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "base_config.yaml").write_bytes(mine.read_bytes())   # the sweep's copy, as `sweep` makes it
    text = apply_winner(sweep, out).read_text()
    body = text[text.index("# my experiment"):]
    assert body == ("# my experiment\nmodel: some/model   # the base\ndataset:\n"
                    f"  path: {folder / 'data.jsonl'}\n"
                    "training:\n  learning_rate: 0.0005  # my guess\n  max_steps: 400\nlora: {r: 4, alpha: 8}\n")
    cfg = load_config(out)
    assert (cfg.training.learning_rate, cfg.lora.r, cfg.lora.alpha) == (5e-4, 4, 8)
    assert cfg.dataset.path == str(folder / "data.jsonl")


def test_apply_of_a_sweep_folder_moved_reads_the_users_config_where_the_folder_is_now(tmp_path, capsys):
    """sweep.json names the folder the sweep was made in: --apply of the folder moved since looked for its copy of
    the user's config there, and wrote the whole resolved config instead (the user's comments gone)."""
    from engine.cli import main

    sweep = finished_sweep(tmp_path)
    (tmp_path / "sw").mkdir()
    write_sweep(tmp_path / "sw", sweep)
    (tmp_path / "sw" / "base_config.yaml").write_text("# mine\nmodel: some/model\ndataset:\n"
                                                      f"  path: {tmp_path / 'd.jsonl'}\n"
                                                      "training: {max_steps: 400, learning_rate: 2.0e-4}\n")
    (tmp_path / "sw").rename(tmp_path / "moved")
    assert main(["sweep", "--apply", str(tmp_path / "best.yaml"), str(tmp_path / "moved")]) == 0
    text = (tmp_path / "best.yaml").read_text()
    assert f"# The base config {tmp_path / 'moved' / 'base_config.yaml'} otherwise" in text
    assert "\n# mine\nmodel: some/model\n" in text and "lora:\n  r: 4\n  alpha: 8\n" in text
    assert load_config(tmp_path / "best.yaml").training.learning_rate == 5e-4


def test_apply_never_replaces_an_existing_file_unless_told(tmp_path):
    mine = tmp_path / "best.yaml"
    mine.write_text("# my own config\n")
    with pytest.raises(UserError, match="best.yaml: exists; not overwritten"):
        apply_winner(finished_sweep(tmp_path), mine)
    assert mine.read_text() == "# my own config\n"
    apply_winner(finished_sweep(tmp_path), mine, replace=True)
    assert mine.read_text().startswith("# From sweep")


def test_apply_without_a_winner_is_a_user_error(tmp_path):
    sweep = finished_sweep(tmp_path)
    sweep["winner"] = None
    with pytest.raises(UserError, match="no winner"):
        apply_winner(sweep, tmp_path / "x.yaml")


def running_sweep(tmp_path):
    """finished_sweep's trials in a folder of a sweep whose driver (this process) runs: (its folder, its record)."""
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    sweep = finished_sweep(tmp_path)
    sweep.update(state="running", driver_pid=os.getpid(), started=1000.0, lanes=1, plan={"trial_s": None},
                 winner=None, table=None)
    return sweep_dir, sweep


def test_summarize_sweep_while_running(tmp_path):
    sweep_dir, sweep = running_sweep(tmp_path)
    sweep["trials"][0]["state"] = "training"
    for t in sweep["trials"][1:]:
        t.update(state="pending", eval_loss=None, stopped_by=None)
    write_sweep(sweep_dir, sweep)
    run = sweep_dir / sweep["trials"][0]["id"]
    run.mkdir()
    # written a few seconds ago by its trainer, which this process stands in for (holding the trial's run lock)
    write_status(run, state="training", pid=os.getpid(), pid_start=process_start(os.getpid()), step=97, max_steps=120)
    hold_run_lock(run)
    w = MetricsWriter(run)
    for rec in records([3.0 - 0.01 * i for i in range(100)], [(4, 2.6)]):
        w.write(rec.pop("kind"), rec.pop("step"), **{k: v for k, v in rec.items() if k != "time"})
    w.close()

    s = summarize_sweep(sweep_dir)
    assert s["state"] == "running" and s["winner"] is None and s["table"] is None and s["elapsed_s"] > 0
    first, pending = s["trials"][0], s["trials"][1]
    # the step the records reach, not status.json's, which lags on fast trials (the demo showed 1/30 beside an
    # evaluation at step 10)
    assert first["state"] == "training" and (first["step"], first["max_steps"]) == (100, 120)
    assert len(first["losses"]) == 60 and first["losses"][-1] == pytest.approx(2.01)  # thinned for a sparkline
    assert first["evals"] == [[4, 2.6]] and first["eval_loss"] == 2.6
    assert pending["state"] == "pending" and pending["losses"] == [] and pending["eval_loss"] is None
    assert s["best"] == {"id": first["id"], "learning_rate": 1e-4, "r": 4, "eval_loss": 2.6, "step": 4}
    assert s["remaining_s"] is None   # no trial time known yet


def test_the_best_so_far_is_never_a_trial_that_diverged(tmp_path):
    """The monitor's "best so far" was a trial nan_loss had just stopped, on the good evaluation before its NaN."""
    sweep_dir, sweep = running_sweep(tmp_path)
    for t in sweep["trials"]:
        t.update(state="training", eval_loss=None, stopped_by=None)
    write_sweep(sweep_dir, sweep)
    for t, loss, nan in ((sweep["trials"][0], 1.0, True), (sweep["trials"][1], 2.0, False)):
        (sweep_dir / t["id"]).mkdir()
        w = MetricsWriter(sweep_dir / t["id"])
        w.write("train", 4, loss=loss)
        w.write("eval", 4, eval_loss=loss)
        if nan:   # the trainer's finding, before the driver has seen the trial end
            w.write("train", 5, loss=float("nan"))
            w.write("finding", 5, code="nan_loss", severity="error", message="The training loss is NaN")
        w.close()
        write_status(sweep_dir / t["id"], state="training", step=5, max_steps=12)
    assert summarize_sweep(sweep_dir)["best"]["id"] == sweep["trials"][1]["id"]


def test_time_left_counts_the_running_trial_and_the_pending_ones_on_free_lanes():
    # `measured_remaining_s` was written but read by no one: `lorapilot sweep DIR` and the monitor said only
    # "33 s so far" of a sweep with hours to go.
    from engine.sweep.summary import remaining_seconds

    def sweep(lanes, *states, measured=None, devices=("0", "1")):
        return {"lanes": lanes, "plan": {"trial_s": 100.0, "measured_trial_s": measured}, "devices": list(devices),
                "trials": [{"state": st, "started": 1000.0 if st == "training" else None} for st in states]}

    # one lane: the running trial's 70 s left, then two more of 100 s
    assert remaining_seconds(sweep(1, "done", "training", "pending", "pending"), 1030.0) == 270.0
    assert remaining_seconds(sweep(1, "done", "training", "pending", "pending", measured=50.0), 1030.0) == 120.0
    # two lanes: one runs (70 s left), one is free: three pending go 0+100, 70+100, 100+100
    assert remaining_seconds(sweep(2, "training", "pending", "pending", "pending"), 1030.0) == 200.0
    # two lanes on the CPU: the estimate times a trial alone, and the two share its cores (70 + 3 x 100)
    assert remaining_seconds(sweep(2, "training", "pending", "pending", "pending", devices=()), 1030.0) == 370.0
    # four lanes on two GPUs, four running (70 s left alone each) and four pending: 4 x 70 + 4 x 100 s of one
    # trial's time on two GPUs' worth of lanes; the running ones each kept a lane of their own and it said 170
    assert remaining_seconds(sweep(4, *["training"] * 4, *["pending"] * 4), 1030.0) == 340.0
    # stop asked for (`lorapilot stop`, x): only the running trial's rest; it said ~21 s left of a sweep ending
    assert remaining_seconds(sweep(1, "training", "pending", "pending"), 1030.0, stopping=True) == 70.0
    # a trial past its predicted time is about to end, not negative
    assert remaining_seconds(sweep(1, "training", "skipped"), 1500.0) == 0.0
    assert remaining_seconds({"lanes": 1, "plan": {"trial_s": None}, "trials": []}, 0.0) is None


def test_summarize_sweep_finished_and_lost(tmp_path):
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    sweep = finished_sweep(tmp_path)
    sweep.update(started=1000.0, ended=1100.0)
    write_sweep(sweep_dir, sweep)
    s = summarize_sweep(sweep_dir)
    assert s["state"] == "done" and s["elapsed_s"] == 100.0 and s["winner"]["id"] == "lr5e-4_r4"
    assert len(s["table"]) == 4
    sweep.update(state="running", driver_pid=2 ** 22 + 12345)  # a driver that is gone
    write_sweep(sweep_dir, sweep)
    assert summarize_sweep(sweep_dir)["state"] == "lost"
    assert read_sweep(sweep_dir)["state"] == "running"  # reading never rewrites it
    with pytest.raises(UserError, match="not a sweep directory"):
        summarize_sweep(tmp_path)


def edge_sweep(winner: tuple, lrs=(1e-4, 2e-4, 5e-4), rs=(4, 8, 16), **by_cell) -> dict:
    """Every cell of lrs x rs done with eval loss 2.0, the winner's 1.0; by_cell: fields of some cells, by trial id."""
    trials = [{**trial(lr, r, eval_loss=1.0 if (lr, r) == winner else 2.0), **by_cell.get(Trial(lr, r).id, {})}
              for lr in lrs for r in rs]
    return {"trials": trials, "winner": choose_winner(trials)}


def test_a_winner_at_the_edge_of_the_grid_is_named_with_the_next_grid():
    """The best lr was the highest tried and nothing said so: the sweep's own optimum may lie past its grid."""
    from engine.sweep.report import edge_notes

    assert edge_notes(edge_sweep((2e-4, 8))) == []   # inside: nothing to say
    assert edge_notes(edge_sweep((5e-4, 8))) == [
        "the best lr, 5e-4, was the highest tried: the optimum may be above it; sweep again with "
        "--lr 5e-4,1.3e-3,3.1e-3"]
    assert edge_notes(edge_sweep((1e-4, 4))) == [
        "the best lr, 1e-4, was the lowest tried: the optimum may be below it; sweep again with --lr 2.5e-5,5e-5,1e-4"]
    assert edge_notes(edge_sweep((2e-4, 16))) == [
        "the best r, 16, was the largest tried: a larger r may do better (at more memory and time); sweep again "
        "with --r 16,32,64"]
    assert edge_notes(edge_sweep((2e-4, 4))) == []   # the smallest r: as good for less, nothing to warn of
    assert len(edge_notes(edge_sweep((5e-4, 16)))) == 2          # both at once
    assert edge_notes(edge_sweep((5e-4, 4), lrs=(5e-4,), rs=(4,))) == []   # one value: nothing was swept
    assert edge_notes({"trials": [], "winner": None}) == []


def test_the_edge_is_of_what_was_tried():
    from engine.sweep.report import edge_notes

    # the highest lr never started (budget): the winner below it is the highest tried
    skipped = {f"lr5e-4_r{r}": dict(state="skipped", eval_loss=None, stopped_by="budget") for r in (4, 8, 16)}
    assert edge_notes(edge_sweep((2e-4, 8), **skipped))[0].startswith("the best lr, 2e-4, was the highest tried")
    # the highest lr diverged (no finite eval loss): tried, and it says the optimum is below it
    nan = {f"lr5e-4_r{r}": dict(state="stopped", eval_loss=float("nan"), stopped_by="nan_loss") for r in (4, 8, 16)}
    assert edge_notes(edge_sweep((2e-4, 8), **nan)) == []
    # ... as does one stopped at once on its loss_explosion finding before any evaluation
    boom = {f"lr5e-4_r{r}": dict(state="stopped", eval_loss=None, stopped_by="loss_explosion") for r in (4, 8, 16)}
    assert edge_notes(edge_sweep((2e-4, 8), **boom)) == []


def test_the_report_the_applied_config_and_its_message_say_the_winner_is_at_the_edge(tmp_path, capsys):
    from rich.console import Console

    from engine.sweep.report import applied_text

    sweep = finished_sweep(tmp_path)   # winner lr 5e-4 of 1e-4 and 5e-4: the highest tried
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=120))
    note = "the best lr, 5e-4, was the highest tried: the optimum may be above it; sweep again with --lr 5e-4,2.5e-3"
    assert f"  note: {note}" in buf.getvalue()
    out = apply_winner(sweep, tmp_path / "best.yaml")
    assert f"# Note: {note}" in out.read_text()
    assert load_config(out).lora.r == 4   # the note is a comment
    assert f"written to {out}\n  note: {note}" in applied_text(sweep, out)
    assert "note" not in applied_text(sweep, out, notes=False)


def test_a_winner_trained_on_more_gpus_than_its_trial_is_said_so(tmp_path):
    """A sweep on 4 GPUs ran each trial on one (16 examples a step); the winner's config, trained alone there, ran
    data parallel on all 4 (64 a step, a quarter of the steps an epoch) with the lr found at 16, and nothing said so."""
    from engine.sweep.report import applied_text, batch_notes

    sweep = finished_sweep(tmp_path)   # micro-batch 4 x accumulation 4, num_gpus empty (all visible)
    assert batch_notes(sweep) == []    # on the CPU or one GPU: the trial's plan
    sweep["devices"] = ["0", "1", "2", "3"]
    (note,) = batch_notes(sweep)
    assert ("on the sweep machine's 4 GPUs this config trains 4 x 16 = 64 a step (and 4 times fewer steps an epoch)"
            in note and note.endswith("set training.num_gpus: 1, or training.gradient_accumulation_steps: 1 "
                                      "(16 examples a step over the 4 GPUs)"))
    out = apply_winner(sweep, tmp_path / "best.yaml")
    assert f"# Note: {note}.\n" in out.read_text() and f"  note: {note}" in applied_text(sweep, out)
    # The report says it under the winner (`lorapilot sweep DIR`, and at a followed sweep's end, where --apply's
    # message then leaves out the notes the report just gave)
    from rich.console import Console

    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=10_000))
    assert f"  note: {note}" in buf.getvalue() and "note" not in applied_text(sweep, out, notes=False)
    sweep["base_config"]["training"]["num_gpus"] = 1   # the config trains on one GPU, as the trials did
    assert batch_notes(sweep) == []
    sweep["base_config"]["training"].update(num_gpus=3, gradient_accumulation_steps=4)
    assert batch_notes(sweep)[0].endswith("set training.num_gpus: 1")   # 4 does not divide by 3


# ------------------------------------------------------------------ one rule for a loss (engine.rundir.loss_text)
def test_every_view_of_a_sweep_says_a_loss_as_the_runs_list_does(tmp_path, capsys):
    """The sweep wrote its losses its own way (.4f and .3f): a winner read 1.235 in `lorapilot runs` and 1.2346 in the
    sweep's report, 0.543 beside 0.5432. Each view now says it with loss_text, four significant digits."""
    from rich.console import Console

    from engine.rundir import loss_text
    from engine.sweep.command import _print_progress
    from tui.screens.sweep_monitor import SweepMonitorScreen
    from tui.widgets.sweep_result import winner_text

    sweep = finished_sweep(tmp_path)
    sweep["trials"][2].update(eval_loss=0.54321, train_loss=0.43219)   # the winner
    sweep["trials"][1].update(eval_loss=12.3456)
    sweep["winner"] = choose_winner(sweep["trials"])
    sweep["table"] = table_rows(sweep)
    assert sweep["winner"]["eval_loss"] == 0.54321 and loss_text(0.54321) == "0.5432"
    buf = io.StringIO()
    print_report(sweep, Console(file=buf, width=200))
    report = buf.getvalue()
    assert "eval loss 0.5432\n" in report and "0.5432 ★" in report and "12.35" in report
    assert " 0.4322 " in report                                          # the table's train avg
    assert "0.5432 " in report.split("winner:")[0]                      # the table's eval loss
    assert "0.543 " not in report and "12.346" not in report and "0.54321" not in report

    summary = {"name": "sw", "state": "done", "elapsed_s": 10.0, "remaining_s": None, "steps": 12,
               "trials": [{**t, "max_steps": 12} for t in sweep["trials"]],
               "best": {**sweep["winner"], "step": 12}, "winner": sweep["winner"], "winner_notes": []}
    assert "eval loss 0.5432" in winner_text(summary, "sw").plain
    assert "eval 0.5432" in SweepMonitorScreen._status_line(summary, "sw").plain
    _print_progress(summary)
    printed = capsys.readouterr().out
    assert "eval loss 0.5432 at step 12" in printed and "eval 12.35" in printed

    applied = tmp_path / "best.yaml"
    (tmp_path / "base.yaml").write_text("model: some/model\n")
    apply_winner(sweep, str(applied))
    assert "(eval loss 0.5432)" in applied.read_text()


def test_a_tie_is_decided_on_the_numbers_never_on_their_text(tmp_path):
    """Two losses that read the same (1.234) are not tied: the lower number wins, and no tie is said; the monitor's
    best so far picks, among equal numbers, by the winner's rule (the smaller r, then the lower lr)."""
    from engine.rundir import loss_text

    lower, higher = 1.23441, 1.23444
    assert loss_text(lower) == loss_text(higher)
    trials = [trial(1e-4, 4, eval_loss=higher), trial(5e-4, 8, eval_loss=lower)]
    w = choose_winner(trials)
    assert (w["id"], w["tied"]) == ("lr5e-4_r8", [])

    sweep_dir, sweep = running_sweep(tmp_path)
    sweep["trials"] = [trial(2e-4, 8, "training"), trial(5e-4, 4, "training")]   # equal numbers
    write_sweep(sweep_dir, sweep)
    for t in sweep["trials"]:
        (sweep_dir / t["id"]).mkdir()
        w = MetricsWriter(sweep_dir / t["id"])
        w.write("train", 4, loss=1.5)
        w.write("eval", 4, eval_loss=1.25)
        w.close()
        write_status(sweep_dir / t["id"], state="training", step=4, max_steps=12)
    assert summarize_sweep(sweep_dir)["best"]["id"] == choose_winner(
        [{**t, "eval_loss": 1.25} for t in sweep["trials"]])["id"] == "lr5e-4_r4"
