"""tokens/s as the trainer's records say it: tokens over the training time since the record before, the
evaluation, its samples and the checkpoint save in between taken out. The monitor shows the last record's figure:
an interval holding an evaluation read as a run suddenly slower (a 10-minute evaluation over a 50-second interval
showed a twelfth of the speed), and the sweep's median tok/s compared trials by how often they evaluated."""

from __future__ import annotations

import pytest

from engine.rundir import read_metrics

STEP_S, TOKENS_PER_STEP, LOGGING = 0.5, 2048, 10
EVAL_S, SAMPLES_S, SAVE_S = 120.0, 30.0, 15.0


class Collator:
    tokens_seen = 0
    trained_tokens_seen = 0


class StopFlag:
    def check_place(self) -> None:
        pass

    def is_set(self) -> bool:
        return False


class State:
    global_step = 0
    max_steps = 100


def test_train_records_tokens_per_s_leaves_out_evaluation_samples_and_save(tmp_path, monkeypatch):
    import torch

    import engine.samples
    from engine.train import callback as cbmod

    clock = [1_000_000.0]
    monkeypatch.setattr(cbmod.time, "time", lambda: clock[0])
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: clock[0])
    monkeypatch.delenv(engine.samples.FAST_DECODE_ENV, raising=False)

    def slow_samples(model, tokenizer, prompts, max_new_tokens, way=None):
        clock[0] += SAMPLES_S
        return [{"prompt": p, "output": "x", "gen_s": SAMPLES_S} for p in prompts]

    monkeypatch.setattr(engine.samples, "sample_all", slow_samples)
    monkeypatch.setattr(cbmod, "fast_decode_room", lambda model, prompts, new: False)
    collator = Collator()
    cb = cbmod.RunDirCallback(tmp_path, collator=collator, steps_per_epoch=100, stop_flag=StopFlag(), stop_on=[],
                              sample_prompts=["a"])
    state = State()
    cb.on_train_begin(None, state, None)
    for step in range(1, 31):
        clock[0] += STEP_S
        collator.tokens_seen += TOKENS_PER_STEP
        collator.trained_tokens_seen += TOKENS_PER_STEP // 2
        state.global_step = step
        cb.on_step_end(None, state, None)
        if step % LOGGING == 0:   # transformers' order at a step: log, evaluate (and samples), save
            cb.on_log(None, state, None, logs={"loss": 1.0, "learning_rate": 1e-4, "grad_norm": 0.5})
        if step == 10:
            clock[0] += EVAL_S
            cb.on_log(None, state, None, logs={"eval_loss": 1.1})
            cb.on_evaluate(None, state, None, model=torch.nn.Module())
            clock[0] += SAVE_S
            cb.on_save(type("Args", (), {"output_dir": str(tmp_path / "checkpoints")}), state, None)
    train = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert [r["step"] for r in train] == [10, 20, 30]
    assert [r for r in read_metrics(tmp_path) if r["kind"] == "sample"], "the samples ran (and took their time)"
    # the interval after the evaluation trains as fast as the one without any
    assert train[1]["tokens_per_s"] == pytest.approx(TOKENS_PER_STEP / STEP_S, rel=1e-3)
    assert train[1]["trained_tokens_per_s"] == pytest.approx(TOKENS_PER_STEP / 2 / STEP_S, rel=1e-3)
    assert train[2]["tokens_per_s"] == pytest.approx(TOKENS_PER_STEP / STEP_S, rel=1e-3)
