"""README's promise, through the real console entry: bad input -> a message naming the file, line or key, exit 2,
no traceback (issue 24, items 11-16 and 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, fake_adapter, run_cli, unwrapped

DEMO_DATA = REPO / "presets" / "demo" / "train.jsonl"


def config(tmp_path: Path, text: str = "", model: str = "lorapilot-demo") -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"model: {model}\ndataset: {{path: {DEMO_DATA}}}\n{text}", encoding="utf-8")
    return f


def refused(r, *expected: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in unwrapped(r.stderr), r.stderr
    for text in expected:
        assert text in unwrapped(r.stderr), r.stderr


def test_dataset_nested_100k_deep(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    refused(run_cli("inspect-data", str(data)), f"{data}:2: arrays or objects nested too deeply")


def test_dataset_with_an_image_part(tmp_path):
    """An image part was left out and the answer trained on a question about a picture the model never saw."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}, '
                    '{"type": "text", "text": "What is it?"}]}, {"role": "assistant", "content": "A cat."}]}\n',
                    encoding="utf-8")
    refused(run_cli("inspect-data", str(data)), f'{data}:1: messages[0].content[0] is an image part of type "image_url"')


def test_train_max_steps_negative_detach_is_refused_before_spawning(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli("train", str(config(tmp_path)), "--max-steps", "-7", "--detach", "--run-dir", str(run_dir))
    refused(r, "--max-steps -7: training.max_steps: -7 is out of range")
    assert not run_dir.exists()


def test_train_max_steps_zero_is_refused_not_read_as_unset(tmp_path):
    """--max-steps 0 trained the whole epoch-based run: the plan reads 0 as "not set"."""
    run_dir = tmp_path / "run"
    r = run_cli("train", str(config(tmp_path)), "--max-steps", "0", "--detach", "--run-dir", str(run_dir))
    refused(r, "--max-steps 0: training.max_steps: 0 is out of range; allowed -1 or [1, 10000000]")
    assert not run_dir.exists()


def test_values_the_trainer_refuses(tmp_path):
    r = run_cli("estimate", str(config(tmp_path, f"training:\n  seed: {2**40}\n  report_to: [os]\n"
                                                 f"  max_steps: {10**400}\n")))
    refused(r, "training.seed: 1099511627776 is out of range", "training.report_to: 'os' is not allowed",
            "training.max_steps: 1000000")


def test_settings_that_would_do_nothing_are_refused_with_their_keys(tmp_path):
    """Lean without checkpointing (nothing to offload) and sample prompts without a validation set (no evaluation
    ever samples them) trained as if they were not there; `train` refuses them before a run folder exists."""
    run_dir = tmp_path / "run"
    f = tmp_path / "c.yaml"
    f.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_DATA}, validation_split: 0}}\ntraining: {{memory: "
                 "lean, gradient_checkpointing: false, sample_prompts: [Hi]}\n", encoding="utf-8")
    r = run_cli("train", str(f), "--detach", "--run-dir", str(run_dir))
    refused(r, "training.memory: lean offloads the checkpointed layer inputs",
            "training.sample_prompts: samples are generated at each evaluation")
    assert not run_dir.exists()


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


# ---------------------------------------------------------------- corrupt run records cost their own run only

def fake_run(root: Path, name: str, status: bytes | None) -> Path:
    import json
    import time

    d = root / name
    d.mkdir(parents=True)
    # Valid JSON that is not a record ([1, 2], 5) is skipped as a torn line is.
    (d / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "time": time.time(), "loss": 1.5})
                                     + "\n[1, 2]\n5\n", encoding="utf-8")
    if status is not None:
        (d / "status.json").write_bytes(status)
    return d


CORRUPT_STATUS = {"not JSON": b"{bad", "binary": b"\xff\xfe\x00garbage", "a list": b"[]",
                  "step text": b'{"state": "done", "step": "abc"}', "pid -1": b'{"state": "training", "pid": -1}',
                  "pid 2**70": b'{"state": "training", "pid": 1180591620717411303424}',
                  "updated past a float": b'{"state": "training", "updated": 1' + b"0" * 400 + b"}"}


def corrupt_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    fake_run(root, "good", b'{"state": "done", "step": 1, "max_steps": 1, "pid": null}')
    for i, status in enumerate(CORRUPT_STATUS.values()):
        fake_run(root, f"bad{i}", status)
    sweep = root / "sweep-x"
    sweep.mkdir()
    (sweep / "sweep.json").write_text('{"trials": [{"id": "a"}], "steps": 5, "rungs": [], "grid": {}}')
    return root


def test_list_runs_skips_corrupt_status_and_says_why(tmp_path):
    from engine.rundir import list_runs

    problems: list[str] = []
    runs = list_runs(corrupt_root(tmp_path), problems)
    assert [r.name for r in runs] == ["good"] and runs[0].loss == 1.5
    assert len(problems) == len(CORRUPT_STATUS) and all("status.json" in p for p in problems)
    assert any("pid: -1 is not valid" in p for p in problems)


def test_runs_lists_the_good_and_warns_about_the_bad(tmp_path):
    r = run_cli("runs", "--root", str(corrupt_root(tmp_path)))
    assert r.returncode == 0 and "Traceback" not in unwrapped(r.stderr), r.stderr
    assert "good" in r.stdout and "bad" not in r.stdout
    assert r.stderr.count("lorapilot: warning:") == len(CORRUPT_STATUS) + 1
    assert "sweep-x/sweep.json: trials[0].state: None is not valid; skipped" in unwrapped(r.stderr)


def test_diagnose_with_a_corrupt_status_still_diagnoses_then_exits_2(tmp_path):
    """The findings from metrics.jsonl are still worth printing; the corrupt status.json is named, with where it
    breaks, and the exit is 2 (bad input), as for any corrupt file a verb reads. Lines of metrics.jsonl that are
    not records (what a killed trainer leaves) are a warning with their line numbers."""
    run = fake_run(tmp_path, "r", b'{"state": "done",\n "step": x}')
    for args in ((), ("--json",)):
        r = run_cli("diagnose", str(run), *args)
        refused(r, f"{run / 'status.json'}: not valid JSON (line 2, column 10)",
                f"{run / 'metrics.jsonl'}: 2 lines are not records (lines 2, 3); skipped")
        assert ("1 records" in r.stdout) if not args else r.stdout.startswith("[")
    (run / "status.json").write_bytes(b'{"state": "done", "step": 1}')
    r = run_cli("diagnose", str(run))
    assert r.returncode == 0 and "status.json" not in unwrapped(r.stderr), r.stderr


def test_sweep_on_a_corrupt_sweep_json_names_it(tmp_path):
    root = corrupt_root(tmp_path)
    refused(run_cli("sweep", str(root / "sweep-x")), "sweep.json: trials[0].state: None is not valid")


def piped_to_a_closed_reader(*args: str):
    """The verb's stdout is a pipe whose reader has gone (`| head` after its lines): every write fails."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "tui.entry", *args], cwd=REPO, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write)


def test_runs_and_estimate_into_a_closed_pipe(tmp_path):
    for args in (("runs", "--root", str(corrupt_root(tmp_path))), ("runs", "--json", "--root", str(tmp_path)),
                 ("estimate", str(config(tmp_path)), "--json")):
        r = piped_to_a_closed_reader(*args)
        assert "Traceback" not in unwrapped(r.stderr) and "BrokenPipe" not in unwrapped(r.stderr), r.stderr
        assert r.returncode == 141


# ---------------------------------------------------------------- found by fuzzing the verbs

def test_a_path_too_long_for_the_os(tmp_path):
    long = "x" * 5000
    long_data = tmp_path / "long.yaml"
    long_data.write_text(f"model: lorapilot-demo\ndataset: {{path: {long}}}\n", encoding="utf-8")
    for args in (("inspect-data", long), ("diagnose", long), ("stop", long), ("train", "--resume", long),
                 ("estimate", str(long_data))):
        refused(run_cli(*args), "File name too long")


def test_diagnose_on_a_file_that_is_not_metrics(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(bytes(range(256)) * 20)
    refused(run_cli("diagnose", str(junk)), f"{junk}: not a metrics file")


def test_runs_root_that_is_a_file(tmp_path):
    refused(run_cli("runs", "--root", str(config(tmp_path))), "not a directory")


def test_a_model_directory_without_a_tokenizer(tmp_path):
    from engine.errors import ModelError
    from engine.model import load_tokenizer

    with pytest.raises(ModelError, match=rf"^{tmp_path}: cannot load tokenizer") as e:
        load_tokenizer(str(tmp_path))
    assert "tokenizer.json" in str(e.value.fix)


@pytest.mark.parametrize("model", ["Qwen/Qwen2.5-0.5B", "Qwen2.5-0.5B"])
def test_a_hub_tokenizer_out_of_reach_is_not_blamed_on_a_directory(model):
    """Offline, a hub model's tokenizer not in the cache: the Dataset step said "fix: a model directory needs its
    tokenizer files", of a model that is no directory. The fix says what a hub model needs."""
    from engine.errors import ModelError
    from engine.model import load_tokenizer

    with pytest.raises(ModelError, match="cannot load tokenizer") as e:
        load_tokenizer(model)
    fix = str(e.value.fix)
    assert "directory needs" not in fix and "hub" in fix and "cache" in fix, fix


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)  # a guard only: the retries it replaces took ~50 s offline
def test_a_hub_tokenizer_offline_without_hf_hub_offline_fails_at_once_and_says_why(tmp_path):
    """Offline with HF_HUB_OFFLINE unset, `inspect-data --model owner/name` retried the hub five times (~50 s,
    "Retrying in 8s [Retry 5/5]") before saying the tokenizer was not in the cache: its load did not ask the quick
    check that config.json's read asks. Now every hub read asks it first and reads only the cache when out of reach."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    r = subprocess.run([sys.executable, "-m", "tui.entry", "inspect-data", str(DEMO_DATA), "--model",
                        "lorapilot-test/no-such-model"], cwd=REPO, capture_output=True, text=True, env=env,
                       timeout=280)
    refused(r, "lorapilot-test/no-such-model: cannot load tokenizer: the hub is unreachable (offline?) and the "
               "tokenizer is not in the Hugging Face cache")
    assert "Retry" not in r.stderr, r.stderr


def test_unknown_lora_target_is_refused_before_detaching(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli("train", str(config(tmp_path, "lora: {target_modules: [nonexistent]}\n")), "--detach",
                "--run-dir", str(run_dir))
    refused(r, "lora.target_modules: 'nonexistent' not in a llama model")
    assert not run_dir.exists()


def test_estimate_flags_out_of_range(tmp_path):
    refused(run_cli("estimate", str(config(tmp_path)), "--examples", "-5"), "--examples -5: ", "out of range")
    refused(run_cli("estimate", str(config(tmp_path)), "--price-per-hour", "nan"), "--price-per-hour nan")


def test_chat_on_a_folder_that_is_no_run_says_so_before_loading_anything(tmp_path):
    # It printed "loading the base model and the adapter ..." first, as if the folder were fine.
    r = run_cli("chat", str(tmp_path), "--prompt", "hi")
    refused(r, f"{tmp_path}: not a run directory (no config.yaml)")
    assert "loading" not in unwrapped(r.stderr), r.stderr


def test_every_argument_of_every_verb_has_help():
    """`lorapilot chat -h` listed run_dir and --top-p with nothing beside them; `runs -h` its --json."""
    import argparse

    from engine.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    bare = [f"{verb} {a.option_strings[0] if a.option_strings else a.dest}"
            for verb, parser in verbs.items() for a in parser._actions if not a.help]
    assert bare == []


def ended_run_without_training(tmp_path: Path, status: bytes) -> Path:
    """A run directory as an ended run leaves it (config, adapter, a checkpoint at its last step), with no training."""
    import shutil

    run = fake_run(tmp_path, "ended", status)
    shutil.copy(config(tmp_path), run / "config.yaml")
    fake_adapter(run / "adapter")
    ckpt = run / "checkpoints" / "checkpoint-1"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"max_steps": 1}')
    return run


def test_export_refuses_a_corrupt_status_before_writing(tmp_path):
    """The export's model card reads the steps from status.json: a corrupt one exported "Steps 0 of 0"."""
    run = ended_run_without_training(tmp_path, b'{"state": "done", "step": ')
    out = tmp_path / "out"
    refused(run_cli("export", str(run), "--for", "vllm", "--out", str(out)),
            f"{run / 'status.json'}: not valid JSON (line 1, column 27)", "fix: a running trainer rewrites")
    assert not out.exists()


def test_resume_with_a_corrupt_status_says_so_and_goes_on(tmp_path, monkeypatch):
    """Resuming is what rewrites status.json: the corrupt one is named in a note, not a refusal."""
    from engine.train import launch

    run = ended_run_without_training(tmp_path, b"{bad")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "training: {max_steps: 5}\n")
    monkeypatch.setattr(launch, "_spawn", lambda *a, **k: type("Proc", (), {"pid": 1})())
    monkeypatch.setattr(launch, "_started", lambda *a, **k: None)
    handle = launch.resume_run(run)
    assert f"{run / 'status.json'}: not valid JSON (line 1, column 2); the resumed run writes a new one" in handle.notes


def test_a_truncated_parquet_file_is_said_once(tmp_path):
    pd = pytest.importorskip("pandas")
    data = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a" * 100] * 50}).to_parquet(data)
    data.write_bytes(data.read_bytes()[:600])
    r = run_cli("inspect-data", str(data))
    refused(r, f"{data}: cannot read as PARQUET: Parquet magic bytes not found")
    # datasets logged the same error itself first ("Failed to read schema from ..."), without lorapilot's prefix
    assert "Failed to read schema" not in unwrapped(r.stderr), r.stderr


@pytest.mark.parametrize("verb", [("estimate",), ("sweep", "--dry-run")])
def test_a_dataset_path_that_is_not_there_is_refused_by_the_estimate_and_a_dry_run(tmp_path, verb):
    """Both read the config without reading the data: a typo in the path estimated 'steps unknown: the dataset is
    not a local file' and exited 0; the sweep then refused the same config when asked to start."""
    f = config(tmp_path)
    f.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_DATA}, validation_path: {tmp_path}/vall.jsonl}}\n")
    refused(run_cli(*verb, str(f)), f"{tmp_path}/vall.jsonl: no such file or directory",
            "check dataset.validation_path")
    (tmp_path / "empty").mkdir()
    f.write_text(f"model: lorapilot-demo\ndataset: {{path: {tmp_path}/empty}}\n")
    refused(run_cli(*verb, str(f)), f"{tmp_path}/empty: the directory has no .jsonl")


def test_prepare_on_an_empty_csv_says_so(tmp_path):
    (tmp_path / "a.csv").write_text("")
    refused(run_cli("prepare", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o.jsonl")),
            f"{tmp_path / 'a.csv'}: the CSV file is empty (no header row)")
    assert not (tmp_path / "o.jsonl").exists()


def test_export_of_a_run_directory_that_is_not_there_says_so(tmp_path):
    refused(run_cli("export", str(tmp_path / "nope")), f"{tmp_path / 'nope'}: no such run directory")
    (tmp_path / "f").write_text("x")
    refused(run_cli("export", str(tmp_path / "f")), f"{tmp_path / 'f'}: not a folder")


def test_a_model_that_is_nothing_known_names_the_key(tmp_path):
    """`model: abc` (a typo, a folder not there) was refused as 'abc: not a directory, ...', naming no key: the
    config's line, as it reads (fuzzing every key: the only key the message left out)."""
    refused(run_cli("estimate", str(config(tmp_path, model="abc"))), "model: abc: not a directory")


@pytest.mark.parametrize("text,expected", [
    ("learning_rate: 1.0e-4\n", "learning_rate: unknown key here; did you mean 'training.learning_rate'?"),
    ("training:\n  seed: 042\n", "line 4, column 9: invalid YAML: cannot read '042': a leading 0 makes it octal"),
    ("lora: {target_modules: 'q_proj, v_proj'}\n", "lora.target_modules: 'q_proj, v_proj' is one name"),
    ("run_name: a/b\n", "run_name: 'a/b' is not a plain directory name"),
    ("lora: {target_modules: [nonexistent]}\n", "lora.target_modules: 'nonexistent' not in a llama model"),
    ("lora: {target_modules: all_linear}\n", "lora.target_modules: 'all_linear' is no module name; did you mean "
                                             "'all-linear'?"),
    ("lora: {target_modules: [q_proj, lm_head]}\n", "lora.target_modules: 'lm_head' (the output head) cannot be "
                                                    "adapted: lorapilot puts LoRA adapters on the decoder's linear "
                                                    "layers only"),
], ids=["key in the wrong section", "octal", "names in one text", "run_name a path", "a module the model lacks",
        "all_linear", "the output head"])
def test_estimate_refuses_what_train_would_and_names_the_file(tmp_path, text, expected):
    """Each passed `estimate` (exit 0, or refused without the file's name) and failed only at `train`, or trained with
    what the file did not say (seed 34). A module the model lacks is found once its shapes are read: named with
    the file too."""
    f = config(tmp_path, text)
    refused(run_cli("estimate", str(f)), str(f), expected)


@pytest.mark.parametrize("make,expected", [
    (lambda p: p.mkdir(), "is a directory, expected a YAML config file"),
    (lambda p: p.write_bytes(b"model: x\n\x00\x01\x02"), "is not a text file (expected YAML)"),
    (lambda p: p.write_text("- model: x\n"), "the top level must be a mapping of keys to values, got a list"),
    (lambda p: p.write_text(""), "model: must be set"),
    (lambda p: p.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_DATA}}}\ntraining:\n  seed: [1, 2\n"),
     "line 5, column 1: invalid YAML"),
    (lambda p: p.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_DATA}}}\ntraining: {{max_step: 5}}\n"),
     "training.max_step: unknown key; did you mean 'max_steps'?"),
], ids=["a directory", "binary", "a list", "empty", "syntax error", "unknown key"])
def test_train_on_a_config_that_is_no_config_names_it_and_writes_nothing(tmp_path, make, expected):
    config_path, run_dir = tmp_path / "c.yaml", tmp_path / "run"
    make(config_path)
    refused(run_cli("train", str(config_path), "--detach", "--run-dir", str(run_dir)), f"{config_path}: ", expected)
    assert not run_dir.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("model", ["Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"])
def test_train_offline_on_a_model_not_downloaded_says_what_training_needs(tmp_path, capsys, model):
    """Offline, a preset's short name (as the wizard's list offers it) or its hub id: `train` was told "use a local
    directory holding config.json or a preset name", the estimate's advice. A preset names the shapes, not the
    weights training loads: the message names the hub id and what to do for training."""
    from engine.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", str(config(tmp_path, model=model)), "--detach", "--run-dir", str(run_dir)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "Qwen/Qwen2.5-0.5B" in err and "preset name" not in err, err
    assert "weights" in err and "Traceback" not in err, err
    assert not run_dir.exists()


def test_train_detach_says_data_with_nothing_to_train_and_leaves_nothing_running(tmp_path):
    """Every answer of weight 0: `train --detach` returned 0 and its trainer failed on the data after the detach,
    said only in train.log. The launcher waits until the trainer is past its data checks (the data is tokenized
    once, by the trainer) and says its error, exit 2; the trainer has ended."""
    from engine.rundir import pid_alive, read_status
    from engine.train.launch import WAITING_FOR_DATA

    data = tmp_path / "d.jsonl"
    data.write_text("".join('{"messages": [{"role": "user", "content": "Hi %d"}, '
                            '{"role": "assistant", "content": "Hello.", "weight": 0}]}\n' % i for i in range(8)),
                    encoding="utf-8")
    f = tmp_path / "c.yaml"
    f.write_text(f"model: lorapilot-demo\ndataset: {{path: {data}}}\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    r = run_cli("train", str(f), "--detach", "--run-dir", str(run_dir))
    refused(r, f"run failed: {data}: nothing to train: no training row has a response left to learn",
            "fix: check that the responses", f"log: {run_dir / 'train.log'}")
    assert WAITING_FOR_DATA in unwrapped(r.stdout) and "watch:" not in r.stdout, r.stdout
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["user_error"] is True and not pid_alive(status["pid"]), status
    assert f"error: {data}: nothing to train" in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("user_error", [True, False])
def test_a_run_failed_on_the_users_input_exits_2_whatever_code_its_launcher_ended_with(tmp_path, capsys, user_error):
    """On several GPUs the code is torchrun's (1), not the trainer's 2: a data error under `train --detach` or in the
    foreground exited 1. The trainer records that the failure was the user's input (status.json user_error); the end
    report takes its exit 2 from there. Any other failure stays 1."""
    from engine.cli import _report_end
    from engine.rundir import write_status

    write_status(tmp_path, state="failed", error="d.jsonl: nothing to train", hint="check", user_error=user_error)
    assert _report_end(tmp_path, 1) == (2 if user_error else 1)
    assert "run failed: d.jsonl: nothing to train" in capsys.readouterr().err


def test_the_detach_wait_reads_the_phase_of_this_life_and_is_bounded(tmp_path):
    """A resumed run's status.json keeps its last life's phase ('model') while 'starting': not past the data checks
    yet. A trainer still reading the data at the bound is left going, said so (exit 0: nothing failed)."""
    import io
    import os

    from engine.rundir import write_status
    from engine.train.launch import RunHandle, past_data_checks, wait_for_data_checks

    assert not past_data_checks({"state": "starting", "phase": "model"})
    assert not past_data_checks({"state": "loading", "phase": "data"}) and not past_data_checks({})
    assert past_data_checks({"state": "loading", "phase": "model"}) and past_data_checks({"state": "training"})
    write_status(tmp_path, state="loading", phase="data")
    out = io.StringIO()
    assert wait_for_data_checks(RunHandle(tmp_path, os.getpid()), out, limit_s=0) is None
    assert "still reading the data after 0 minutes: it goes on in the background" in out.getvalue()
