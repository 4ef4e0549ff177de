"""engine.config_paths and engine.config_text: a field by dotted path, and its value as the text typed for it.

The wizard keeps every field as typed text; each value must survive the trip text -> value -> text, or a field
would change under the user's cursor. A recipe's keys are read by path, a list-valued field whole.
"""

from __future__ import annotations

import pytest

from engine.config import FIELDS, Config, config_from_dict
from engine.config_paths import flatten, get_path, problem_path, put_path
from engine.config_text import from_raw, to_raw
from engine.errors import ConfigError


def test_every_default_survives_text_and_back():
    defaults = Config().to_dict()
    for path, spec in FIELDS.items():
        value = get_path(defaults, path)
        assert from_raw(spec, to_raw(spec, value)) == value, path


def test_text_reads_as_the_yaml_config_reads_it():
    assert from_raw(FIELDS["training.learning_rate"], " 0.0003 ") == 0.0003
    # PyYAML reads 2e-4 (no dot) as text, as it does in a config file; the validator takes numeric text
    assert config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"},
                             "training": {"learning_rate": from_raw(FIELDS["training.learning_rate"], "2e-4")}}
                            ).training.learning_rate == 2e-4
    assert from_raw(FIELDS["training.report_to"], "[tensorboard, wandb]") == ["tensorboard", "wandb"]
    assert from_raw(FIELDS["model"], "007") == "007"  # a plain string field keeps what was typed
    assert from_raw(FIELDS["training.learning_rate"], "[unclosed") == "[unclosed"  # the validator names it
    assert to_raw(FIELDS["trust_remote_code"], True) == "true"


def test_a_recipe_flattens_to_paths_and_a_list_field_stays_whole():
    recipe = {"lora": {"r": 32}, "training": {"report_to": ["tensorboard"], "learning_rate": 2e-4}, "model": "m"}
    assert flatten(recipe) == {"lora.r": 32, "training.report_to": ["tensorboard"],
                               "training.learning_rate": 2e-4, "model": "m"}
    d: dict = {}
    for path, value in flatten(recipe).items():
        put_path(d, path, value)
    assert d == recipe


def test_a_path_the_mapping_does_not_set_reads_none():
    assert get_path({"training": {"max_steps": 5}}, "training.max_steps") == 5
    assert get_path({"training": {}}, "training.max_steps") is None
    assert get_path({}, "training.max_steps") is None
    assert get_path({"training": None}, "training.max_steps") is None


def test_a_problem_line_names_its_field():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"}, "training": {"learning_rate": -1}})
    (line,) = e.value.problems
    assert problem_path(line) == "training.learning_rate"
    assert problem_path("something went wrong: no field") == ""
