"""A base model not in the local Hugging Face cache is downloaded before the run starts: the estimate, the wizard and
the sweep's plan say so with its size (the checkpoint's bytes by the start-up's rule), and say nothing for a model in
the cache or in a local directory. The cache is looked up on disk only: these tests cut the network off."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from engine.estimate import command
from engine.estimate.hub_cache import weights_cached
from engine.estimate.timing import checkpoint_bytes, startup_seconds
from tests.conftest import DEMO_CONFIG

REPO_ID = "meta-llama/Meta-Llama-3-8B"   # the llama-3-8b preset: its size without any hub access
COMMIT = "a" * 40
SHARDS = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
LINE = "+ download 16.1 GB first (not in the local cache)"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own, and no network: a connection attempt fails the test."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError(f"the cache check tried the network: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


def cache_files(cache, files: dict[str, str], repo_id: str = REPO_ID) -> None:
    """Files into the cache the way huggingface_hub lays them out: refs/main names the snapshot holding them."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)


def index_json(shards: list[str]) -> str:
    return json.dumps({"metadata": {}, "weight_map": {f"layer.{i}": s for i, s in enumerate(shards)}})


@pytest.fixture
def preset_config(tmp_path):
    path = tmp_path / "l3.yaml"
    path.write_text(yaml.safe_dump({"model": REPO_ID, "dataset": {"path": str(DEMO_CONFIG.parent / "demo" /
                                                                               "train.jsonl")}}))
    return path


def estimate_cli(path, capsys, *flags) -> str:
    assert command.main([str(path), "--gpu", "h200", "--examples", "2000", *flags]) == 0
    return capsys.readouterr().out


def test_a_model_missing_from_the_cache_is_a_download_stated_beside_the_time(hf_cache, preset_config, capsys):
    table = estimate_cli(preset_config, capsys)
    assert LINE in table
    lines = table.splitlines()
    assert lines[[i for i, line in enumerate(lines) if line.startswith("time ")][0] + 1].strip() == LINE
    out = json.loads(estimate_cli(preset_config, capsys, "--json"))
    # the bytes the start-up reads, by the same rule: 2 a parameter for a checkpoint that names no dtype
    assert out["download_bytes"] == checkpoint_bytes(out["params_total"]) == 2 * out["params_total"]
    # not priced in seconds: the time is the same whether the weights are cached or not
    cache_files(hf_cache, {"model.safetensors": "weights"})
    cached = json.loads(estimate_cli(preset_config, capsys, "--json"))
    assert cached["download_bytes"] == 0 and cached["time_s"] == out["time_s"]
    assert "+ download" not in estimate_cli(preset_config, capsys)


@pytest.mark.parametrize("files,cached", [
    ({}, False),
    ({"config.json": "{}"}, False),                                          # config only: the estimate's own read
    ({"model.safetensors": "w"}, True),
    ({"model.safetensors.index.json": index_json(SHARDS), **dict.fromkeys(SHARDS, "w")}, True),
    ({"model.safetensors.index.json": index_json(SHARDS), **dict.fromkeys(SHARDS[:3], "w")}, False),  # a partial
    ({"model.safetensors.index.json": "not json", **dict.fromkeys(SHARDS, "w")}, False),
    # nested past the parser's recursion (RecursionError): the estimate ended in a traceback
    ({"model.safetensors.index.json": "[" * 100_000, **dict.fromkeys(SHARDS, "w")}, False),
    ({"model.safetensors.index.json": index_json(["../../escape.safetensors"])}, False),
    ({"pytorch_model.bin": "w"}, True),
], ids=["empty", "config-only", "single", "all-shards", "missing-shard", "bad-index", "nested-index", "escaping-index",
        "bin"])
def test_the_weights_count_as_cached_only_when_every_file_the_trainer_loads_is_there(hf_cache, files, cached,
                                                                                   monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)   # the check needs no offline mode to stay off the network
    if files:
        cache_files(hf_cache, files)
    assert weights_cached(REPO_ID) is cached


def test_a_dangling_link_left_by_a_removed_blob_is_not_cached(hf_cache):
    cache_files(hf_cache, {})
    (hf_cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors").symlink_to(
        hf_cache / "blobs-gone")
    assert not weights_cached(REPO_ID)


def test_a_local_model_directory_never_shows_a_download(hf_cache, demo_model_dir, tmp_path, capsys):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["model"] = str(demo_model_dir)
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert command.main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["download_bytes"] == 0
    assert command.main([str(path)]) == 0
    assert "+ download" not in capsys.readouterr().out


def test_a_float32_checkpoint_is_twice_the_bytes_to_download_and_to_read():
    from engine.estimate.model_config import model_info_from_config
    from engine.estimate.presets import find_model_preset

    config = dict(find_model_preset("llama-3-8b")["config"])
    info16 = model_info_from_config("x/y", config, "hub")
    info32 = model_info_from_config("x/y", {**config, "torch_dtype": "float32"}, "hub")
    assert info16.dtype is None and info32.dtype == "float32"
    assert checkpoint_bytes(info32.param_count, info32.dtype) == 2 * checkpoint_bytes(info16.param_count, None)
    assert model_info_from_config("x/y", {**config, "dtype": "bfloat16"}, "hub").dtype == "bfloat16"
    # the start-up reads those bytes too (one rule)
    gap = startup_seconds(info32.param_count, 0, "cuda", "float32") - startup_seconds(info16.param_count, 0, "cuda")
    assert gap == pytest.approx(2 * info16.param_count / 1e9)


def test_the_sweep_plan_says_the_first_trial_downloads_and_the_others_reuse_the_cache(hf_cache, preset_config,
                                                                                         capsys):
    from engine.cli import main

    argv = ["sweep", str(preset_config), "--gpu", "h200", "--dry-run", "--budget-minutes", "600"]
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())   # the lines wrap at 80 columns
    assert ("+ download 16.1 GB before the first trial (not in the local cache); the trials after it reuse the "
            "cache") in text
    assert "the plan fits, the download apart" in text
    cache_files(hf_cache, {"model.safetensors": "w"})
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "+ download" not in text and "the plan fits\n" in text


async def test_the_wizards_review_states_the_download_and_drops_it_for_a_local_directory(hf_cache, demo_model_dir):
    from tui.app import LorapilotApp
    from wizard_pilot import settle

    app = LorapilotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.wizard.set_raw("model", REPO_ID)
        await settle(app, pilot)
        for _ in range(3):
            await pilot.press("ctrl+n")
            await settle(app, pilot)
        assert LINE in str(app.screen.query_one("#plan").render())
        app.wizard.set_raw("model", str(demo_model_dir))
        await settle(app, pilot)
        assert "+ download" not in str(app.screen.query_one("#plan").render())


def test_the_sweep_predicts_later_trials_from_trials_that_did_not_download(hf_cache, tmp_path):
    """The first trial's wall time holds the base model's download, which the trials after it never make: a sweep
    that predicted from it would think every later trial minutes longer and skip some under a budget."""
    from engine.config import load_config
    from engine.sweep.driver import Driver
    from engine.sweep.sweepdir import write_sweep

    base = load_config(DEMO_CONFIG).to_dict() | {"model": REPO_ID}
    trials = [{"id": f"t{i}", "learning_rate": 1e-4, "r": 8, "alpha": 16, "state": "pending"} for i in range(4)]
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    write_sweep(sweep_dir, {"base_config": base, "steps": 6, "rungs": [], "lanes": 1, "halving": False,
                            "plan": {"trial_s": 100.0, "download_bytes": 16_060_522_496}, "trials": trials})
    driver = Driver(sweep_dir)
    assert driver._base_not_cached()           # the first trial starts while the weights are missing
    driver.trials["t0"].update(state="done", seconds=900.0, fetches_base=True)
    driver._measured(driver.trials["t0"])
    assert driver._predicted_trial_s() == 100.0   # the estimate stands: no trial has been timed without a download
    cache_files(hf_cache, {"config.json": "{}", "model.safetensors": "w"})
    assert not driver._base_not_cached()       # the second trial reads the cache
    driver.trials["t1"].update(state="done", seconds=120.0)
    driver._measured(driver.trials["t1"])
    assert driver._predicted_trial_s() == 120.0


def test_a_local_or_cached_base_is_never_looked_up_by_the_sweep(tmp_path, monkeypatch):
    from engine.config import load_config
    from engine.sweep.driver import Driver
    from engine.sweep.sweepdir import write_sweep

    (tmp_path / "sw").mkdir()
    write_sweep(tmp_path / "sw", {"base_config": load_config(DEMO_CONFIG).to_dict(), "steps": 6, "rungs": [],
                                  "lanes": 1, "halving": False, "plan": {"download_bytes": 0}, "trials": []})
    monkeypatch.setattr("engine.estimate.hub_cache.weights_cached", lambda repo: pytest.fail("looked up"))
    assert not Driver(tmp_path / "sw")._base_not_cached()
