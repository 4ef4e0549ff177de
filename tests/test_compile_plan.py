"""training.compile: the plan's rule for compiling the decoder layers (engine.plan.compile_for), the config key, and
the seam: the trainer compiles exactly when the plan says, and evaluation adds no compiled graph."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.plan import COMPILE_MIN_STEPS, Machine, plan_run
from tests.conftest import DEMO_CONFIG, run_cli

GPU = Machine("cuda", "GPU", 80.0)


def cfg_for(**training):
    return config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl"},
                             "training": {"max_seq_length": 2048, **training}})


def plan(machine=GPU, lengths=(400,) * 64, **training):
    return plan_run(cfg_for(**training), machine, lengths=None if lengths is None else list(lengths))


def compile_line(p) -> str:
    (line,) = [x for x in p.lines if x.startswith("compile:")]
    return line


# ------------------------------------------------------------------------------------------------ the rule
def test_auto_compiles_a_long_run_on_one_gpu_on_the_fast_path():
    on = plan(max_steps=COMPILE_MIN_STEPS)
    assert on.compile_layers and on.memory == "fast"
    assert compile_line(on).startswith("compile: decoder layers compiled (1,000 steps")
    assert on.to_dict()["compile_layers"] is True  # status.json's plan carries it
    short = plan(max_steps=COMPILE_MIN_STEPS - 1)
    assert not short.compile_layers
    assert "999 steps, under 1,000: the ~70 s compile would not pay back" in compile_line(short)


def test_compiled_nf4_layers_dequantise_in_the_graph_and_the_estimate_reads_it():
    """RunPlan.graph_dequant: the compiled layers' NF4 weights dequantised by torch ops (engine.train.graph_dequant);
    only NF4 has that path, only compiled layers take it, and the memory estimate counts what it holds."""
    from engine.estimate import read_model_config
    from engine.estimate.memory import GRAPH_DEQUANT_WEIGHTS, memory, shape_for_plan

    on = plan(max_steps=COMPILE_MIN_STEPS)
    assert on.compile_layers and on.graph_dequant and on.to_dict()["graph_dequant"] is True
    assert not plan(max_steps=COMPILE_MIN_STEPS - 1).graph_dequant                  # eager: bitsandbytes' own ops
    int8 = plan_run(config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl"}, "quantization": "int8",
                                      "training": {"max_seq_length": 2048, "max_steps": COMPILE_MIN_STEPS}}),
                    GPU, lengths=[400] * 64)
    assert int8.compile_layers and not int8.graph_dequant
    info = read_model_config("llama-2-7b")
    cfg = cfg_for(max_steps=COMPILE_MIN_STEPS)
    (held,) = [c for c in memory(info.arch, info.params, shape_for_plan(cfg, info.arch, on)).components
               if c.name == "dequantisation buffer"]
    (one,) = [c for c in memory(info.arch, info.params,
                                shape_for_plan(cfg, info.arch, dataclasses.replace(on, graph_dequant=False))).components
              if c.name == "dequantisation buffer"]
    assert held.gib == pytest.approx(GRAPH_DEQUANT_WEIGHTS * one.gib) and "compiled layers" in held.note


@pytest.mark.parametrize("memory,lengths,per_step", [
    ("fast", (400,) * 64, 1),   # the fast path: the whole step in one micro-batch, compiled or not
    # lean: 16 examples of 500 tokens, 8,000 a step, one micro-batch under eager's 8,192 cap; compiled, over
    # 6,144 x LEAN_STRETCH, two: the compile decides how each step is cut and the accumulation count
    ("lean", (500,) * 64, 2),
])
def test_a_resumed_run_replays_the_plan_of_the_run_it_resumes(memory, lengths, per_step):
    """A run of 2,000 steps resumed at step 1,500 (500 left, under COMPILE_MIN_STEPS) keeps its plan: the compile,
    lean's token cap, the micro-batches of every step and their count, which the Trainer multiplies by the
    checkpoint's step to skip the micro-batches already trained. Deciding the compile by the steps left switched it
    off on resume: other kernels and dropout masks from there on, and on lean 8,192 tokens instead of 6,144."""
    from engine.plan import Resumed

    cfg = cfg_for(max_steps=2000, memory=memory)
    ran = plan_run(cfg, GPU, lengths=list(lengths))
    assert ran.compile_layers and ran.micro_batches_per_step == per_step
    if memory == "lean":  # the count really follows the compile here
        assert plan_run(cfg_for(max_steps=2000, memory=memory, compile=False), GPU,
                        lengths=list(lengths)).micro_batches_per_step == 1
    for step in (1500, 1999, 500):
        resumed = plan_run(cfg, GPU, lengths=list(lengths), resumed=Resumed(step=step, optimizer=ran.optimizer))
        assert resumed.to_dict() == ran.to_dict(), step  # status.json's plan: compile, cap, counts, optimizer
        assert resumed.step_plan is not None and ran.step_plan is not None
        assert resumed.step_plan.epochs == ran.step_plan.epochs  # the same examples in the same micro-batches
        assert f"resumed at step {step:,}" in compile_line(resumed)


@pytest.mark.parametrize("machine,training,why", [
    (Machine.for_gpu(None), {}, "(no GPU)"),
    (Machine("cuda", "GPU", 80.0, kernels=False, why_no_kernels="no Triton"), {}, "(no Triton)"),
    (Machine("cuda", "GPU", 80.0, processes=2), {"parallelism": "ddp"}, "(2 processes: compiling is measured on one"),
])
def test_auto_leaves_the_layers_eager_off_the_measured_path_and_says_why(machine, training, why):
    p = plan(machine, max_steps=5000, **training)
    assert not p.compile_layers
    assert why in compile_line(p) and "eager" in compile_line(p)


def test_a_long_lean_run_compiles_at_a_lower_token_cap_and_a_short_one_stays_eager():
    """Lean compiled at 6,144 tokens per micro-batch: 1.21x eager lean's speed for +0.1 GiB (H200, Llama-2-7B,
    user_path-s14-h200-2026-12-04.md); at lean's eager 8,192 it peaked 0.7 GiB higher. The batching line says why."""
    from engine.plan import LEAN_COMPILED_TOKENS_PER_MICROBATCH, LEAN_TOKENS_PER_MICROBATCH

    long = plan(memory="lean", max_steps=5000, lengths=(600,) * 64)   # 9,600 tokens a step: over both caps
    assert long.compile_layers and long.token_budget == LEAN_COMPILED_TOKENS_PER_MICROBATCH
    assert long.largest_microbatch_tokens <= LEAN_COMPILED_TOKENS_PER_MICROBATCH
    assert "than lean's eager layers" in compile_line(long)
    assert any("compiled layers: a lower cap keeps lean's memory" in x for x in long.lines if x.startswith("batching"))
    short = plan(memory="lean", max_steps=500, lengths=(600,) * 64)
    assert not short.compile_layers and short.token_budget == LEAN_TOKENS_PER_MICROBATCH
    assert "under 1,000" in compile_line(short)
    # the user's own compile: true on a short lean run takes the lower cap too (the cap follows the compile)
    forced = plan(memory="lean", max_steps=500, compile=True, lengths=(600,) * 64)
    assert forced.compile_layers and forced.token_budget == LEAN_COMPILED_TOKENS_PER_MICROBATCH


def test_auto_counts_the_plans_own_steps_epochs_and_the_wizards_assumed_lengths_too():
    # the trainer's plan: the data's real lengths, steps from the epochs (16 examples a step)
    assert plan(lengths=[300] * 16 * COMPILE_MIN_STEPS, num_epochs=1).compile_layers
    assert not plan(lengths=[300] * 16 * 500, num_epochs=1).compile_layers
    # the wizard's estimate before the data is tokenized: the rows counted, every row assumed to fill max_seq_length
    cfg = cfg_for(num_epochs=2)
    assumed = plan_run(cfg, GPU, n_examples=8 * COMPILE_MIN_STEPS)
    assert assumed.lengths_from.startswith("assumed") and assumed.max_steps == COMPILE_MIN_STEPS
    assert assumed.compile_layers
    assert not plan_run(cfg, GPU, n_examples=8 * COMPILE_MIN_STEPS - 16).compile_layers
    unknown = plan_run(cfg, GPU)  # neither rows nor max_steps: the run's length is not known
    assert unknown.max_steps is None and not unknown.compile_layers
    assert "steps are unknown" in compile_line(unknown)


def test_true_compiles_wherever_a_gpu_with_triton_is_and_says_where_it_cannot():
    for machine, training in ((GPU, {"max_steps": 10}), (GPU, {"memory": "lean"}),
                              (Machine("cuda", "GPU", 80.0, processes=2), {"parallelism": "ddp"})):
        p = plan(machine, compile=True, **training)
        assert p.compile_layers and "training.compile: true" in compile_line(p)
    cpu = plan(Machine.for_gpu(None), compile=True, max_steps=5000)
    assert not cpu.compile_layers
    assert compile_line(cpu) == "compile: training.compile true has no effect here (no GPU); decoder layers eager"


def test_false_never_compiles():
    p = plan(compile=False, max_steps=5000)
    assert not p.compile_layers and compile_line(p) == "compile: decoder layers eager (training.compile: false)"


# ------------------------------------------------------------------------------------------- the config key
@pytest.mark.parametrize("value,expect", [
    ("on", "training.compile: 'on' is not allowed; one of auto, true, false"),
    ("treu", "(did you mean 'true'?)"),
    (1, "training.compile: expected one of auto, true, false, got 1"),
])
def test_a_bad_compile_value_names_the_key_and_the_choices(value, expect):
    with pytest.raises(ConfigError) as e:
        cfg_for(compile=value)
    (problem,) = e.value.problems
    assert expect in problem, problem


def test_compile_values_round_trip_as_the_config_file_writes_them():
    from engine.config import FIELDS, dump_config
    from engine.config_text import from_raw, to_raw

    assert cfg_for().training.compile == "auto"
    for value in ("auto", True, False):
        spec = FIELDS["training.compile"]
        assert from_raw(spec, to_raw(spec, value)) == value  # the wizard's text box
        assert f"compile: {to_raw(spec, value)}\n" in dump_config(cfg_for(compile=value))


def test_the_cli_refuses_a_bad_compile_value_with_exit_2(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: lorapilot-demo\ndataset: {path: x.jsonl}\ntraining:\n  compile: sometimes\n")
    r = run_cli("estimate", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "training.compile: 'sometimes' is not allowed; one of auto, true, false" in r.stderr


def test_a_resume_may_change_compile_and_older_checkpoints_resume_without_a_change(tmp_path):
    from engine.config import Config
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import config_changes, run_record

    cfg = Config(model="m")
    cfg.dataset.path = str(tmp_path / "d.jsonl")
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    record = run_record(cfg, "adamw_torch")
    del record["config"]["training.compile"]  # written before the key existed: it trained with the default
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(record))
    assert config_changes(ckpt, cfg, "c.yaml") == []
    cfg.training.compile = False  # speed only: nothing in the checkpoint depends on it
    assert config_changes(ckpt, cfg, "c.yaml") == ["training.compile 'auto' -> false"]


# ---------------------------------------------------------------------------------------------------- the seam
def _counting(graphs: list):
    """aot_eager (inductor's C++ build takes minutes on 2 cores), keeping for each graph dynamo hands it whether grad
    was on: training compiles with it, a no_grad evaluation would compile a second family without it."""
    import torch
    from torch._dynamo.backends.registry import lookup_backend

    aot_eager = lookup_backend("aot_eager")

    def backend(gm, example_inputs):
        graphs.append(torch.is_grad_enabled())
        return aot_eager(gm, example_inputs)
    return backend


@pytest.mark.slow
def test_the_trainer_compiles_exactly_when_the_plan_says_and_evaluates_eagerly(demo_model_dir, tmp_path, monkeypatch):
    import torch
    import yaml

    from engine.train import compiled_layers, run
    from engine.train.compiled_layers import decoder_layers, is_compiled
    from engine.train.signals import StopFlag

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"].update(max_steps=2, eval_steps=1, logging_steps=1, save_steps=100, sample_max_new_tokens=2)
    cfg = config_from_dict(raw)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    inputs = run.load(cfg, run_dir, resume=False, data=None, tokenizer=None)
    planned = run.plan_here(cfg, inputs, run_dir)
    # the CPU demo as ever: no GPU, no compile, and status.json's plan says so
    assert not planned.compile_layers
    assert json.loads((run_dir / "status.json").read_text())["plan"]["compile_layers"] is False
    eager = run.build_model(cfg, inputs, planned)
    assert eager.fallback is None and not any(is_compiled(m) for m in decoder_layers(eager.model))

    graphs: list[bool] = []
    monkeypatch.setattr(compiled_layers, "BACKEND", _counting(graphs))
    torch._dynamo.reset()
    compiling = dataclasses.replace(planned, compile_layers=True)  # what the plan says on a GPU for a long run
    built = run.build_model(cfg, inputs, compiling)
    layers = decoder_layers(built.model)
    assert built.fallback is not None and layers and all(is_compiled(m) for m in layers)
    assembled = run.build_trainer(cfg, run_dir, inputs, compiling, built, resume=False, stop=StopFlag(run_dir),
                                  callbacks=())
    run.run_training(assembled, n_ranks=1)  # two steps, each followed by an evaluation (and its samples)
    assert built.fallback.failed is None and built.fallback.checked  # the layers really trained compiled
    evals = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert len(evals) == 2
    assert graphs and all(graphs), graphs  # every graph compiled with grad on: evaluation added none
    assert all(is_compiled(m) for m in layers)  # and the layers are compiled again after it
    n = len(graphs)
    assembled.trainer.evaluate()
    assert len(graphs) == n
    # The check can fail: the same forward under no_grad outside evaluation compiles a graph without grad.
    built.model.eval()
    with torch.no_grad():
        built.model(input_ids=torch.tensor([[5, 6, 7, 8]]), position_ids=torch.tensor([[0, 1, 2, 3]]))
    assert len(graphs) > n and graphs[-1] is False


@pytest.mark.slow
def test_a_resumed_run_plans_on_a_gpu_what_it_planned_when_it_started(finished_demo_run, tmp_path, monkeypatch):
    """The trainer's plan phase (run.plan_here) from a real run directory and its real checkpoint, on a GPU with
    Triton described (the token caps and the compile apply only there): resuming, status.json's plan and the
    micro-batches are the ones of the run's start. A lean run of 1,000 steps resumed at its checkpoint has fewer
    than COMPILE_MIN_STEPS left."""
    import shutil

    import yaml

    from engine.model import Hardware
    from engine.rundir import checkpoint_step, usable_checkpoint
    from engine.train import run

    run_dir = tmp_path / "run"
    shutil.copytree(finished_demo_run, run_dir)  # the fixture is shared: plan_here writes status.json
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw["training"].update(memory="lean", max_steps=COMPILE_MIN_STEPS)
    cfg = config_from_dict(raw)
    ckpt, _ = usable_checkpoint(run_dir)
    assert ckpt and 0 < checkpoint_step(ckpt) < COMPILE_MIN_STEPS
    monkeypatch.setattr("engine.train.speed.liger_available", lambda device: (True, ""))
    monkeypatch.setattr("engine.estimate.detect_gpu", lambda: None)
    inputs = run.load(cfg, run_dir, resume=True, data=None, tokenizer=None)
    inputs = dataclasses.replace(inputs, hw=Hardware("cuda", "NVIDIA H200", True, (9, 0), 1, 139.0))

    started = run.plan_here(cfg, inputs, run_dir)
    planned = json.loads((run_dir / "status.json").read_text())["plan"]
    assert started.compile_layers and planned["memory"] == "lean" and planned["compile_layers"] is True
    # the GPU described but none to name (NVML answers nothing): no estimate, rather than this CPU's time for it
    assert json.loads((run_dir / "status.json").read_text())["estimate"] is None
    resumed = run.plan_here(cfg, inputs, run_dir, ckpt=ckpt)
    assert json.loads((run_dir / "status.json").read_text())["plan"] == planned
    assert resumed.step_plan is not None and started.step_plan is not None
    assert resumed.step_plan.epochs == started.step_plan.epochs


@pytest.mark.slow
def test_the_trainer_writes_the_estimates_memory_peak_for_the_monitor_resumed_too(finished_demo_run, tmp_path,
                                                                                  monkeypatch):
    """status.json's estimate carries the plan's peak as the allocator counts it (what the trainer's
    gpu_peak_alloc_gib measures), so that the monitor sets like beside like; a resume keeps it (the same plan) but
    has no time of the whole run."""
    import shutil

    import yaml

    from engine.estimate import get_gpu
    from engine.model import Hardware
    from engine.rundir import usable_checkpoint
    from engine.train import run
    from tui.models.run_history import RunHistory

    run_dir = tmp_path / "run"
    shutil.copytree(finished_demo_run, run_dir)
    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    ckpt, _ = usable_checkpoint(run_dir)
    monkeypatch.setattr("engine.estimate.detect_gpu", lambda: get_gpu("h200"))
    inputs = run.load(cfg, run_dir, resume=True, data=None, tokenizer=None)
    inputs = dataclasses.replace(inputs, hw=Hardware("cuda", "NVIDIA H200", True, (9, 0), 1, 139.0))
    for resumed in (None, ckpt):
        run.plan_here(cfg, inputs, run_dir, ckpt=resumed)
        written = json.loads((run_dir / "status.json").read_text())["estimate"]
        assert 0 < written["peak_allocated_gib"] < written["device_total_gib"] < 139, written
        assert ("time_s" in written) == (resumed is None), written
        h = RunHistory(str(run_dir))
        h.status = json.loads((run_dir / "status.json").read_text())
        assert h.estimated_peak_gib() == written["peak_allocated_gib"]
