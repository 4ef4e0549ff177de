"""A model name a letter or two off a preset's (`meta-lama/Llama-2-7b-hf`, `lorapilot-dmeo`) was refused as an
unknown hub id or no name at all, with nothing to say which was meant, and the refusal sent the user to
`lorapilot estimate --help` for the presets, which listed none. Now the refusal names the preset, and the help
lists them; another model of the same family (other numbers, an -Instruct) is never offered in its place."""
from __future__ import annotations

import contextlib
import io

import pytest

from engine.errors import ModelError
from engine.estimate.presets import list_model_presets, near_model_preset


@pytest.mark.parametrize("typed, meant", [
    ("meta-lama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"),   # a letter missing
    ("lorapilot-dmeo", "lorapilot-demo"),                       # two swapped
    ("Qwen/Qwen2,5-7B", "Qwen/Qwen2.5-7B"),                     # one changed
    ("lama-3-8b", "meta-llama/Meta-Llama-3-8B"),                # an alias, mistyped
])
def test_a_typo_of_a_preset_names_the_preset(typed, meant):
    assert near_model_preset(typed) == meant


@pytest.mark.parametrize("typed", [
    "google/gemma-2-27b",                 # another size: other numbers
    "meta-llama/Llama-3.1-8B-Instruct",   # another model of the family
    "someone/llama-3-8b",                 # another owner's repository
    "qwen2.5-7b",                         # a preset itself
    "my-own-model", "gpt2",
])
def test_other_models_and_presets_themselves_are_not_offered_a_preset(typed):
    assert near_model_preset(typed) is None


def test_a_name_that_is_no_hub_id_is_refused_with_the_preset_meant():
    from engine.estimate.model_config import check_model_found

    with pytest.raises(ModelError) as e:
        check_model_found("lorapilot-dmeo")
    assert "did you mean 'lorapilot-demo'?" in e.value.message
    assert "`lorapilot estimate --help` lists the presets" in e.value.fix


def test_a_hub_id_out_of_reach_is_refused_with_the_preset_meant(monkeypatch):
    import engine.estimate.model_config as model_config

    monkeypatch.setattr(model_config, "hub_reachable", lambda: False)
    with pytest.raises(ModelError) as e:
        model_config.read_model_config("meta-lama/Llama-2-7b-hf")
    assert e.value.message.startswith("meta-lama/Llama-2-7b-hf: the hub is unreachable")
    assert e.value.message.endswith("did you mean 'meta-llama/Llama-2-7b-hf'?")
    with pytest.raises(ModelError) as e:
        model_config.read_model_config("Qwen/Qwen2.5-7B-Instruct")   # a real model out of reach: no guess
    assert "did you mean" not in e.value.message


def test_the_estimates_help_lists_every_model_preset(monkeypatch):
    from engine.cli import build_parser

    monkeypatch.setenv("COLUMNS", "80")
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit):
        build_parser().parse_args(["estimate", "--help"])
    shown = " ".join(out.getvalue().split())
    assert "lorapilot-demo" in shown
    for entry in list_model_presets():
        assert entry["id"] in shown, entry["id"]
