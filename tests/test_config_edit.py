"""engine/config_edit: the user's config changes only where a value changed; comments, order and unknown-to-the-
wizard keys stay; a file that did not load cleanly is never overwritten."""

from __future__ import annotations

import pytest

from engine.config import config_from_dict, load_config, save_config
from engine.config_edit import apply_settings, fix_setting, save_into
from engine.errors import ConfigError

MINE = """\
# my run: keep these notes
model: Qwen/Qwen2.5-0.5B   # the small one
dataset:
  path: data.jsonl
training:
  # a bigger rate worked last time
  learning_rate: 3.0e-4
  max_steps: 120
  sample_prompts: ["Say hi", "Count to 3"]
  warmup_ratio: 0.1
"""


def test_apply_settings_keeps_comments_order_and_other_keys(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    changed = apply_settings(path, {"training.max_seq_length": 192, "training.learning_rate": 2e-4})
    text = path.read_text(encoding="utf-8")
    assert "# my run: keep these notes" in text and "# the small one" in text
    assert "# a bigger rate worked last time" in text
    assert "sample_prompts" in text and "warmup_ratio: 0.1" in text
    # order kept: the new key goes last in its section, the old ones where they were
    assert text.index("learning_rate") < text.index("max_steps") < text.index("max_seq_length")
    cfg = load_config(path)
    assert cfg.training.max_seq_length == 192 and cfg.training.learning_rate == 2e-4
    assert "training.max_seq_length: (default) -> 192" in changed


def test_apply_settings_leaves_a_file_named_like_its_temporary_one_alone(tmp_path):
    """The edited config was written through .NAME.tmp beside it: a user's file of that name was lost (renamed over
    the config). The temporary file is now one of its own."""
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    (tmp_path / ".mine.yaml.tmp").write_text("my draft\n")
    apply_settings(path, {"training.learning_rate": 2e-4})
    assert (tmp_path / ".mine.yaml.tmp").read_text() == "my draft\n"
    assert load_config(path).training.learning_rate == 2e-4 and sorted(p.name for p in tmp_path.iterdir()) == [
        ".mine.yaml.tmp", "mine.yaml"]


def test_a_refused_value_writes_nothing(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    with pytest.raises(ConfigError, match="learning_rate"):
        apply_settings(path, {"training.learning_rate": -1})
    assert path.read_text(encoding="utf-8") == MINE


def test_save_into_a_file_that_did_not_load_cleanly_refuses(tmp_path):
    path = tmp_path / "broken.yaml"
    broken = MINE.replace("max_steps: 120", "max_steps: lots")
    path.write_text(broken, encoding="utf-8")
    cfg = config_from_dict({"model": "Qwen/Qwen2.5-0.5B", "dataset": {"path": "data.jsonl"}})
    with pytest.raises(ConfigError, match="not overwritten"):
        save_into(cfg, path)
    assert path.read_text(encoding="utf-8") == broken


def test_save_into_changes_only_what_differs(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    cfg = load_config(path)
    assert save_into(cfg, path) == []            # nothing changed: the file is not touched
    assert path.read_text(encoding="utf-8") == MINE
    cfg.lora.r = 8
    assert save_into(cfg, path) == ["lora.r: (default) -> 8"]
    text = path.read_text(encoding="utf-8")
    assert "# a bigger rate worked last time" in text and load_config(path).lora.r == 8
    new = tmp_path / "new.yaml"
    assert save_into(cfg, new) == [] and load_config(new).lora.r == 8  # a new file: the whole config
    cfg.lora.alpha = 16.0   # as the loader keeps it: written as the user writes it, not `alpha: 16.0`
    assert save_into(cfg, path) == ["lora.alpha: (default) -> 16"] and "  alpha: 16\n" in path.read_text()


def test_fix_setting_reads_a_findings_fix():
    assert fix_setting("Set training.max_seq_length to 192.") == ("training.max_seq_length", 192)
    assert fix_setting("Set training.warmup_ratio to 0.03 (3 % of the steps).") == ("training.warmup_ratio", 0.03)
    assert fix_setting("Set training.learning_rate to 0.0002") == ("training.learning_rate", 0.0002)
    assert fix_setting("Lower micro_batch_size, or use 4-bit") is None
    assert fix_setting("Set nothing.real to 3") is None


def test_inspect_data_fix_writes_the_findings_settings_into_the_config(tmp_path, demo_model_dir):
    import json

    from conftest import run_cli

    long_answer = " ".join(f"item{i}" for i in range(40))
    rows = [{"instruction": f"List items for case {i}.", "output": long_answer} for i in range(20)]
    rows += [{"instruction": f"Say yes {i}.", "output": "yes"} for i in range(15)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in rows))
    # A config whose path is longer than a line (80 columns): the line that names it must not cut it.
    config = tmp_path / "a-folder-whose-name-alone-takes-most-of-a-line-of-eighty-columns" / "mine.yaml"
    config.parent.mkdir()
    config.write_text(f"# mine\nmodel: lorapilot-demo\ndataset:\n  path: {data}\ntraining:\n"
                      "  max_seq_length: 48   # too short, on purpose\n  warmup_ratio: 0\n", encoding="utf-8")

    # Without a config: data advice only, and the tokenizer named.
    r = run_cli("inspect-data", str(data), "--max-seq-length", "48")
    assert "tokenizer" in r.stdout and "lorapilot-demo" in r.stdout
    assert "no_warmup" not in r.stdout and "settings not checked" in r.stdout

    r = run_cli("inspect-data", str(data), "--fix", str(config))
    assert r.returncode == 0, r.stdout + r.stderr
    text = config.read_text(encoding="utf-8")
    assert "# mine" in text and "# too short, on purpose" in text
    cfg = load_config(config)
    assert cfg.training.max_seq_length > 48 and cfg.training.warmup_ratio == 0.03
    words = " ".join(r.stdout.split())   # lines wrap at 80 columns (engine/wrap.py; a path is never cut)
    assert f"into {config}" in words and "training.warmup_ratio: 0 -> 0.03" in words
    assert "responses_truncated" not in r.stdout  # checked again with what the config now says


def test_a_saved_text_value_reads_back_as_text_not_as_a_yaml_word(tmp_path):
    """ruamel (YAML 1.2) wrote a run_name `no` and sample prompts `Yes`, `on`, `1:30` unquoted; the config's reader
    (PyYAML, YAML 1.1) read them back as false, true, true and 90, and the saved file no longer loaded."""
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    cfg = load_config(path)
    cfg.run_name = "no"
    cfg.training.sample_prompts = ["Yes", "on", "1:30", "plain words"]
    cfg.training.packing = False
    assert save_into(cfg, path) == [  # said as the file spells them: false, not Python's False
        "run_name: (default) -> no", "training.packing: (default) -> false",
        "training.sample_prompts: ['Say hi', 'Count to 3'] -> ['Yes', 'on', '1:30', 'plain words']"]
    back = load_config(path)
    assert back.run_name == "no" and back.training.sample_prompts == ["Yes", "on", "1:30", "plain words"]
    assert "# a bigger rate worked last time" in path.read_text(encoding="utf-8")


def test_a_file_with_yaml_11_words_can_be_saved_into(tmp_path):
    """`packing: yes` loads (PyYAML reads true), but the save validated ruamel's reading ('yes', text) and refused
    every change to the file: "training.packing: expected true or false, got 'yes'"."""
    path = tmp_path / "mine.yaml"
    path.write_text(MINE + "  packing: yes\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.training.packing is True
    cfg.lora.r = 8
    assert save_into(cfg, path) == ["lora.r: (default) -> 8"]
    back = load_config(path)
    assert back.lora.r == 8 and back.training.packing is True


def test_a_relative_data_path_saved_into_another_folder_reads_back_as_the_same_file(tmp_path, monkeypatch):
    """The wizard's data/train.jsonl (relative to where it runs) saved into configs/run.yaml read back as
    configs/data/train.jsonl, another file that happened to be there, without a word."""
    work = tmp_path / "work"
    for folder in (work / "data", work / "configs" / "data"):
        folder.mkdir(parents=True)
        (folder / "train.jsonl").write_text('{"text": "%s"}\n' % folder, encoding="utf-8")
    monkeypatch.chdir(work)
    cfg = config_from_dict({"model": "Qwen/Qwen2.5-0.5B", "dataset": {"path": "data/train.jsonl"}})
    for name in ("run.yaml", "existing.yaml"):
        target = work / "configs" / name
        if name == "existing.yaml":
            target.write_text("model: Qwen/Qwen2.5-0.5B\ndataset: {path: /elsewhere.jsonl}\n", encoding="utf-8")
        save_into(cfg, target)
        assert load_config(target).dataset.path == str(work / "data" / "train.jsonl"), name
    assert load_config(target).model == "Qwen/Qwen2.5-0.5B"                 # a hub id is no path
    save_into(cfg, work / "here.yaml")                                       # beside the data's folder: as typed
    assert "path: data/train.jsonl" in (work / "here.yaml").read_text(encoding="utf-8")
    # A run directory's config.yaml (save_config, as `train` writes it) reads the same file from anywhere: the
    # trainer and `train --resume` read it from other folders.
    (work / "runs" / "r1").mkdir(parents=True)
    save_config(cfg, work / "runs" / "r1" / "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(work / "runs" / "r1" / "config.yaml").dataset.path == str(work / "data" / "train.jsonl")


def test_an_edited_config_keeps_its_permission_bits(tmp_path):
    """The config is replaced through a new file: it came back 0644 whatever the user had set (a config kept
    private, 0600, was readable by every user of a shared pod after a wizard save or inspect-data --fix)."""
    path = tmp_path / "mine.yaml"
    path.write_text(MINE, encoding="utf-8")
    path.chmod(0o600)
    apply_settings(path, {"training.learning_rate": 2e-4})
    assert load_config(path).training.learning_rate == 2e-4
    assert path.stat().st_mode & 0o777 == 0o600
