"""The checklist items that depend on the settings: each fires on a bad value and not on the recipe."""

from __future__ import annotations

import pytest

from engine.config import Config
from engine.diagnose.settings_check import check_settings


def codes(cfg, n=2000, gpus=1):
    return {f.code for f in check_settings(cfg, n, gpus)}


def test_the_recipe_on_a_typical_dataset_is_clean():
    assert codes(Config(), n=2000) == set()  # 125 steps/epoch, eval every 50, save every 100


@pytest.mark.parametrize("key,value,code", [
    ("gradient_checkpointing", False, "gradient_checkpointing_off"),
    ("warmup_ratio", 0.0, "no_warmup"),
    ("max_grad_norm", 5.0, "no_grad_clipping"),
    ("eval_steps", 500, "eval_too_rare"),
    ("save_steps", 10_000, "no_checkpoint"),
    ("save_total_limit", 50, "no_save_limit"),
])
def test_each_bad_setting_is_flagged(key, value, code):
    cfg = Config()
    setattr(cfg.training, key, value)
    assert code in codes(cfg)


def test_small_dataset_with_default_eval_steps_is_never_evaluated():
    cfg = Config()  # 200 examples / 16 per step = 13 steps per epoch, 39 in all, eval every 50: never
    found = {f.code: f for f in check_settings(cfg, 200)}
    assert "eval_too_rare" in found and "Set training.eval_steps to 3" in found["eval_too_rare"].fix
    assert "no_checkpoint" in found


@pytest.mark.parametrize("n, fix", [
    (3, "Set training.eval_steps to 1 (once per epoch)."),      # 1 step per epoch
    (40, "Set training.eval_steps to 1 (about 3 times per epoch)."),
    (200, "Set training.eval_steps to 3 (about 4 times per epoch)."),
])
def test_the_eval_advice_says_how_often_it_evaluates_and_applied_clears_the_finding(n, fix):
    """3 rows, 1 step per epoch: the advice said "eval_steps to 1 (about 4 times per epoch)", and once applied
    (enter on the finding) the finding stayed, advising the same again: one step cannot be evaluated more often."""
    cfg = Config()
    (rare,) = [f for f in check_settings(cfg, n) if f.code == "eval_too_rare"]
    assert rare.fix == fix
    cfg.training.eval_steps = int(fix.split(" to ")[1].split()[0])
    assert "eval_too_rare" not in codes(cfg, n=n)


def test_one_step_per_epoch_is_one_step():
    (rare,) = [f for f in check_settings(Config(), 3) if f.code == "eval_too_rare"]
    assert "eval every 50 steps; 1 step per epoch, 3 in all" == rare.evidence


def test_more_gpus_mean_fewer_steps():
    cfg = Config()
    cfg.training.eval_steps = 40
    assert "eval_too_rare" not in codes(cfg, n=2000, gpus=1)   # 125 steps/epoch: 3 evals
    assert "eval_too_rare" in codes(cfg, n=2000, gpus=4)       # 32 steps/epoch: less than one


def test_a_short_run_is_told_to_log_often_enough_for_a_readable_loss_chart():
    """A 54-step run logging every 10 steps drew 6 loss points beside its eval points: the checklist says so, and
    its fix names the setting (enter or ctrl+g applies it); a run with 20 points or more is left alone."""
    from engine.config_edit import fix_setting

    cfg = Config()  # 288 examples / 16 per step = 18 steps per epoch, 54 in all, logging every 10
    found = {f.code: f for f in check_settings(cfg, 288)}
    sparse = found["loss_chart_sparse"]
    assert sparse.severity == "info" and "logged only 5 times" in sparse.message
    assert sparse.evidence == "log every 10 steps; 54 steps in all"
    assert fix_setting(sparse.fix) == ("training.logging_steps", 1)
    cfg.training.logging_steps = 2      # 27 points
    assert "loss_chart_sparse" not in codes(cfg, n=288)
    cfg.training.logging_steps = 1
    assert "loss_chart_sparse" not in codes(cfg, n=288)
