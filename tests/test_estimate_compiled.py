"""The estimate of a plan that compiles its decoder layers (RunPlan.compile_layers): the compiled path's measured
rate, the compile's own time once, and the memory the compiled layers add, each where the user reads it; an eager
plan's estimate carries none of it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.config import config_from_dict
from engine.estimate import get_gpu, read_model_config
from engine.estimate.command import render
from engine.estimate.estimator import compute
from engine.estimate.memory import GIB, GRAPH_DEQUANT_WEIGHTS, plan_fits
from engine.estimate.speed_table import path_of, speed_basis, speed_rows
from engine.plan import COMPILE_IN_GRAPH_CHECKPOINT_S, COMPILE_LAYERS_S
from engine.plan import LEAN_COMPILED_TOKENS_PER_MICROBATCH, Machine, plan_run

H200 = get_gpu("h200-141")
LENGTHS = [420] * 2000       # 2,000 alpaca-like examples: 125 steps of 16 an epoch, one micro-batch a step


def _cfg(model: str = "llama-2-7b", **training):
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                             "training": {"max_seq_length": 2048, "num_epochs": 8, **training}})


def _both(cfg, gpu=H200, mask_free: bool | None = None):
    """(eager, compiled) estimates of one plan, differing only in compile_layers and what comes with it: NF4 weights
    dequantised in the compiled graph (RunPlan.graph_dequant) and LoRA dropout without saved masks
    (RunPlan.mask_free_dropout, compiled layers only)."""
    info = read_model_config(cfg.model)
    plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=LENGTHS, info=info)
    eager_plan = replace(plan, compile_layers=False, graph_dequant=False, mask_free_dropout=False)
    compiled_plan = replace(plan, compile_layers=True, graph_dequant=cfg.quantization == "nf4",
                            mask_free_dropout=cfg.lora.dropout > 0 if mask_free is None else mask_free)
    return (compute(cfg, info, gpu, plan=eager_plan, lengths=LENGTHS),
            compute(cfg, info, gpu, plan=compiled_plan, lengths=LENGTHS))


def _names(est):
    return [c.name for c in est.components]


def test_path_of_reads_the_plans_compile_flag():
    assert path_of("fast", True, False) == "packed"
    assert path_of("fast", True, True) == "compiled"
    # compiled layers are measured on the packed path only: lean and padded keep their own rate
    assert path_of("lean", True, True) == "lean_compiled" and path_of("lean", True, False) == "lean"
    assert path_of("fast", False, True) == "padded"


def test_the_compiled_rows_are_todays_h200_measurements():
    # the compiled path as it runs since session 12 (fused AdamW, trimmed guards): user_path-s12-h200-2026-12-03.md;
    # session 13's, with and without the weights dequantised in the graph: user_path-s13-h200-2026-12-04.md
    # session 14's pairs over 60 steady steps: user_path-s14-h200-2026-12-04.md; session 15's, with flex and with
    # varlen attention (the default since): user_path-s15-h200-2026-12-04.md; session 16's Llama-3-8B with varlen:
    # user_path-s16-h200-2026-12-04.md; session 18's pairs on both: user_path-s18-h200-2026-12-05.md
    compiled = {(r.model, r.tokens_per_s) for r in speed_rows() if r.path == "compiled" and r.gpu == "h200-141"}
    assert compiled == {("llama-2-7b", 10131), ("llama-2-7b", 9099), ("llama-2-7b", 9956), ("llama-2-7b", 10333),
                        ("llama-3-8b", 9377), ("llama-2-7b", 10120), ("llama-3-8b", 9360), ("llama-2-7b", 10289),
                        ("llama-2-7b", 10157), ("llama-2-7b", 10556), ("llama-2-7b", 10390), ("llama-3-8b", 9812),
                        ("llama-2-7b", 10643), ("llama-3-8b", 10001)}
    packed_h200 = {(r.model, r.tokens_per_s) for r in speed_rows() if r.path == "packed" and r.gpu == "h200-141"}
    assert {("llama-2-7b", 7891), ("llama-3-8b", 7195), ("llama-2-7b", 8411)} <= packed_h200   # beside 8,654 / 8,168
    basis = speed_basis(H200, "compiled", "nf4")
    assert basis.measured and basis.text == "measured on H200" and {r.path for r in basis.rows} == {"compiled"}
    assert basis.fraction > speed_basis(H200, "packed", "nf4").fraction


def test_the_h100_measured_the_compiled_and_lean_compiled_paths_with_both_dropouts():
    """user_path-s20-h100-2026-12-06.md: the mask-free LoRA dropout beside peft's, each pair side by side; and
    user_path-s23-h100-2026-12-06.md: the default since, the first layers checkpointing inside their graph; and
    user_path-s24-h100-2026-12-06.md: the default, the default before and lean beside the best stack."""
    h100 = {(r.path, r.model, r.tokens_per_s) for r in speed_rows() if r.gpu == "h100-80" and "compiled" in r.path}
    assert h100 == {("compiled", "llama-2-7b", 10495), ("compiled", "llama-2-7b", 10450),
                    ("compiled", "llama-3-8b", 9666), ("compiled", "llama-3-8b", 9496),
                    ("compiled", "llama-2-7b", 11054), ("compiled", "llama-3-8b", 9818),
                    ("compiled", "llama-2-7b", 10843), ("compiled", "llama-2-7b", 10944),
                    ("compiled", "llama-2-7b", 10707), ("compiled", "llama-3-8b", 9866),
                    ("lean_compiled", "llama-2-7b", 7762), ("lean_compiled", "llama-2-7b", 7670),
                    ("lean_compiled", "llama-2-7b", 7628)}
    for path in ("compiled", "lean_compiled"):
        basis = speed_basis(get_gpu("h100-80"), path, "nf4")
        assert basis.measured and basis.text == "measured on H100" and {r.path for r in basis.rows} == {path}
    # one chip (the H200 has more, faster memory): the H100's compiled rate within 5 % of the H200's
    assert speed_basis(get_gpu("h100-80"), "compiled", "nf4").fraction == pytest.approx(
        speed_basis(H200, "compiled", "nf4").fraction, rel=0.05)


def test_a_card_without_compiled_rows_takes_its_packed_rate_times_the_measured_gain():
    gain = speed_basis(H200, "compiled", "nf4").fraction / speed_basis(H200, "packed", "nf4").fraction
    assert 1.05 < gain < 1.25      # 1.14x, 1.18x, 1.19x paired; 1.13x over the means of the card's rows
    # a card without rows of its own borrows the nearest card's rates, the compiled gain with them (the H100's)
    h100 = get_gpu("h100-80")
    gain = speed_basis(h100, "compiled", "nf4").fraction / speed_basis(h100, "packed", "nf4").fraction
    packed = speed_basis(get_gpu("t4"), "packed", "nf4")
    compiled = speed_basis(get_gpu("t4"), "compiled", "nf4")
    assert compiled.fraction == pytest.approx(packed.fraction * gain)
    assert not compiled.measured and compiled.text.startswith("not measured on T4: assumes the H100's")
    assert f"compiled layers not measured on T4: x{gain:.2f}, their gain on H100" in compiled.text


def test_a_compiled_plan_is_timed_at_the_compiled_rate_plus_the_compile_once():
    eager, compiled = _both(_cfg())
    assert eager.plan.max_steps >= 1000 and eager.train_flops == compiled.train_flops
    ratio = speed_basis(H200, "packed", "nf4").fraction / speed_basis(H200, "compiled", "nf4").fraction
    # the start-up (the same model, the same data) apart: the steps, evaluations and saves at the compiled rate
    assert compiled.startup_s == eager.startup_s > 0
    assert compiled.time_s - compiled.startup_s == pytest.approx(
        (eager.time_s - eager.startup_s) * ratio + compiled.compile_s, rel=1e-9)
    # one compiled class, and the first layers' own when they checkpoint inside their graph (Llama-2-7B's first 10)
    assert compiled.plan.checkpoint_in_graph_layers == 10
    assert compiled.compile_s == compiled.plan.compile_s == COMPILE_LAYERS_S + COMPILE_IN_GRAPH_CHECKPOINT_S == 90
    assert eager.compile_s == 0
    assert compiled.time_s < eager.time_s      # 1,000 steps pay the compile back many times
    assert compiled.time_basis_detail.startswith("the packed path with compiled decoder layers on H200")
    assert compiled.time_basis_detail.endswith("; includes ~90 s compiling the layers before the first step")
    assert "compil" not in eager.time_basis_detail


def test_compiled_layers_on_a_path_without_their_rows_say_so():
    eager, compiled = _both(_cfg(packing=False))
    assert compiled.time_s == pytest.approx(eager.time_s + compiled.plan.compile_s) and compiled.plan.compile_s > 0
    assert "compiled layers on this path not measured: timed at its eager rate" in compiled.time_basis_detail


def test_lean_compiled_is_timed_at_its_own_measured_rate():
    """Lean with compiled layers (a long run's lean plan) measured on the H200 at 6,144 tokens per micro-batch
    (user_path-s14-h200-2026-12-04.md with flex attention, user_path-s16-h200-2026-12-04.md and
    user_path-s18-h200-2026-12-05.md with varlen); a card that did not measure it takes its lean rate times that gain."""
    rows = {(r.gpu, r.model, r.tokens_per_s) for r in speed_rows() if r.path == "lean_compiled" and r.gpu == "h200-141"}
    assert rows == {("h200-141", "llama-2-7b", 6091), ("h200-141", "llama-2-7b", 6780), ("h200-141", "llama-2-7b", 6537)}
    gain = speed_basis(H200, "lean_compiled", "nf4").fraction / speed_basis(H200, "lean", "nf4").fraction
    assert 1.1 < gain < 1.35        # 6,091, 6,780 and 6,537 against eager lean's 5,018 and 5,227 tok/s
    a100 = speed_basis(get_gpu("a100-80"), "lean_compiled", "nf4")   # borrowed from the H100, which measured both
    assert a100.fraction == pytest.approx(speed_basis(get_gpu("h100-80"), "lean_compiled", "nf4").fraction)
    assert not a100.measured and "compiled layers not measured on A100" in a100.text
    plan = plan_run(_cfg(memory="lean"), Machine.for_gpu(H200), lengths=LENGTHS, info=read_model_config("llama-2-7b"))
    assert plan.compile_layers and plan.max_steps >= 1000
    est = compute(_cfg(memory="lean"), read_model_config("llama-2-7b"), H200, plan=plan, lengths=LENGTHS)
    assert est.time_basis_detail.startswith("memory: lean with compiled decoder layers on H200")
    assert "not measured" not in est.time_basis_detail and est.compile_s == COMPILE_LAYERS_S


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-3-8b"])
def test_the_compiled_layers_memory_is_its_own_component_in_the_peak_and_the_fit(model):
    eager, compiled = _both(_cfg(model), mask_free=False)    # the dropout's saving apart (its own test below)
    info = read_model_config(model)
    term = next(c for c in compiled.components if c.name == "compiled layers")
    tokens = compiled.tokens_per_microbatch
    assert term.in_peak and term.gib == pytest.approx(2 * tokens * info.arch.intermediate * 2 / GIB)
    assert f"{info.arch.intermediate:,} (MLP width) x {tokens:,} tokens" in term.note
    held = [c.gib for est in (eager, compiled) for c in est.components if c.name == "dequantisation buffer"]
    assert held[1] == pytest.approx(GRAPH_DEQUANT_WEIGHTS * held[0])    # the weights dequantised in the graph
    assert compiled.peak_allocated_gib == pytest.approx(eager.peak_allocated_gib + term.gib + held[1] - held[0])
    assert compiled.need_gib > eager.need_gib
    assert _names(compiled) == _names(eager)[:_names(eager).index("dequantisation buffer") + 1] + \
        ["compiled layers"] + _names(eager)[_names(eager).index("dequantisation buffer") + 1:]
    # the fit verdict and the plan's own fit test count it: a card between the two needs fits one, not the other
    card = (eager.need_gib + compiled.need_gib) / 2 / 0.9
    cfg = _cfg(model)
    assert plan_fits(cfg, info, eager.plan, card) and not plan_fits(cfg, info, compiled.plan, card)
    small = replace(H200, memory_gib=card)
    assert compute(cfg, info, small, plan=eager.plan).fits is True
    assert compute(cfg, info, small, plan=compiled.plan).fits is False


def test_lorapilot_estimate_shows_the_compiled_plan_and_nothing_of_it_for_an_eager_one():
    eager, compiled = _both(_cfg())
    info = read_model_config("llama-2-7b")
    shown = render(compiled, info, 2000, True)
    assert ", decoder layers compiled" in shown and " compiled layers " in shown
    assert "includes ~90 s compiling the layers before the first step" in shown
    plain = render(eager, info, 2000, True)
    assert "compil" not in plain
    assert "compil" not in str(eager.to_dict()).replace("'compile_layers': False", "")
    assert "dequantised inside the compiled layers" in shown and "graph_dequant': True" in str(compiled.to_dict())


def test_the_wizards_breakdown_and_time_line_show_the_compiled_plan():
    from tui.screens.review import ReviewScreen
    from tui.widgets.vram_bar import segments

    eager, compiled = _both(_cfg())
    assert "compiled layers" in [name for name, _, _ in segments(compiled)]
    assert "compiled layers" not in [name for name, _, _ in segments(eager)]
    assert ReviewScreen._compile_words(compiled.compile_s) == \
        "; includes ~90 s compiling the layers before the first step"
    assert ReviewScreen._compile_words(eager.compile_s) == ""


# ------------------------------------------------------------------- through the plan's own rule (engine.plan)
def test_the_plans_rule_compiles_a_long_run_and_the_estimate_follows_it():
    """training.compile auto on an H200: 1,000 steps compile (the compiled rate, the compile once, the memory term),
    999 stay eager and their estimate is the eager one."""
    from engine.estimate import estimate
    from engine.plan import COMPILE_MIN_STEPS

    info = read_model_config("llama-2-7b")
    long = estimate(_cfg(), info, H200, lengths=LENGTHS)
    short = estimate(_cfg(num_epochs=1, max_steps=COMPILE_MIN_STEPS - 1), info, H200, lengths=LENGTHS)
    assert long.plan.max_steps == COMPILE_MIN_STEPS and long.plan.compile_layers
    assert not short.plan.compile_layers
    eager_plan = compute(_cfg(), info, H200, plan=replace(long.plan, compile_layers=False, graph_dequant=False),
                         lengths=LENGTHS)
    ratio = speed_basis(H200, "packed", "nf4").fraction / speed_basis(H200, "compiled", "nf4").fraction
    assert long.startup_s == eager_plan.startup_s > 0   # the same model and data: the same start-up
    assert long.time_s - long.startup_s == pytest.approx(
        (eager_plan.time_s - eager_plan.startup_s) * ratio + long.plan.compile_s, rel=1e-9)
    assert "compiled layers" in _names(long) and "compiled layers" not in _names(short)
    assert long.time_basis_detail.endswith(f"; includes ~{long.plan.compile_s:.0f} s compiling the layers before the "
                                           "first step")
    assert "compil" not in short.time_basis_detail and short.compile_s == 0


def test_lorapilot_estimate_of_a_long_run_on_a_gpu_preset_shows_the_compile(tmp_path, capsys):
    import json

    import yaml

    from engine.estimate import command

    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3-8b", "dataset": {"path": "x.jsonl"},
                                    "training": {"max_steps": 2000}}))
    assert command.main([str(path), "--gpu", "h200-141", "--examples", "50000"]) == 0
    table = capsys.readouterr().out
    assert "decoder layers compiled" in table and "\n   compiled layers " in table
    # the speed line wraps at the terminal's width (engine/wrap.py): read its words
    assert "measured on H200: the packed path with compiled decoder layers on H200" in " ".join(table.split())
    assert command.main([str(path), "--gpu", "h200-141", "--examples", "50000", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["plan"]["compile_layers"] is True and "compiled layers" in [c["name"] for c in shown["components"]]


def test_the_sweep_counts_a_compiling_trials_compile_once_not_per_step():
    """A trial's evaluations and saves are priced per step: the compile (once, before step 1) stays out of that step
    time."""
    from engine.estimate.command import estimate_for
    from engine.estimate.timing import EVAL_COST_PER_EXAMPLE, SAVE_COST_STEPS
    from engine.sweep.cost import trial_time_model
    from engine.sweep.plan import RUNG_DIVISOR, Trial, trial_config

    cfg = _cfg(compile=True)
    info = read_model_config("llama-2-7b")
    trials = [Trial(2e-4, 16)]
    model = trial_time_model(cfg, trials, H200, n_train=2000, n_val=100, lengths=LENGTHS)
    est, _ = estimate_for(trial_config(cfg, trials[0], 30), info, H200, n_examples=2000, num_gpus=1,
                          lengths=LENGTHS, n_val=100)
    assert est.plan.compile_layers and est.compile_s == est.plan.compile_s > 0
    per_step = (est.time_s - est.pauses_s - est.compile_s - est.startup_s) / 30
    evals = RUNG_DIVISOR * 100 / 16 * per_step * EVAL_COST_PER_EXAMPLE
    saves = (RUNG_DIVISOR + 1) * per_step * SAVE_COST_STEPS    # at each rung, and the adapter
    assert est.pauses_s == pytest.approx(evals + saves)
    assert model.seconds(30) == pytest.approx(est.time_s)   # its start-up in it (tests/test_startup_time.py)


def test_auto_drops_the_compile_before_it_drops_to_lean():
    """A card where the fast path fits eager but not compiled: auto trains fast and eager (lean is far slower than
    compiling gains), and train.log says why; with more room it compiles, with less it goes lean."""
    cfg = _cfg()
    info = read_model_config(cfg.model)
    eager, compiled = _both(cfg)
    between = replace(H200, memory_gib=(eager.need_gib + compiled.need_gib) / 2 / 0.9)
    plan = plan_run(cfg, Machine.for_gpu(between), lengths=LENGTHS, info=info)
    assert (plan.memory, plan.compile_layers) == ("fast", False)
    assert any("compiled layers' extra memory would not fit" in line for line in plan.lines)
    assert "memory: fast (the estimate fits" in plan.lines[0]
    roomy = plan_run(cfg, Machine.for_gpu(replace(H200, memory_gib=compiled.need_gib / 0.9 + 1)), lengths=LENGTHS,
                     info=info)
    assert (roomy.memory, roomy.compile_layers) == ("fast", True)
    tight = plan_run(cfg, Machine.for_gpu(replace(H200, memory_gib=eager.need_gib / 0.9 - 1)), lengths=LENGTHS,
                     info=info)
    assert tight.memory == "lean" and tight.compile_layers   # a long run compiles lean's layers too, at its lower cap
    assert tight.token_budget == LEAN_COMPILED_TOKENS_PER_MICROBATCH
    # Examples of 8,000 tokens: one per micro-batch either way, so lean compiled needs more than lean eager. Where
    # only lean eager fits, auto trains lean eager rather than a plan that does not fit.
    long_cfg, long_rows = _cfg(max_seq_length=8192), [8000] * 2000
    need = {on: compute(long_cfg, info, H200, plan=plan_run(_cfg(max_seq_length=8192, memory="lean", compile=on),
                                                            Machine.for_gpu(H200), lengths=long_rows, info=info),
                        lengths=long_rows).need_gib for on in (False, True)}
    assert need[False] < need[True] - 0.1    # 0.12 GiB with the mask-free dropout (0.25 with peft's)
    squeezed = plan_run(long_cfg, Machine.for_gpu(replace(H200, memory_gib=sum(need.values()) / 2 / 0.9)),
                        lengths=long_rows, info=info)
    assert (squeezed.memory, squeezed.compile_layers) == ("lean", False)
    assert any("compiled layers' extra memory would not fit" in line for line in squeezed.lines)
    # the user's own choice is not second-guessed: compile true keeps compiling (and the fit verdict says no fit)
    forced = plan_run(_cfg(compile=True), Machine.for_gpu(between), lengths=LENGTHS, info=info)
    assert forced.compile_layers
