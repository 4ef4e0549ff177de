"""A model preset's short name (`model: llama-3-8b`) is one model everywhere: the estimate sized, timed and priced
meta-llama/Meta-Llama-3-8B from the preset, while the trainer handed `llama-3-8b` to from_pretrained, which no hub
repository answers."""
from __future__ import annotations

import json

import pytest

from engine.model import resolve_model_path


@pytest.mark.parametrize("name", ["llama-3-8b", "Meta-Llama-3-8B", "LLAMA-3-8B"])
def test_a_presets_short_name_loads_its_hub_id(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(name) == "meta-llama/Meta-Llama-3-8B"


def test_hub_ids_unknown_names_and_local_folders_are_left_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # another owner's repository of the same name is not assumed to be the preset's model
    assert resolve_model_path("someone/llama-3-8b") == "someone/llama-3-8b"
    assert resolve_model_path("meta-llama/Meta-Llama-3-8B") == "meta-llama/Meta-Llama-3-8B"
    assert resolve_model_path("my-own-model") == "my-own-model"
    # a folder of that name in the working directory is the user's model, not the preset
    (tmp_path / "llama-3-8b").mkdir()
    (tmp_path / "llama-3-8b" / "config.json").write_text("{}")
    assert resolve_model_path("llama-3-8b") == "llama-3-8b"


def test_the_estimate_and_the_trainer_name_the_same_model(tmp_path, monkeypatch, capsys):
    from engine.estimate import command

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "Say hi", "output": "hi"}\n')
    config = tmp_path / "c.yaml"
    config.write_text(f"model: llama-3-8b\ndataset:\n  path: {data}\n")
    assert command.main([str(config), "--gpu", "h100-80", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["model"]["name"]
    assert shown == resolve_model_path("llama-3-8b") == "meta-llama/Meta-Llama-3-8B"
