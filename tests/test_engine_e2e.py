"""End to end, for real: QLoRA on the tiny demo model on the CPU, through the real CLI and trainer process."""

from __future__ import annotations

import json
import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest
import yaml

from conftest import DEMO_CONFIG, HUB_TOKEN_MARKER, cache_hub_dataset, run_cli, together, unwrapped
from engine.rundir import MetricsTail, effective_state, read_metrics, read_status

# `slow` marks the tests that train; those reading the shared finished demo run get it in conftest.


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == "train"]


def small_config(tmp_path: Path, **training) -> Path:
    """The demo, shortened: fewer, smaller steps that save often (for stop/resume/kill tests), and no samples:
    no test of these reads them (test_samples reads the demo's own), and under SAMPLE_FREE_S every evaluation
    samples: a fifth of a short run's CPU time."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"].update(dict(max_seq_length=64, micro_batch_size=4, max_steps=16, logging_steps=1,
                                save_steps=4, eval_steps=100, sample_max_new_tokens=0), **training)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def wait_for(pred, timeout: float = 180, what: str = "condition", every: float = 0.3):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def start_detached(run_dir: Path, *train_args: str) -> int:
    """`lorapilot train ARGS --detach` starting a trainer in run_dir; its pid."""
    r = run_cli("train", *train_args, "--detach", timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(run_dir) in r.stdout and "pid" in r.stdout
    return read_status(run_dir)["pid"]


# ------------------------------------------------------------------ the demo run
def test_demo_trains_and_loss_falls(finished_demo_run):
    status = read_status(finished_demo_run)
    assert status["state"] == "done" and status["step"] == 40
    trained_with(finished_demo_run, "nf4")  # the demo is QLoRA's 4-bit
    recs = train_records(finished_demo_run)
    first = sum(r["loss"] for r in recs[:3]) / 3
    last = sum(r["loss"] for r in recs[-3:]) / 3
    assert last < 0.8 * first, (first, last)  # the bar: at least 20 % within 40 steps
    assert all({"learning_rate", "grad_norm", "epoch", "tokens_per_s"} <= r.keys() for r in recs)
    # every trained micro-batch is counted as the trainer takes it (PlannedTrainer.training_step)
    seen = [r["tokens_seen"] for r in recs]
    assert all(r["tokens_per_s"] > 0 for r in recs) and seen == sorted(set(seen)), seen
    evals = [r for r in read_metrics(finished_demo_run) if r["kind"] == "eval"]
    assert len(evals) == 4 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    events = [r["message"] for r in read_metrics(finished_demo_run) if r["kind"] == "event"]
    assert "checkpoint saved" in events and "adapter saved" in events
    # Each pause says when it began, so the monitor's ETA measures it at steps without a train record (engine.eta).
    paused = evals + [r for r in read_metrics(finished_demo_run) if r.get("code") == "checkpoint_saved"]
    assert all(r["time"] - 600 < r["began"] <= r["time"] for r in paused), paused
    saved = yaml.safe_load((finished_demo_run / "config.yaml").read_text())
    assert saved["training"]["learning_rate"] == 3e-3 and saved["lora"]["r"] == 16  # the reproducible record


def test_train_log_reads_as_lorapilot_prints_it(finished_demo_run):
    """train.log is what `tail -f` shows a user in tmux: one line per record in lorapilot's words, not the
    Trainer's dicts, and no deprecation notices about names lorapilot uses."""
    log = (finished_demo_run / "train.log").read_text()
    lines = log.splitlines()
    assert not [ln for ln in lines if ln.startswith("{'")]
    step_lines = [ln for ln in lines if ln.startswith("step ")]
    losses = [r for r in step_lines if "  loss " in r]
    assert len(losses) == len(train_records(finished_demo_run))
    assert sum("eval_loss" in ln for ln in step_lines) == 4 and any("adapter saved" in ln for ln in step_lines)
    assert "gradient_checkpointing" not in log and "past_key_values" not in log
    assert "Loading weights" not in log and "\r" not in log   # no progress bars in a log one tails
    plan = next(ln for ln in lines if "] plan: " in ln)
    assert " over 1 process;" in plan and "(es)" not in plan, plan


def test_adapter_reloads_with_peft_and_changes_the_output(finished_demo_run, demo_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(finished_demo_run / "adapter")
    chat = [{"role": "user", "content": "What is 12 plus 7?"}]
    prompt = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)["input_ids"]
    full = tok.apply_chat_template(chat + [{"role": "assistant", "content": "12 plus 7 is 19."}],
                                   return_tensors="pt", return_dict=True)["input_ids"]
    labels = full.clone()
    labels[:, :prompt.shape[1]] = -100
    base = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    with torch.no_grad():
        before = base(input_ids=prompt).logits[0, -1]
        base_loss = base(input_ids=full, labels=labels).loss
        base_out = base.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    tuned = PeftModel.from_pretrained(base, finished_demo_run / "adapter")
    with torch.no_grad():
        after = tuned(input_ids=prompt).logits[0, -1]
        tuned_loss = tuned(input_ids=full, labels=labels).loss
        out = tuned.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    assert not torch.allclose(before, after, atol=1e-3)
    assert not torch.equal(out, base_out)
    assert tuned_loss < 0.5 * base_loss  # an answer in the demo's style is far more likely with the adapter
    gen = json.loads((finished_demo_run / "adapter" / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]  # stops at the end of its turn


def test_hub_token_is_never_written(finished_demo_run):
    for f in finished_demo_run.rglob("*"):
        if f.is_file():
            assert HUB_TOKEN_MARKER.encode() not in f.read_bytes(), f


def test_runs_lists_the_run(finished_demo_run):
    r = run_cli("runs", "--root", str(finished_demo_run.parent), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    row = next(x for x in rows if x["run_dir"].endswith(finished_demo_run.name))
    assert row["state"] == "done" and row["step"] == 40 and row["loss"] is not None


def test_export_merged_is_the_model_trained_and_chatted_with(finished_demo_run, tmp_path):
    """The playground's model (engine.playground: the base quantised as the trainer loads it, the adapter, eval
    mode) gives the trainer's eval-mode logits exactly (the trainer's own build: load_base_model, add_lora, the saved
    adapter weights); the merged export gives them too, to 1e-4: it is the adapter merged into the NF4 weights
    dequantised, what it trained against. Merged into the original 16-bit (here fp32) weights, as the export did
    before, the logits were off by up to 1.05 on a 6-step demo run (4e-6 into the dequantised weights), where the
    adapter itself moves them by up to 5.0 and NF4 moves the base's by 1.8: a different model, silently."""
    import torch
    from peft import PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from engine.config import load_config
    from engine.model import add_lora, load_base_model, resolve_model_path
    from engine.playground import Playground

    cfg = load_config(finished_demo_run / "config.yaml")
    assert cfg.quantization == "nf4"
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 70]])
    trainer_model = add_lora(load_base_model(cfg.model, cfg.quantization, cfg.training.precision)[0], cfg,
                             gradient_checkpointing=cfg.training.gradient_checkpointing)
    set_peft_model_state_dict(trainer_model, load_file(finished_demo_run / "adapter" / "adapter_model.safetensors"))
    with torch.no_grad():
        trained = trainer_model.eval()(input_ids=ids).logits
        torch.testing.assert_close(Playground(finished_demo_run).model(input_ids=ids).logits, trained,
                                   atol=0, rtol=0)

    r = run_cli("export", str(finished_demo_run), "--merged", str(tmp_path / "merged"))
    assert r.returncode == 0, r.stderr
    assert "dequantised" in r.stderr and "dequantised" in (tmp_path / "merged" / "README.md").read_text()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    original = AutoModelForCausalLM.from_pretrained(resolve_model_path("lorapilot-demo"), dtype=torch.float32)
    onto_original = PeftModel.from_pretrained(original, finished_demo_run / "adapter").merge_and_unload()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, trained, atol=1e-4, rtol=1e-4)
        assert (onto_original(input_ids=ids).logits - trained).abs().max() > 0.05  # what the tolerance tells apart
    r = run_cli("export", str(finished_demo_run), "--out", str(tmp_path / "adapter-copy"))
    assert r.returncode == 0 and (tmp_path / "adapter-copy" / "adapter_model.safetensors").exists()


def test_the_playground_computes_in_the_trainers_dtypes_on_an_fp16_gpu(finished_demo_run, tmp_path):
    """On an fp16 GPU (T4, V100) training computes a quantised base's unquantised weights (norms, embeddings,
    lm_head) in fp32 (peft's kbit preparation); the playground and chat kept them in fp16, its residual stream fp16:
    logits off by 0.0056 on a 6-step demo run, and an overflow where fp32 had room. fp16 is asked for on the CPU
    here, which bitsandbytes computes alike."""
    import shutil

    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from engine.config import load_config
    from engine.model import add_lora, load_base_model
    from engine.playground import Playground

    run = tmp_path / "run"
    shutil.copytree(finished_demo_run, run, ignore=shutil.ignore_patterns("checkpoints", "*.lock"))
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("precision: auto", "precision: fp16"))
    cfg = load_config(config)
    assert cfg.training.precision == "fp16"
    trainer_model = add_lora(load_base_model(cfg.model, cfg.quantization, "fp16")[0], cfg,
                             gradient_checkpointing=cfg.training.gradient_checkpointing)
    set_peft_model_state_dict(trainer_model, load_file(run / "adapter" / "adapter_model.safetensors"))
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 70]])
    with torch.no_grad():
        torch.testing.assert_close(Playground(run).model(input_ids=ids).logits,
                                   trainer_model.eval()(input_ids=ids).logits, atol=0, rtol=0)


# ------------------------------------------------------------------ detach, stop, resume, kill -9
@pytest.mark.slow
def test_a_run_on_a_cached_hub_dataset_records_the_revision_its_load_read(tmp_path):
    """Each checkpoint records the revision of a hub dataset the run read, for a resume to refuse another: it was
    huggingface_hub's refs/main, which the trainer's load does not read. Out of reach, the trainer reads datasets'
    own copy, and the record named no revision (nothing downloaded with huggingface_hub) or another commit's. It
    names the copy the trainer's load read, as train.log's line does."""
    from engine.rundir import CHECKPOINT_RUN_FILE

    rows = [json.loads(line) for line in (DEMO_CONFIG.parent / "demo" / "train.jsonl").read_text().splitlines()[:64]]
    cache_hub_dataset(tmp_path / "datasets", "someone/demo_rows", rows, revision="a" * 40)
    cfg = small_config(tmp_path, max_steps=4, save_steps=4)
    raw = yaml.safe_load(cfg.read_text())
    raw["dataset"]["path"] = "someone/demo_rows"
    cfg.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    r = run_cli("train", str(cfg), "--run-dir", str(run_dir),
                env={"HF_DATASETS_CACHE": str(tmp_path / "datasets"), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    record = json.loads((run_dir / "checkpoints" / "checkpoint-4" / CHECKPOINT_RUN_FILE).read_text())
    assert record["hub_revisions"] == {"someone/demo_rows": "a" * 40}
    assert "someone/demo_rows: HF_HUB_OFFLINE is set: read from the cached copy, revision aaaaaaaaaaaa" in \
        (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_detached_run_stopped_resumed_killed_and_resumed_to_its_end(tmp_path):
    """One run through what happens to runs: it outlives its launcher, is stopped and resumed in the background,
    is killed with -9 between two checkpoints, and resumes from the last one to its end. One chain, not a run
    each: every trainer start (torch, transformers, the model) costs the suite more than these steps."""
    # 120 steps, looked at every 20 ms: with 40 and 0.3 s, a fast machine finished before the stop landed (a
    # stop on the final step ends the run done, not stopped), and the tiny model (20-30 steps a second on a
    # fast 2-core machine) finished before the test caught the trainer between two checkpoints.
    max_steps = 120
    cfg = small_config(tmp_path, max_steps=max_steps, save_steps=4, report_to=["tensorboard"])
    run_dir = tmp_path / "run"
    pid = start_detached(run_dir, str(cfg), "--run-dir", str(run_dir))  # the launcher has exited on return
    assert os.getsid(pid) == pid  # its own session: an SSH drop's SIGHUP does not reach it
    wait_for(lambda: (read_status(run_dir) or {}).get("step", 0) >= 5, what="step 5", every=0.02)
    r = run_cli("stop", str(run_dir))
    assert r.returncode == 0 and "stop requested" in r.stdout
    wait_for(lambda: read_status(run_dir)["state"] in ("stopped", "done", "failed"), what="stop")
    status = read_status(run_dir)
    assert status["state"] == "stopped", status
    stopped_at = status["step"]
    assert (run_dir / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()  # checkpointed on stop

    pid = start_detached(run_dir, "--resume", str(run_dir))
    assert os.getsid(pid) == pid

    def frozen_between_checkpoints() -> bool:
        # Freeze the trainer, then look: killing it right after a checkpoint step would leave nothing to redo.
        os.kill(pid, signal.SIGSTOP)
        last = train_records(run_dir)[-1]["step"]
        if last > stopped_at and last % 4 and last < max_steps:
            return True
        os.kill(pid, signal.SIGCONT)
        return False

    wait_for(lambda: train_records(run_dir)[-1]["step"] > stopped_at, timeout=900, what="the resumed run's steps",
             every=0.02)  # a hang guard: a trainer start took minutes under load
    wait_for(frozen_between_checkpoints, what="a step between two checkpoints", every=0.02)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: effective_state(read_status(run_dir)) == "lost", timeout=30, what="lost state")
    before = train_records(run_dir)
    killed_at = before[-1]["step"]
    ckpt = max(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert stopped_at <= ckpt < killed_at

    r = run_cli("train", "--resume", str(run_dir), timeout=1800)  # a hang guard: 36 s idle, 612 s at load 4.6, >900 s at load 10
    assert r.returncode == 0, r.stderr + (run_dir / "train.log").read_text()[-3000:]
    assert read_status(run_dir)["state"] == "done" and (run_dir / "adapter" / "adapter_model.safetensors").exists()
    raw = [x for x in MetricsTail(run_dir).read_new() if x["kind"] == "train"]
    assert raw[:len(before)] == before  # nothing written before the kill is lost or rewritten
    # every step logged once, none re-done across the stop; those after the kill's checkpoint redone, and read
    # once: the re-run copy supersedes the first
    after = train_records(run_dir)
    assert [x["step"] for x in after] == list(range(1, max_steps + 1))
    assert [x["step"] for x in raw[:len(before)]] == list(range(1, killed_at + 1))
    assert [x for x in after if x["step"] > ckpt] == raw[len(before):]
    seen = [x["tokens_seen"] for x in after]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # the token count continues across both resumes
    events = [x["message"] for x in read_metrics(run_dir) if x["kind"] == "event"]
    assert f"resumed from checkpoint-{stopped_at}" in events and f"resumed from checkpoint-{ckpt}" in events
    assert list(run_dir.rglob("events.out.tfevents.*"))  # TensorBoard logs, as the seeds recommend


# ------------------------------------------------------------------ bad input: exit 2, named culprit, no traceback
def _bad(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in unwrapped(r.stderr) + r.stdout
    for n in needles:
        assert n in unwrapped(r.stderr), (n, r.stderr)


def test_bad_config_values_all_reported(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: lorapilot-demo\ndataset: {path: x.jsonl}\n"
                   "training: {learning_rate: -1, micro_batch_size: 0, lerning_rate: 1}\nlora: {r: 0}\n")
    _bad(run_cli("train", str(cfg)), "training.learning_rate", "training.micro_batch_size", "lora.r",
         "did you mean 'learning_rate'")


def test_missing_model_path(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: ./no/such/model\ndataset: {{path: {DEMO_CONFIG.parent / 'demo/train.jsonl'}}}\n")
    _bad(run_cli("train", str(cfg)), "./no/such/model")


def test_unreachable_hub_model(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: nobody/not-a-model\ndataset: {{path: {DEMO_CONFIG.parent / 'demo/train.jsonl'}}}\n")
    _bad(run_cli("train", str(cfg), env={"HF_HUB_OFFLINE": "1"}), "nobody/not-a-model")


def test_broken_dataset_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: lorapilot-demo\ndataset: {{path: {data}}}\n")
    _bad(run_cli("train", str(cfg)), f"{data}:2")


def test_dataset_of_empty_responses_refused_before_training(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": ""}) + "\n" for i in range(20)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: lorapilot-demo\ndataset: {{path: {data}}}\n")
    r = run_cli("train", str(cfg), "--run-dir", str(tmp_path / "run"))
    _bad(r, "empty.jsonl")
    assert not train_records(tmp_path / "run")  # refused before a single step


def test_wrong_target_module_lists_valid_names(tmp_path):
    cfg = small_config(tmp_path)
    raw = yaml.safe_load(cfg.read_text())
    raw["lora"]["target_modules"] = ["q_prj"]
    cfg.write_text(yaml.safe_dump(raw))
    _bad(run_cli("train", str(cfg), "--run-dir", str(tmp_path / "run")), "q_prj", "q_proj")


def test_resume_of_a_missing_dir(tmp_path):
    _bad(run_cli("train", "--resume", str(tmp_path / "nothing")), "nothing")


def trained_with(run_dir: Path, quantization: str) -> None:
    """The run trained to its end in this quantization and saved its adapter."""
    assert read_status(run_dir)["state"] == "done"
    assert f"quantization {quantization}," in (run_dir / "train.log").read_text()
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_accumulated_micro_batches_equal_one_big_batch(tmp_path, demo_model_dir):  # built before both start
    """DESIGN's accumulation rule: one step of micro-batch 8 equals 4 x micro-batch 2 (loss over the step's tokens).
    Both runs are 16-bit LoRA (quantization none): they are also that quantization's end-to-end test."""
    commands = {}
    for micro, accum in ((8, 1), (2, 4)):
        (tmp_path / f"m{micro}").mkdir()
        cfg = small_config(tmp_path / f"m{micro}", max_steps=3, micro_batch_size=micro,
                           gradient_accumulation_steps=accum, packing=False, save_steps=100)
        # 16-bit LoRA: bitsandbytes' CPU 4-bit kernels round differently per batch shape (~1 % in the
        # gradient norm), which would hide what this test is about: the normalisation.
        raw = yaml.safe_load(cfg.read_text())
        raw["quantization"] = "none"
        raw["lora"]["dropout"] = 0.0  # dropout masks depend on the batch layout
        cfg.write_text(yaml.safe_dump(raw))
        commands[micro] = ("train", str(cfg), "--run-dir", str(tmp_path / f"m{micro}" / "run"))
    logs = {}
    for micro, r in zip(commands, together(*[partial(run_cli, *args) for args in commands.values()])):
        assert r.returncode == 0, r.stderr
        run_dir = tmp_path / f"m{micro}" / "run"
        trained_with(run_dir, "none")
        logs[micro] = train_records(run_dir)
    for a, b in zip(logs[8], logs[2]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3) and a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)


@pytest.mark.slow
def test_int8_trains(tmp_path):
    """8-bit; 4-bit is the demo's own (finished_demo_run), none the accumulation test's."""
    cfg = small_config(tmp_path, max_steps=2, save_steps=100, eval_steps=100)
    raw = yaml.safe_load(cfg.read_text())
    raw["quantization"] = "int8"
    cfg.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    r = run_cli("train", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    trained_with(run_dir, "int8")


def test_resume_of_a_run_at_its_last_step_is_refused_until_max_steps_is_raised(tmp_path):
    """transformers resumed from a checkpoint at max_steps trains one step past it: refused before starting."""
    import json

    from engine.config import load_config
    from engine.rundir import last_checkpoint, write_status
    from engine.train.launch import finished_all_steps

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "checkpoint-40").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-40" / "trainer_state.json").write_text(json.dumps({"global_step": 40}))
    (run_dir / "config.yaml").write_text(small_config(tmp_path, max_steps=40).read_text())
    write_status(run_dir, state="done", step=40, max_steps=40)
    r = run_cli("train", "--resume", str(run_dir))
    _bad(r, "nothing left to train", "step 40 of 40", "training.max_steps")
    assert read_status(run_dir)["state"] == "done"  # the finished run is left as it was
    assert finished_all_steps(read_status(run_dir), 60, last_checkpoint(run_dir)) is None  # more steps configured: a continuation
    assert load_config(run_dir / "config.yaml").training.max_steps == 40


def test_resume_of_a_finished_run_with_a_truncated_status_json_is_still_refused(tmp_path):
    """status.json cut short (a full disk, a copy interrupted) no longer says max_steps: the checkpoint's own
    trainer_state.json does, so the finished adapter is not replaced by a run one step past its end."""
    import json

    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "checkpoint-40"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 40, "max_steps": 40}))
    (run_dir / "config.yaml").write_text(small_config(tmp_path, max_steps=40).read_text())
    (run_dir / "status.json").write_text('{\n "state": "done",\n "step": 40,\n "max_s')
    r = run_cli("train", "--resume", str(run_dir))
    _bad(r, "nothing left to train", "step 40 of 40", "training.max_steps")
    assert (run_dir / "status.json").read_text().endswith('"max_s')  # left as it was
    assert not (run_dir / "checkpoints" / "checkpoint-41").exists()
