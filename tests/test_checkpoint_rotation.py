"""The playground on a run still training opens its newest checkpoint, which the Trainer's rotation
(training.save_total_limit) deletes once newer ones are saved: while the base model loads (minutes for a large one)."""

from __future__ import annotations

import shutil

import pytest

from engine.errors import UserError


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_the_playground_chats_with_the_checkpoint_it_opened_though_rotation_deleted_it(finished_demo_run, tmp_path,
                                                                                      monkeypatch):
    """The checkpoint was read where it was after the base had loaded: deleted meanwhile by the rotation, the
    playground failed with peft's error, logged as a bug. Its adapter is now read when the playground opens it."""
    import engine.model as model
    from engine.playground import Playground

    run = _copy(finished_demo_run, tmp_path)
    ckpt = run / "checkpoints" / "checkpoint-40"
    load = model.load_base_model

    def rotated_while_loading(*args, **kwargs):
        shutil.rmtree(ckpt)   # the trainer saved two more: checkpoint-40 is the oldest of three
        return load(*args, **kwargs)
    monkeypatch.setattr(model, "load_base_model", rotated_while_loading)
    pg = Playground(run, adapter=ckpt)
    assert not ckpt.exists() and pg.model.peft_config["default"].r == pg.cfg.lora.r


def test_a_checkpoint_deleted_before_the_playground_reads_it_is_said_so(finished_demo_run, tmp_path):
    from engine.playground import Playground

    run = _copy(finished_demo_run, tmp_path)
    ckpt = run / "checkpoints" / "checkpoint-20"
    (ckpt / "adapter_model.safetensors").unlink()   # rotation's rmtree half-way
    with pytest.raises(UserError) as e:
        Playground(run, adapter=ckpt)
    assert "checkpoint-20" in str(e.value) and "save_total_limit" in str(e.value), str(e.value)
    assert "open the playground again" in e.value.fix


def test_a_checkpoint_is_checked_where_it_is_before_it_is_copied(finished_demo_run, tmp_path):
    """The checks ran on the playground's temporary copy of the checkpoint (its two adapter files only): a program
    file in the real folder went unseen, and an edited adapter_config.json was named at /tmp/lorapilot-checkpoint-*,
    a file deleted when the playground had read it. Checked in the run's folder, named there."""
    import json

    from engine.playground import Playground

    run = _copy(finished_demo_run, tmp_path)
    ckpt = run / "checkpoints" / "checkpoint-40"
    (ckpt / "setup.py").write_text("print('hi')\n")
    with pytest.raises(UserError) as e:
        Playground(run, adapter=ckpt)
    assert f"{ckpt / 'setup.py'}: a program file" in str(e.value), str(e.value)
    (ckpt / "setup.py").unlink()
    saved = json.loads((ckpt / "adapter_config.json").read_text())
    (ckpt / "adapter_config.json").write_text(json.dumps({**saved, "r": saved["r"] * 2}))
    with pytest.raises(UserError) as e:
        Playground(run, adapter=ckpt)
    text = f"{e.value} {e.value.fix}"
    assert str(ckpt / "adapter_config.json") in text and "lorapilot-checkpoint-" not in text, text
