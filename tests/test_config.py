"""Config validation: one test per rule, every problem reported at once with its dotted key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from engine.config import FIELDS, Config, check_override, config_from_dict, dump_config, load_config
from engine.errors import ConfigError

BASE = {"model": "some/model", "dataset": {"path": "train.jsonl"}}


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    return e.value.problems


def with_(section: str, **kv) -> dict:
    raw = {**BASE, section: kv} if section != "dataset" else {**BASE, "dataset": {**BASE["dataset"], **kv}}
    return raw


def test_minimal_config_gets_the_seeds_recipe():
    c = config_from_dict(BASE)
    assert (c.quantization, c.lora.r, c.lora.alpha, c.lora.dropout, c.lora.target_modules) == \
        ("nf4", 16, 32, 0.05, "all-linear")
    t = c.training
    assert (t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.optimizer) == (2e-4, "cosine", 0.03, "paged_adamw_32bit")
    assert (t.weight_decay, t.max_grad_norm, t.gradient_checkpointing) == (0.001, 0.3, True)
    assert (t.logging_steps, t.eval_steps, t.save_steps, t.save_total_limit) == (10, 50, 100, 3)


def test_unknown_key_suggests_the_close_one():
    assert problems(with_("training", lerning_rate=1e-4)) == \
        ["training.lerning_rate: unknown key; did you mean 'learning_rate'?"]


def test_unknown_top_level_key():
    p = problems({**BASE, "quantisation": "nf4"})
    assert p == ["quantisation: unknown key; did you mean 'quantization'?"]


def test_unknown_key_without_close_match_lists_known_keys():
    (p,) = problems(with_("lora", zzz=1))
    assert p.startswith("lora.zzz: unknown key; known keys:") and "alpha" in p


@pytest.mark.parametrize("section,key,value,expect", [
    ("training", "learning_rate", 0, "training.learning_rate: 0 is out of range; allowed (0, 1]"),
    ("training", "learning_rate", -1e-4, "training.learning_rate: -0.0001 is out of range"),
    ("lora", "r", 0, "lora.r: 0 is out of range; allowed [1, 1024]"),
    ("training", "micro_batch_size", 0, "training.micro_batch_size: 0 is out of range"),
    ("training", "gradient_accumulation_steps", 0, "training.gradient_accumulation_steps: 0 is out of range"),
    ("training", "warmup_ratio", 1.0, "training.warmup_ratio: 1.0 is out of range; allowed [0, 1)"),
    ("lora", "dropout", 1.0, "lora.dropout: 1.0 is out of range; allowed [0, 1)"),
    ("dataset", "validation_split", 1.0, "dataset.validation_split: 1.0 is out of range; allowed [0, 1)"),
    ("training", "max_grad_norm", 0, "training.max_grad_norm: 0 is out of range"),
    ("training", "num_epochs", 0, "training.num_epochs: 0 is out of range"),
    ("training", "max_seq_length", 4, "training.max_seq_length: 4 is out of range"),
    # 0 once passed the schema (-1 and up) and the plan read it as "not set": the whole epoch-based run trained
    ("training", "max_steps", 0, "training.max_steps: 0 is out of range; allowed -1 or [1, 10000000]"),
    ("training", "max_steps", -2, "training.max_steps: -2 is out of range; allowed -1 or [1, 10000000]"),
])
def test_out_of_range(section, key, value, expect):
    (p,) = problems(with_(section, **{key: value}))
    assert p.startswith(expect), p


@pytest.mark.parametrize("section,key,value,expect", [
    ("training", "micro_batch_size", "four", "expected an integer, got 'four'"),
    ("training", "micro_batch_size", 2.5, "expected an integer, got 2.5"),
    ("training", "gradient_checkpointing", "yes", "expected true or false"),
    ("training", "learning_rate", True, "expected a number, got true"),
    ("lora", "target_modules", 5, "expected text or a list"),
])
def test_wrong_type(section, key, value, expect):
    (p,) = problems(with_(section, **{key: value}))
    assert f"{section}.{key}: {expect}" in p, p


def test_choice_with_suggestion():
    (p,) = problems({**BASE, "quantization": "nf5"})
    assert p == "quantization: 'nf5' is not allowed; one of nf4, int8, none (did you mean 'nf4'?)"


def test_all_problems_at_once():
    p = problems({"dataset": {"path": ""}, "training": {"learning_rate": -1, "micro_batch_size": 0},
                  "lora": {"r": 0}})
    keys = {x.split(":")[0] for x in p}
    assert {"model", "dataset.path", "training.learning_rate", "training.micro_batch_size", "lora.r"} <= keys


def test_numeric_string_from_yaml_is_accepted():
    # YAML 1.1 reads `2e-4` (no dot) as a string; users write it that way.
    c = config_from_dict(with_("training", learning_rate="2e-4"))
    assert c.training.learning_rate == 2e-4


def test_stop_on_unknown_code():
    (p,) = problems(with_("training", stop_on=["nan_los"]))
    assert "training.stop_on" in p and "nan_los" in p


def test_section_must_be_a_mapping():
    (p,) = problems({**BASE, "lora": 16})
    assert p.startswith("lora: expected a mapping")


@pytest.mark.parametrize("raw,word", [([1], "a list"), ("model: x", "text"), (3, "a number")])
def test_a_top_level_that_is_no_mapping_says_what_it_is_in_yamls_words(raw, word):
    """Not Python's "got list", "got str" (a file holding only `model x`, its colon forgotten, is text)."""
    with pytest.raises(ConfigError, match=rf"the top level must be a mapping of keys to values, got {word}$"):
        config_from_dict(raw, source="c.yaml")


@pytest.mark.parametrize("key,value", [("model", 0), ("model", None), ("model", ["a"]), ("dataset", {"path": 1})])
def test_a_refused_model_or_data_path_is_one_problem_not_two(key, value):
    """It was refused for its type and then again as "must be set" (it kept its empty default)."""
    raw = {**BASE, key: value}
    assert len(problems(raw)) == 1, problems(raw)


def test_a_refused_value_is_shown_as_yaml_spells_it():
    """`alpha: true` was refused as "got True" (Python's word), `report_to: [null]` as "None"."""
    assert problems(with_("lora", alpha=True)) == ["lora.alpha: expected a number, got true"]
    assert problems(with_("training", report_to=[None]))[0].startswith("training.report_to: null is not allowed")
    assert problems({**BASE, "lora": False}) == ["lora: expected a mapping of keys (e.g. lora: {...}), got false"]


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: x\ndataset:\n  path: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and "line" in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.jsonl").write_text("{}\n")
    f = tmp_path / "c.yaml"
    f.write_text("model: lorapilot-demo\ndataset: {path: data/t.jsonl}\n")
    c = load_config(f)
    assert c.dataset.path == str((tmp_path / "data" / "t.jsonl").resolve())
    assert c.model == "lorapilot-demo"  # not a path: left as the id


def test_a_relative_data_path_not_there_says_where_it_was_looked_for(tmp_path, monkeypatch, demo_model_dir):
    """A config kept in another folder naming missing.jsonl was refused with just 'missing.jsonl: no such file or
    directory': not which config, which key, nor that it was looked for beside the config and in the current
    folder. Said so by the estimate's check and by train's, before anything launches."""
    from engine.data.formats import check_dataset_found
    from engine.errors import DataError
    from engine.train.launch import check_inputs

    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "run.yaml").write_text(f"model: {demo_model_dir}\ndataset: {{path: missing.jsonl}}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("cfgs/run.yaml")
    for check in (check_dataset_found, lambda ds: check_inputs(cfg)):
        with pytest.raises(DataError) as e:
            check(cfg.dataset)
        assert e.value.message == (f"cfgs/run.yaml: dataset.path: missing.jsonl: no such file or directory (looked for "
                                f"{tmp_path.resolve() / 'cfgs' / 'missing.jsonl'}, beside the config file, and "
                                f"{tmp_path.resolve() / 'missing.jsonl'}, in the current folder)")
        assert "check dataset.path in cfgs/run.yaml" in e.value.fix
    cfg.dataset.path = "typed.jsonl"   # changed since (the wizard's field): read from the current folder only
    with pytest.raises(DataError) as e:
        check_dataset_found(cfg.dataset)
    assert e.value.message == f"typed.jsonl: no such file or directory (looked for {tmp_path.resolve() / 'typed.jsonl'}, " \
                              "in the current folder)"



def test_a_missing_dataset_beside_a_config_in_the_current_folder_is_named_once(tmp_path, monkeypatch, demo_model_dir):
    """`lorapilot train typo.yaml` in the config's own folder said it looked for /x/data/trian.jsonl 'beside the
    config file, and' /x/data/trian.jsonl 'in the current folder': one place, named twice as if two."""
    from engine.data.formats import check_dataset_found
    from engine.errors import DataError

    (tmp_path / "run.yaml").write_text(f"model: {demo_model_dir}\ndataset: {{path: data/trian.jsonl}}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("run.yaml")
    with pytest.raises(DataError) as e:
        check_dataset_found(cfg.dataset)
    assert e.value.message == (f"run.yaml: dataset.path: data/trian.jsonl: no such file or directory (looked for "
                               f"{tmp_path.resolve() / 'data' / 'trian.jsonl'}, beside the config file, in the "
                               "current folder)")

def test_round_trip_is_the_reproducible_record(tmp_path):
    c = config_from_dict(with_("training", learning_rate=1e-4, seed=7))
    f = tmp_path / "saved.yaml"
    f.write_text(dump_config(c))
    assert load_config(f).to_dict() == c.to_dict()


def test_a_written_config_reads_as_a_user_writes_it(tmp_path):
    """`sweep --apply` wrote `alpha: 8.0` and `num_epochs: 3.0`: float fields holding a whole number are written as
    one, and read back to the same value."""
    c = config_from_dict(with_("training", max_grad_norm=1, learning_rate=2e-5) | {"lora": {"r": 4, "alpha": 8}})
    text = dump_config(c)
    for line in ("  alpha: 8\n", "  num_epochs: 3\n", "  max_grad_norm: 1\n", "  dropout: 0.05\n", "  r: 4\n"):
        assert line in text
    f = tmp_path / "saved.yaml"
    f.write_text(text)
    assert load_config(f).to_dict() == c.to_dict() and load_config(f).lora.alpha == 8.0


def test_every_field_has_help_and_a_default_that_validates():
    for spec in FIELDS.values():
        assert spec.help, spec.path
    config_from_dict(Config(model="m", dataset=Config().dataset).to_dict() | {"dataset": {"path": "p"}})


def test_advice_flags_values_outside_the_recommended_range():
    from engine.config import advice

    assert advice(config_from_dict(BASE)) == {}  # the recipe itself is inside every range
    a = advice(config_from_dict({**BASE, "training": {"learning_rate": 3e-3, "warmup_ratio": 0.0},
                                 "lora": {"r": 16, "alpha": 128}}))
    assert set(a) == {"training.learning_rate", "training.warmup_ratio", "lora.alpha"}
    assert "1e-4 to 3e-4" in a["training.learning_rate"].text and "alpha = 2 x r (32)" in a["lora.alpha"].text
    assert a["training.learning_rate"].level == "warning" and a["lora.alpha"].level == "warning"


# ---------------------------------------------------------------- values the trainer would refuse after detaching

@pytest.mark.parametrize("key,value,expect", [
    ("seed", 2**40, "training.seed: 1099511627776 is out of range; allowed [0, 4294967295]"),
    ("report_to", ["os"], "training.report_to: 'os' is not allowed; each entry is one of"),
    ("report_to", ["tensorbord"], "(did you mean 'tensorboard'?)"),
    ("max_steps", 10**400, "training.max_steps: 1000000"),
    ("logging_steps", 10**30, "training.logging_steps: "),
    ("sample_max_new_tokens", 10**12, "training.sample_max_new_tokens: "),
], ids=["seed 2**40", "report_to os", "report_to typo", "max_steps 10**400", "logging_steps", "sample tokens"])
def test_values_the_trainer_refuses_are_refused_up_front(key, value, expect):
    (p,) = problems(with_("training", **{key: value}))
    assert expect in p and len(p) < 300


def test_seed_bound_is_numpys():
    import numpy as np
    from engine.config import MAX_SEED

    np.random.seed(MAX_SEED)
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)
    assert config_from_dict(with_("training", seed=MAX_SEED)).training.seed == MAX_SEED


def test_report_to_names_are_transformers_integrations():
    # Read from transformers' source: importing its integrations takes half a minute on a loaded machine.
    import ast
    import importlib.util
    from pathlib import Path

    from engine.config import REPORT_TO
    source = Path(importlib.util.find_spec("transformers").origin).parent / "integrations" / "integration_utils.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    (mapping,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", None) == "INTEGRATION_TO_CALLBACK" for t in node.targets)]
    assert set(REPORT_TO) == {ast.literal_eval(k) for k in mapping.keys} | {"all", "none"}


def test_check_override_names_the_flag():
    from engine.config import check_override

    with pytest.raises(ConfigError, match=r"^--max-steps -7: training.max_steps: -7 is out of range"):
        check_override("training.max_steps", -7, flag="--max-steps")
    assert check_override("training.max_steps", 5, flag="--max-steps") == 5


def test_messages_quote_a_huge_value_in_a_line():
    (p,) = problems(with_("training", precision="x" * 1_000_000))
    assert p.startswith("training.precision: 'xxxx") and len(p) < 300


# ---------------------------------------------------------------- YAML that PyYAML accepts silently

def load_text(tmp_path, text: str):
    f = tmp_path / "c.yaml"
    f.write_text("model: some/model\ndataset: {path: train.jsonl}\n" + text, encoding="utf-8")
    return load_config(f)


@pytest.mark.parametrize("text,expect", [
    ("training:\n  learning_rate: 1e-4\n  seed: 3\n  learning_rate: 2e-4\n",
     "line 6: training.learning_rate: duplicate key (first at line 4)"),
    ("training:\n  seed: 3\nlora: {r: 8}\ntraining:\n  seed: 4\n", "line 6: training: duplicate key (first at line 3)"),
    ("model: other/model\n", "line 3: model: duplicate key (first at line 1)"),
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path, text, expect):
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        load_text(tmp_path, text)


def test_merge_keys_may_override(tmp_path):
    cfg = load_text(tmp_path, "training:\n  <<: {seed: 4, logging_steps: 3}\n  seed: 5\n")
    assert (cfg.training.seed, cfg.training.logging_steps) == (5, 3)


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    # 9 levels of 9 copies: 435 million values from a few hundred bytes ("billion laughs").
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"&a{i} [{levels[-1]}, " + ", ".join([f"*a{i - 1}"] * 8) + "]")
    text = f"training:\n  report_to: {levels[-1]}\n"
    assert len(text) < 700
    with pytest.raises(ConfigError, match=r"line 4: training.report_to: anchors and aliases expand to 435,848,050 values"):
        load_text(tmp_path, text)


def test_small_aliases_are_fine(tmp_path):
    cfg = load_text(tmp_path, "training:\n  stop_on: &codes [nan_loss]\nx_unused: null\n".replace("x_unused: null\n", ""))
    assert cfg.training.stop_on == ["nan_loss"]


@pytest.mark.parametrize("text,expect", [
    ("training: &t {seed: 3, more: [*t]}\n", r"line 3: an alias refers to the value that contains it"),
    ("training:\n  seed: 1" + "0" * 5000 + "\n", r"line 4, column 9: invalid YAML: cannot read '10000.*digits"),
    ("run_name: 2024-13-45\n", r"line 3, column 11: invalid YAML: cannot read '2024-13-45': month must be"),
    ("training: " + "[" * 20_000 + "]" * 20_000 + "\n", r"nested more than 100 deep"),
    # PyYAML (YAML 1.1) read these silently as 34 and 90; YAML 1.2 tools (the wizard's editor) as 42 and text.
    ("training:\n  seed: 042\n", r"line 4, column 9: invalid YAML: cannot read '042': a leading 0 makes it octal "
                                  r"to YAML \(34\); write 42, or '042' in quotes for text"),
    ("training:\n  num_epochs: 1:30\n", r"line 4, column 15: invalid YAML: cannot read '1:30': YAML reads it as base "
                                        r"60 \(90\)"),
], ids=["recursive alias", "5000-digit integer", "impossible date", "nested 20k deep", "octal", "base 60"])
def test_yaml_values_that_cannot_be_built_name_their_line(tmp_path, text, expect):
    with pytest.raises(ConfigError, match=expect):
        load_text(tmp_path, text)


def test_binary_and_oversized_config_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"model: x\n\x00\x01\x02")
    with pytest.raises(ConfigError, match="is not a text file"):
        load_config(f)
    f.write_bytes(b"# " + b"x" * (5 * 2**20))
    with pytest.raises(ConfigError, match="far too big for a config file"):
        load_config(f)


# ---------------------------------------------------------------- messages that read as sentences

def test_an_empty_field_says_what_to_type_not_its_help_again():
    """An empty lora.r said "must be set (LoRA rank: capacity of the adapter.)", the help the row shows just above."""
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "lora": {"r": None}, "training": {"learning_rate": None}})
    assert "lora.r: must be set; type an integer in [1, 1024], e.g. 16" in e.value.problems
    assert "training.learning_rate: must be set; type a number in (0, 1], e.g. 0.0002" in e.value.problems
    assert not any("capacity of the adapter" in p for p in e.value.problems)


@pytest.mark.parametrize("section,values,path,expect", [
    ("lora", {"r": 128, "alpha": 256}, "lora.r", "128 is above the usual range 8 to 64 (16 is typical)"),
    ("training", {"num_epochs": 5}, "training.num_epochs",
     "5 is above the usual range 1 to 3 for 500 to 5000 examples"),
    ("training", {"warmup_ratio": 0.5}, "training.warmup_ratio", "0.5 is above the usual 0.03"),
    ("training", {"max_grad_norm": 0.05}, "training.max_grad_norm", "0.05 is below the usual range 0.3 to 1.0"),
    ("dataset", {"validation_split": 0.5}, "dataset.validation_split",
     "0.5 is above the usual range 0.05 to 0.1"),
])
def test_out_of_the_usual_range_reads_as_a_sentence(section, values, path, expect):
    """It pasted the recommended text as written: "128 is outside the usual 8-64, 16 typical"."""
    from engine.config import advice

    raw = copy.deepcopy(BASE)
    raw.setdefault(section, {}).update(values)
    assert advice(config_from_dict(raw))[path].text == expect


def test_an_effectively_unbounded_maximum_is_not_shown_as_a_number():
    """`estimate --examples 0` said "allowed [1, 1000000000000]"; a value past that guard still names it."""
    spec = FIELDS["dataset.max_examples"]
    assert spec.range_text() == ">= 1"
    assert FIELDS["lora.r"].range_text() == "[1, 1024]" and FIELDS["training.seed"].range_text() == "[0, 4294967295]"
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "dataset": {"path": "p", "max_examples": 10**13}})
    assert e.value.problems == ["dataset.max_examples: 10000000000000 is out of range; allowed [1, 1000000000000]"]
    with pytest.raises(ConfigError, match=r"^--examples 0: dataset.max_examples: 0 is out of range; allowed >= 1$"):
        check_override("dataset.max_examples", 0, flag="--examples")


def test_max_steps_takes_minus_one_or_a_step_count_and_says_so_where_it_is_typed():
    """0 passed the schema (-1 and up) and the plan read it as "not set". The wizard's hint and an empty field read
    the validator's words (one FieldSpec)."""
    spec = FIELDS["training.max_steps"]
    assert spec.range_text() == "-1 or [1, 10000000]"
    assert spec.what_to_type() == "an integer -1 or [1, 10000000], e.g. -1"
    assert config_from_dict(with_("training", max_steps=-1)).training.max_steps == -1
    assert config_from_dict(with_("training", max_steps=1)).training.max_steps == 1
    with pytest.raises(ConfigError, match=r"^--max-steps 0: training.max_steps: 0 is out of range; allowed -1 or \[1, 10000000\]$"):
        check_override("training.max_steps", 0, flag="--max-steps")


# ---------------------------------------------------------------- lora.alpha, judged against r (engine.lora_scale)

def test_an_alpha_typo_is_refused_against_r_with_the_allowed_and_usual_values():
    """alpha 16000 at r 16 (a typo for 16) validated and trained its update scaled 1000x; the validator had no
    upper bound on alpha at all."""
    assert problems(with_("lora", r=16, alpha=16000)) == [
        "lora.alpha: 16000 is 1000 x lora.r (16), an update scaled 1000x; allowed up to 32 x r (512), "
        "usually 2 x r (32)"]
    assert config_from_dict(with_("lora", r=16, alpha=512)).lora.alpha == 512   # the bound itself is allowed
    assert config_from_dict(with_("lora", r=1024, alpha=16000)).lora.alpha == 16000  # the same alpha at a large r
    # A refused r is not the r alpha is judged against (it kept its default 16): one problem, r's own.
    assert problems(with_("lora", r=0, alpha=16000)) == ["lora.r: 0 is out of range; allowed [1, 1024]"]


def test_the_alpha_field_says_its_bound_in_r():
    """The wizard's hint and an empty field's message read the rule's own words: "allowed (0, 32 x r]"."""
    from tui.widgets.field_row import hint_text

    spec = FIELDS["lora.alpha"]
    assert hint_text(spec) == "recommended 2 x r · allowed (0, 32 x r]"
    assert spec.what_to_type() == "a number in (0, 32 x r], e.g. 32"


@pytest.mark.parametrize("r,alpha,advised", [(16, 32, False), (64, 16, False), (8, 32, False), (16, 128, True),
                                             (64, 8, True)])
def test_alpha_advice_and_the_preflight_warning_are_one_rule(r, alpha, advised):
    """The row's advice and the pre-flight finding `lorapilot train` prints agree; the QLoRA paper's own r 64,
    alpha 16 (a scale of 0.25) is not warned about."""
    from engine.config import advice
    from engine.config_edit import fix_setting
    from engine.diagnose.settings_check import check_settings

    cfg = config_from_dict(with_("lora", r=r, alpha=alpha))
    found = [f for f in check_settings(cfg, None) if f.code == "lora_alpha_unusual"]
    assert ("lora.alpha" in advice(cfg)) == advised == bool(found)
    if found:
        assert found[0].severity == "warning" and fix_setting(found[0].fix) == ("lora.alpha", 2 * r)
        assert found[0].evidence == f"lora.alpha: {alpha}, lora.r: {r}"


# ---------------------------------------------------------------- values in messages spelled as YAML

@pytest.mark.parametrize("section,values,expect", [
    ("training", {"stop_on": ["nan_loss", 3]}, "training.stop_on: expected a list of text entries, got [nan_loss, 3]"),
    ("training", {"precision": ["bf16"]}, "training.precision: expected one of auto, bf16, fp16, fp32, got [bf16]"),
    ("lora", {"dropout": {"p": [0.1, "x y", None, True]}},
     "lora.dropout: expected a number, got {p: [0.1, 'x y', null, true]}"),
])
def test_a_list_or_mapping_in_a_message_reads_as_the_yaml_the_user_wrote(section, values, expect):
    """They printed Python's ['nan_loss', 3] and {'p': [0.1, 'x y', None, True]}: not what the file says."""
    assert problems(with_(section, **values)) == [expect]


def test_a_resume_names_a_changed_list_as_yaml(tmp_path):
    """A resume refused a changed target list as "['q_proj'] at checkpoint-4, now ['q_proj', 'v_proj']"."""
    import json

    from engine.errors import UserError
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import config_changes, run_record

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    cfg = config_from_dict({**BASE, "dataset": {"path": str(data)}, "lora": {"target_modules": ["q_proj"]}})
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(run_record(cfg, "adamw_torch")))
    cfg.lora.target_modules = ["q_proj", "v_proj"]
    with pytest.raises(UserError) as e:
        config_changes(ckpt, cfg, "c.yaml")
    assert "lora.target_modules: [q_proj] at checkpoint-4, now [q_proj, v_proj]" in e.value.problems


def test_numbers_yaml_would_read_otherwise_are_read_as_they_show():
    """A field showing 042 gave a seed of 34 (YAML's octal), 1:30 epochs of 90 (base 60); 07 and a quoted '042'
    are the numbers they show."""
    from engine.config_file import parse_yaml_config
    from engine.config_text import from_raw

    seed, epochs = FIELDS["training.seed"], FIELDS["training.num_epochs"]
    assert config_from_dict(with_("training", seed=from_raw(seed, "042"))).training.seed == 42
    assert problems(with_("training", num_epochs=from_raw(epochs, "1:30"))) == [
        "training.num_epochs: expected a number, got '1:30'"]
    assert from_raw(seed, "07") == 7 and from_raw(seed, "1_000") == 1000
    assert parse_yaml_config("seed: '042'\nsteps: 07\nname: 1:30 and more\n", Path("c.yaml")) == {
        "seed": "042", "steps": 7, "name": "1:30 and more"}


def test_a_key_in_the_wrong_section_names_the_section_it_belongs_to():
    """`learning_rate:` at the top level (its `training:` forgotten) listed the top-level keys; `r` under training
    listed training's. Both name the key where it goes; a typo in the right section still gets its near match."""
    assert problems({**BASE, "learning_rate": 1e-4}) == [
        "learning_rate: unknown key here; did you mean 'training.learning_rate'? (it goes under training:)"]
    assert problems(with_("training", r=8)) == ["training.r: unknown key here; did you mean 'lora.r'? (it goes under "
                                                "lora:)"]
    assert problems(with_("training", model="m")) == [
        "training.model: unknown key here; did you mean 'model'? (it goes at the top level)"]
    assert problems(with_("training", learnin_rate=1)) == ["training.learnin_rate: unknown key; did you mean "
                                                           "'learning_rate'?"]


@pytest.mark.parametrize("section,key,typed,said", [
    ("dataset", "validation_split", "5%", "expected a number, got '5%'; as a fraction: 0.05"),
    ("training", "max_steps", "5%", "expected an integer, got '5%'"),
    ("training", "max_steps", "1,000", "expected an integer, got '1,000'; without separators: 1000"),
    ("training", "max_steps", "1 000", "expected an integer, got '1 000'; without separators: 1000"),
    ("training", "learning_rate", "0,0002", "expected a number, got '0,0002'; with a decimal point: 0.0002"),
    ("training", "max_seq_length", "2k", "expected an integer, got '2k'; the number in full: 2000 (or 2048)"),
    ("training", "max_seq_length", "512 tokens", "expected an integer, got '512 tokens'; just the number: 512"),
    ("training", "max_steps", "1e3", "expected an integer, got '1e3'; an integer: 1000"),
    ("training", "learning_rate", "2e-4x", "expected a number, got '2e-4x'"),
])
def test_a_number_written_as_people_write_it_is_refused_with_what_to_write(section, key, typed, said):
    """'expected a number, got 5%' left the user to guess what the field wanted instead."""
    assert problems(with_(section, **{key: typed})) == [f"{section}.{key}: {said}"]


@pytest.mark.parametrize("value,problem", [
    ("q_proj, v_proj", "lora.target_modules: 'q_proj, v_proj' is one name; for several, write a list: [q_proj, v_proj]"),
    ("q_proj v_proj", "lora.target_modules: 'q_proj v_proj' is one name; for several, write a list: [q_proj, v_proj]"),
    ("", "lora.target_modules: expected all-linear or a non-empty list of module names"),
    ("all linear", "lora.target_modules: 'all linear' is no module name; did you mean 'all-linear'?"),
    ("All_Linear", "lora.target_modules: 'All_Linear' is no module name; did you mean 'all-linear'?"),
])
def test_target_modules_text_that_is_no_module_name_is_refused_here(value, problem):
    """They passed the validator as one module named 'q_proj, v_proj' (or ''), refused only by the model check
    that `estimate` and `train` run later, naming no file; the wizard showed no problem at all."""
    assert problems(with_("lora", target_modules=value)) == [problem]
    assert config_from_dict(with_("lora", target_modules="q_proj")).lora.target_modules == ["q_proj"]


@pytest.mark.parametrize("value,named", [(["q_proj", "lm_head"], "'lm_head' (the output head)"),
                                         ("embed_tokens", "'embed_tokens' (the token embeddings)"),
                                         (["lm_head", "embed_tokens"],
                                          "'lm_head', 'embed_tokens' (the output head and the token embeddings)")])
def test_the_output_head_and_the_embeddings_are_refused_with_why_by_one_rule(value, named):
    """The trainer refused lm_head and embed_tokens as 'not in this model' (it has both) and the estimate as 'not in
    a llama model': the same refusal everywhere now, before anything loads, saying why. An adapter on the head would
    train nothing under the fused loss (it reads the head's weight directly), and vLLM serves neither."""
    (p,) = problems(with_("lora", target_modules=value))
    assert p.startswith(f"lora.target_modules: {named} cannot be adapted: lorapilot puts LoRA adapters on the "
                        "decoder's linear layers only")
    assert "fused loss reads the head's weight directly" in p and "all-linear" in p


def test_the_trainers_check_of_the_loaded_model_gives_the_same_refusal():
    """A Config built in code skips validation: the trainer's own check of the model's layers says the same."""
    from types import SimpleNamespace

    from engine.config import not_adapted_problem
    from engine.errors import ModelError
    from engine.model import check_target_modules

    model = SimpleNamespace(config=SimpleNamespace(model_type="llama"), named_modules=lambda: iter(()))
    with pytest.raises(ModelError) as e:
        check_target_modules(model, ["q_proj", "lm_head"])
    assert e.value.message == not_adapted_problem(["lm_head"])


@pytest.mark.parametrize("name", ["a/b", "..", "", "/abs"])
def test_a_run_name_that_is_no_plain_name_is_refused_by_the_validator(name):
    """Only `train` refused it (estimate and the sweep's dry run passed the config); now every verb does."""
    (p,) = problems({**BASE, "run_name": name})
    assert p.startswith(f"run_name: {name!r} is not a plain directory name")
    assert config_from_dict({**BASE, "run_name": "my run 2"}).run_name == "my run 2"


@pytest.mark.parametrize("value", [0.00012345678, 1 / 3, 0.1 + 0.2, 123.456789, 2e-4, 3.0, 1e-7])
def test_a_number_reads_back_from_its_field_as_the_same_number(value):
    """A field showed 0.00012345678 as 0.000123457 (six digits), and the wizard saved that back into the file."""
    from engine.config_text import from_raw, to_raw

    spec = FIELDS["training.num_epochs"]
    text = to_raw(spec, value)
    assert config_from_dict(with_("training", num_epochs=from_raw(spec, text))).training.num_epochs == value
    assert len(text) <= len(repr(value))
    assert to_raw(spec, 2e-4) == "0.0002" and to_raw(spec, 3.0) == "3"


@pytest.mark.parametrize("path,typed,value", [
    ("training.sample_prompts", "What is C#? #1", ["What is C#? #1"]),   # read as YAML: 'What is C#?'
    ("training.sample_prompts", "Say: hi", ["Say: hi"]),                 # read as YAML: a mapping, refused
    ("training.sample_prompts", '["Yes", "No"]', ["Yes", "No"]),
    ("training.report_to", "tensorboard", ["tensorboard"]),
    ("training.stop_on", "nan_loss", ["nan_loss"]),
    ("training.report_to", "", []),
])
def test_one_entry_typed_where_a_list_goes_is_a_list_of_it_as_typed(path, typed, value):
    """A sample prompt typed alone was refused ("expected a list"), or worse, read as YAML: its end after ' #' cut
    off as a comment. `report_to: tensorboard` in the file was refused too (transformers takes it)."""
    from engine.config_text import from_raw

    section, key = path.split(".")
    assert getattr(config_from_dict(with_(section, **{key: from_raw(FIELDS[path], typed)})).training, key) == value
    assert problems(with_("training", stop_on=from_raw(FIELDS["training.stop_on"], ""))) == [
        "training.stop_on: must be set; type a list, e.g. [nan_loss]"]


def test_a_key_that_is_no_text_is_named_as_the_file_spells_it():
    """`~: 2` was refused as "None: unknown key", `lora: {true: 1}` as "lora.True"."""
    assert problems({**BASE, None: 2})[0].startswith("null: unknown key")
    assert problems(with_("lora", **{"r": 8}) | {"lora": {True: 1}})[0].startswith("lora.true: unknown key")


# Settings the trainer would accept and then not act on, in some combination: each refused with its key, so that no
# run silently trains other than its config says (tests/test_plan_seam.py holds the seams of the accepted ones).
@pytest.mark.parametrize("raw,expect", [
    ({**BASE, "training": {"memory": "lean", "gradient_checkpointing": False}},
     "training.memory: lean offloads the checkpointed layer inputs to host memory; with "
     "training.gradient_checkpointing false"),
    ({**BASE, "dataset": {**BASE["dataset"], "validation_split": 0}, "training": {"sample_prompts": ["Hi"]}},
     "training.sample_prompts: samples are generated at each evaluation, and dataset.validation_split 0 holds out "
     "no examples to evaluate on"),
    ({**BASE, "dataset": {**BASE["dataset"], "validation_split": 0}, "training": {"stop_on": ["nan_loss", "overfitting"]}},
     "training.stop_on: overfitting is found from the eval loss, and dataset.validation_split 0 holds out no examples "
     "to evaluate on"),
    ({**BASE, "training": {"parallelism": "fsdp", "sample_prompts": ["Hi"]}},
     "training.sample_prompts: samples are off while the model is sharded (training.parallelism fsdp)"),
    ({**BASE, "training": {"parallelism": "fsdp", "num_gpus": 1}},
     "training.parallelism: fsdp shards the model across GPUs, and training.num_gpus 1 trains on one"),
], ids=["lean without checkpointing", "sample prompts without validation", "overfitting stop without validation",
        "sample prompts sharded", "fsdp on one GPU"])
def test_a_setting_another_makes_a_no_op_is_refused_with_both_keys(raw, expect):
    (p,) = problems(raw)
    assert p.startswith(expect), p


@pytest.mark.parametrize("raw", [
    {**BASE, "training": {"memory": "auto", "gradient_checkpointing": False}},
    {**BASE, "training": {"memory": "fast", "gradient_checkpointing": False}},
    {**BASE, "dataset": {**BASE["dataset"], "validation_path": "val.jsonl", "validation_split": 0},
     "training": {"sample_prompts": ["Hi"], "stop_on": ["overfitting"]}},
    {**BASE, "dataset": {**BASE["dataset"], "validation_split": 0},
     "training": {"sample_prompts": ["Hi"], "sample_max_new_tokens": 0}},   # samples off: nothing to ignore
    {**BASE, "dataset": {**BASE["dataset"], "validation_split": 0}},
    {**BASE, "training": {"parallelism": "fsdp"}},                       # all visible GPUs: the plan says
    {**BASE, "training": {"parallelism": "ddp", "num_gpus": 1}},         # one process of ddp is one process
], ids=["auto", "fast", "validation file", "samples off", "no validation, defaults", "fsdp, all visible",
        "ddp on one"])
def test_their_working_neighbours_are_accepted(raw):
    config_from_dict(raw)
