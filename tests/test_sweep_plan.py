"""The sweep's pure rules: the grid, the steps and rungs, each trial's config, the halving rule, the budget fit."""

from __future__ import annotations

import pytest

from engine.config import config_from_dict
from engine.errors import UserError
from engine.sweep.plan import (MIN_BUDGET_STEPS, Trial, fit_budget, grid, halving_should_stop, lr_text, parse_lrs,
                               parse_rs, round_steps, rungs, sweep_seconds, time_lanes, trial_config)


def test_parse_lists_and_defaults():
    assert parse_lrs(None) == [1e-4, 2e-4, 5e-4] and parse_rs(None) == [4, 8, 16]
    assert parse_lrs(" 1e-4, 2e-4 ,1e-4") == [1e-4, 2e-4]  # spaces and duplicates
    assert parse_rs("16,4") == [16, 4]


@pytest.mark.parametrize("lr, msg", [("", "empty"), (",", "empty"), ("-1e-4", "out of range"), ("0", "out of range"),
                                     ("2", "out of range"), ("nan", "out of range"), ("fast", "not a number")])
def test_bad_learning_rates(lr, msg):
    with pytest.raises(UserError, match=msg) as e:
        parse_lrs(lr)
    assert "--lr" in str(e.value)


@pytest.mark.parametrize("r, msg", [("", "empty"), ("0", "out of range"), ("-4", "out of range"),
                                    ("8.5", "whole number"), ("2000", "out of range")])
def test_bad_ranks(r, msg):
    with pytest.raises(UserError, match=msg):
        parse_rs(r)


def test_grid_is_every_pair_centre_first():
    trials = grid([1e-4, 2e-4, 5e-4], [4, 8, 16])
    assert len(trials) == 9 and len(set(trials)) == 9
    assert trials[0] == Trial(2e-4, 8)  # the recipe's usual choice runs first
    assert set(trials[1:5]) == {Trial(1e-4, 8), Trial(5e-4, 8), Trial(2e-4, 4), Trial(2e-4, 16)}
    assert set(trials[5:]) == {Trial(1e-4, 4), Trial(1e-4, 16), Trial(5e-4, 4), Trial(5e-4, 16)}
    with pytest.raises(UserError, match="empty"):
        grid([], [8])


def test_trial_names_and_alpha():
    t = Trial(2.5e-4, 8)
    assert t.alpha == 16 and t.id == "lr2.5e-4_r8"
    assert lr_text(1e-4) == "1e-4" and lr_text(3e-3) == "3e-3" and lr_text(0.1) == "1e-1"
    # every digit the rate has: 1.234e-4 was shown as 1.23e-4, and shared its trial folder with 1.2341e-4
    assert lr_text(1.234e-4) == "1.234e-4" and lr_text(0.00125) == "1.25e-3"
    assert len({t.id for t in grid([1.234e-4, 1.2341e-4], [8])}) == 2


def test_steps_round_to_rungs_on_evaluations():
    assert round_steps(100) == 99 and round_steps(101) == 102 and round_steps(12) == 12 and round_steps(4) == 3
    assert rungs(99) == [33, 66] and rungs(12) == [4, 8]
    with pytest.raises(UserError, match="at least 3"):
        round_steps(2)


def test_trial_config_overrides_only_what_the_sweep_needs():
    base = config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"},
                             "training": {"max_steps": 500, "stop_on": ["overfitting"], "logging_steps": 10}})
    cfg = trial_config(base, Trial(5e-4, 4), 99)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.training.learning_rate) == (4, 8, 5e-4)
    assert cfg.training.max_steps == 99 and cfg.training.eval_steps == 33 and cfg.training.save_steps == 33
    assert cfg.training.stop_on == ["overfitting", "nan_loss", "loss_explosion"]
    assert cfg.training.logging_steps == 4 and cfg.training.sample_max_new_tokens == 0
    assert cfg.training.num_gpus == 1
    assert base.training.max_steps == 500 and base.lora.r == 16  # the base is untouched
    config_from_dict(cfg.to_dict())  # still a valid config
    # A base sharded over several GPUs: each trial trains on one, where fsdp has nothing to shard
    sharded = config_from_dict({**base.to_dict(), "training": {**base.training.__dict__, "parallelism": "fsdp"}})
    one = trial_config(sharded, Trial(5e-4, 4), 99)
    assert (one.training.num_gpus, one.training.parallelism) == (1, "auto")
    config_from_dict(one.to_dict())
    assert trial_config(sharded, Trial(5e-4, 4), 99, one_gpu=False).training.parallelism == "fsdp"


@pytest.mark.parametrize("loss, others, stop", [
    (2.0, [], False),                 # the first trial at a rung always goes on
    (2.0, [1.5], True),               # of two, the worse stops
    (1.5, [2.0], False),
    (2.0, [2.0], False),              # a tie is not worse
    (1.8, [1.5, 2.0], False),         # of three, the middle goes on
    (2.1, [1.5, 2.0], True),          # the worst stops
    (1.9, [1.5, 1.6, 2.0], True),     # of four, the two worst stop
    (1.55, [1.5, 1.6, 2.0], False),
    (float("nan"), [2.0], True),      # a diverged trial stops
    (2.0, [float("nan")], False),     # a diverged one is never better
])
def test_halving(loss, others, stop):
    assert halving_should_stop(loss, others) is stop


def linear(seconds_per_step: float, start: float = 60.0):
    return lambda steps: start + steps * seconds_per_step


def test_budget_that_fits_changes_nothing():
    fit = fit_budget(9, 99, 3600, 1, linear(3))
    assert (fit.n_trials, fit.steps, fit.changed) == (9, 99, None)
    assert fit.seconds == pytest.approx(9 * (60 + 99 * 3))


def test_budget_shortens_trials_first():
    fit = fit_budget(9, 99, 9 * (60 + 60 * 3), 1, linear(3))
    assert fit.n_trials == 9 and fit.steps == 60 and "99 -> 60" in fit.changed
    assert fit.seconds <= 9 * (60 + 60 * 3)


def test_budget_under_two_minutes_is_named_as_given():
    # 90 s is 1.5 min: the line said "to fit 2 min" (and 30 s "to fit 0 min")
    assert fit_budget(1, 99, 90, 1, linear(1, start=0)).changed == "steps per trial 99 -> 90 to fit 1.5 min"


def test_budget_then_drops_trials_and_raises_steps_again():
    # At the 30-step floor a trial takes 150 s: 8 fit in 1320 s, not 9; then 8 trials get as many steps as fit.
    fit = fit_budget(9, 99, 1320, 1, linear(3))
    assert fit.n_trials == 8 and fit.steps == 33 > MIN_BUDGET_STEPS
    assert "9 -> 8" in fit.changed and "99 -> 33" in fit.changed and fit.seconds <= 1320


def test_budget_counts_parallel_lanes():
    assert sweep_seconds(9, 100, 3) == 300 and sweep_seconds(10, 100, 3) == 400
    fit = fit_budget(9, 99, 3 * (60 + 99 * 3), 3, linear(3))
    assert fit.changed is None


def test_trials_sharing_a_device_are_timed_as_one_lane_per_device():
    assert (time_lanes(4, ["0", "1"]), time_lanes(2, ["0", "1", "2"]), time_lanes(3, [])) == (2, 2, 1)


def test_budget_too_small_for_one_trial():
    with pytest.raises(UserError, match="too small for even one trial") as e:
        fit_budget(9, 99, 30, 1, linear(3))
    assert "--budget-minutes" in e.value.fix
