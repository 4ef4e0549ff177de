"""README's promise, through the real console entry: bad input -> a message naming the file, line or key, exit 2,
no traceback (issue 24, items 11-16 and 20)."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, run_cli

DEMO_DATA = REPO / "presets" / "demo" / "train.jsonl"


def config(tmp_path: Path, text: str = "", model: str = "lorapilot-demo") -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"model: {model}\ndataset: {{path: {DEMO_DATA}}}\n{text}", encoding="utf-8")
    return f


def refused(r, *expected: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr


def test_dataset_nested_100k_deep(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    refused(run_cli("inspect-data", str(data)), f"{data}:2: arrays or objects nested too deeply")


def test_train_max_steps_negative_detach_is_refused_before_spawning(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli("train", str(config(tmp_path)), "--max-steps", "-7", "--detach", "--run-dir", str(run_dir))
    refused(r, "--max-steps -7: training.max_steps: -7 is out of range")
    assert not run_dir.exists()


def test_values_the_trainer_refuses(tmp_path):
    r = run_cli("estimate", str(config(tmp_path, f"training:\n  seed: {2**40}\n  report_to: [os]\n"
                                                 f"  max_steps: {10**400}\n")))
    refused(r, "training.seed: 1099511627776 is out of range", "training.report_to: 'os' is not allowed",
            "training.max_steps: 1000000")


def test_duplicate_sections(tmp_path):
    r = run_cli("estimate", str(config(tmp_path, "training:\n  seed: 1\ntraining:\n  seed: 2\n")))
    refused(r, "line 5: training: duplicate key (first at line 3)")


def test_alias_bomb_is_refused_at_once(tmp_path):
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"&a{i} [{levels[-1]}, " + ", ".join([f"*a{i - 1}"] * 8) + "]")
    # Before the fix this hung at 3 GB; the timeout is only a hang guard.
    r = run_cli("estimate", str(config(tmp_path, f"training:\n  report_to: {levels[-1]}\n")), timeout=120)
    refused(r, "line 4: training.report_to: anchors and aliases expand to 435,848,050 values")


def test_estimate_on_a_config_json_with_negative_layers(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": -6, '
                                       '"num_attention_heads": 32, "vocab_size": 32000}')
    r = run_cli("estimate", str(config(tmp_path, model=str(model))))
    refused(r, f"{model / 'config.json'}: 1 bad value", "num_hidden_layers: -6 is out of range")
