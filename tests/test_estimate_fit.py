"""Auto-fit, the token budget for packing, GPU presets and NVML name matching, example counting."""

from __future__ import annotations

import json

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.estimate import (
    auto_fit,
    count_examples,
    detect_gpu,
    estimate,
    get_gpu,
    list_gpus,
    match_nvml_name,
    max_tokens_per_microbatch,
    read_model_config,
    training_examples,
    with_changes,
)


def make_cfg(model="llama-3-8b", **training):
    quant = training.pop("quantization", "nf4")
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"}, "quantization": quant,
                             "training": training})


def test_auto_fit_keeps_the_effective_batch_and_picks_the_largest_micro_batch():
    cfg = make_cfg(micro_batch_size=16, gradient_accumulation_steps=1, max_seq_length=2048)
    info, gpu = read_model_config(cfg.model), get_gpu("rtx4090")
    fit = auto_fit(cfg, info, gpu)
    assert fit.fits and fit.micro_batch_size * fit.gradient_accumulation_steps == 16
    assert fit.estimate.device_total_gib <= 0.9 * gpu.memory_gib
    bigger = fit.micro_batch_size * 2
    if bigger <= 16:
        over = estimate(with_changes(cfg, {"training.micro_batch_size": bigger}), info, gpu)
        assert not over.fits


def test_auto_fit_goes_up_when_there_is_room():
    """Padded micro-batches (packing off): micro_batch_size is what the trainer runs, so a larger one that fits
    is proposed."""
    cfg = make_cfg("smollm2-135m", micro_batch_size=1, gradient_accumulation_steps=8, max_seq_length=512,
                   packing=False)
    fit = auto_fit(cfg, read_model_config(cfg.model), get_gpu("h100-80"))
    assert fit.micro_batch_size == 8 and fit.gradient_accumulation_steps == 1


def test_when_nothing_fits_the_most_helpful_changes_come_with_their_estimates():
    cfg = make_cfg("llama-2-13b", quantization="none", micro_batch_size=4, max_seq_length=4096,
                   gradient_checkpointing=False, optimizer="adamw_torch")
    info, gpu = read_model_config(cfg.model), get_gpu("t4")
    fit = auto_fit(cfg, info, gpu)
    # memory auto plans lean here: its token budget packs each step, so micro_batch_size 4 -> 1 would change
    # nothing and is not offered
    assert fit.changes and not any(c.description.startswith("micro_batch_size") for c in fit.changes)
    totals = [c.estimate.device_total_gib for c in fit.changes]
    assert totals == sorted(totals, reverse=True)           # each change lowers the estimate further
    assert fit.fits and "quantize the base to nf4" in " ".join(c.description for c in fit.changes)
    e = estimate(cfg, info, gpu)
    assert not e.fits and len(e.suggestions) == len(fit.changes)
    assert all("GiB" in s for s in e.suggestions)


def test_a_hopeless_case_says_so():
    cfg = make_cfg("qwen2.5-72b", micro_batch_size=1, max_seq_length=512)
    e = estimate(cfg, read_model_config(cfg.model), get_gpu("t4"))
    assert not e.fits and "smaller model or a larger GPU" in e.suggestions[-1]


def test_max_tokens_per_microbatch_is_the_largest_budget_that_fits():
    cfg = make_cfg("qwen2.5-1.5b", memory="fast")
    info, gpu = read_model_config(cfg.model), get_gpu("a10")
    budget = max_tokens_per_microbatch(cfg, info, gpu, fused_loss=False)
    assert budget > 1000
    limit = 0.9 * gpu.memory_gib
    assert estimate(cfg, info, gpu, tokens_per_microbatch=budget, fused_loss=False).device_total_gib <= limit
    assert estimate(cfg, info, gpu, tokens_per_microbatch=budget + 1, fused_loss=False).device_total_gib > limit
    assert max_tokens_per_microbatch(cfg, info, gpu, fused_loss=True) > 3 * budget
    assert max_tokens_per_microbatch(make_cfg("llama-2-70b"), read_model_config("llama-2-70b"), gpu) == 0


def test_gpu_presets():
    ids = [g.id for g in list_gpus()]
    for wanted in ("t4", "v100-16", "v100-32", "a10", "l4", "rtx3090", "rtx4090", "a6000", "l40s", "a100-40",
                   "a100-80", "h100-80", "h200-141"):
        assert wanted in ids
    assert not get_gpu("t4").bf16 and get_gpu("a100-80").bf16


@pytest.mark.parametrize("typed,expected", [("A100 80GB", "a100-80"), ("a100-40", "a100-40"), ("H100", "h100-80"),
                                            ("RTX 4090", "rtx4090"), ("4090", "rtx4090"), ("NVIDIA L40S", "l40s"),
                                            ("T4", "t4"), ("a10g", "a10")])
def test_get_gpu_by_typed_name(typed, expected):
    assert get_gpu(typed).id == expected


def test_unknown_gpu_lists_the_valid_names():
    with pytest.raises(ConfigError, match="h100-80"):
        get_gpu("potato-9000")


@pytest.mark.parametrize("nvml,mem,expected", [
    ("Tesla T4", 15.0, "t4"), ("NVIDIA A100-SXM4-80GB", 80.0, "a100-80"), ("NVIDIA A100-PCIE-40GB", 40.0, "a100-40"),
    ("NVIDIA A10", 22.5, "a10"), ("NVIDIA H100 80GB HBM3", 79.6, "h100-80"), ("NVIDIA GeForce RTX 3090", 24.0,
                                                                                "rtx3090"),
    ("Tesla V100-SXM2-32GB", 32.0, "v100-32"), ("NVIDIA RTX A6000", 48.0, "a6000"), ("NVIDIA L4", 22.5, "l4"),
    ("NVIDIA H200", 140.4, "h200-141"), ("NVIDIA L40S", 45.0, "l40s")])
def test_nvml_names_match_presets(nvml, mem, expected):
    spec = match_nvml_name(nvml, mem)
    assert spec.id == expected and spec.detected and spec.memory_gib == mem


def test_unmatched_nvml_name_and_no_gpu_here():
    assert match_nvml_name("NVIDIA L40", 45.0) is None
    assert match_nvml_name("NVIDIA H100 NVL", 93.6).memory_gib == 93.6
    assert detect_gpu() is None        # this test machine has no GPU: None, not an exception


def test_count_examples(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    assert count_examples(str(jsonl)) == 3
    (tmp_path / "b.json").write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert count_examples(str(tmp_path / "b.json")) == 2
    (tmp_path / "c.csv").write_text('q,a\n"multi\nline",1\n\nx,2\n  \n')   # blank lines are no rows to the reader
    assert count_examples(str(tmp_path / "c.csv")) == 2
    assert count_examples(str(tmp_path)) == 7
    assert count_examples("org/some-hub-dataset") is None
    assert training_examples(100, 0.05, False) == 95 and training_examples(100, 0.05, True) == 100


def test_count_examples_counts_what_the_trainer_reads(tmp_path):
    """The estimate refused a .json the trainer reads (a BOM, JSON Lines under a .json name) and counted a folder's
    top level only, while the trainer reads its subfolders too: the step count was that of a smaller dataset."""
    from engine.data import read_rows

    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"text": "a"}, {"text": "b"}]).encode())
    (tmp_path / "lines.json").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.jsonl").write_text('{"text": "d"}\n' * 4)
    (tmp_path / "sub" / "UPPER.JSONL").write_text('{"text": "e"}\n')
    for path in (tmp_path / "bom.json", tmp_path / "lines.json", tmp_path):
        assert count_examples(str(path)) == len(read_rows(path)[0]), path
    assert count_examples(str(tmp_path)) == 10


def test_recipes_are_valid_partial_configs():
    from engine.estimate import list_recipes, load_recipe

    assert {"qlora-default", "t4-16gb", "consumer-24gb", "a100-h100-80gb"} <= set(list_recipes())
    for name in list_recipes():
        raw = {**load_recipe(name), "model": "llama-3-8b", "dataset": {"path": "x.jsonl"}}
        cfg = config_from_dict(raw, source=name)
        assert estimate(cfg, read_model_config(cfg.model), get_gpu("h100-80")).fits
    with pytest.raises(ConfigError, match="qlora-default"):
        load_recipe("nope")


def test_memory_auto_is_fast_where_it_fits_and_lean_where_it_does_not():
    """auto estimates what the trainer will do: the fast path when it fits the card, else lean."""
    cfg = make_cfg("llama-2-7b", micro_batch_size=16, gradient_accumulation_steps=1, max_seq_length=2048)
    info = read_model_config(cfg.model)
    roomy = estimate(cfg, info, get_gpu("h100"), lengths=[437] * 16)   # the data's real lengths: 6,992 tokens
    assert roomy.memory_mode == "fast" and roomy.tokens_per_microbatch == 16 * 437
    full = [2048] * 16
    small = estimate(cfg, info, get_gpu("rtx4090"), lengths=full, fused_loss=False)
    fast_there = estimate(with_changes(cfg, {"training.memory": "fast"}), info, get_gpu("rtx4090"), lengths=full,
                          fused_loss=False)
    assert not fast_there.fits and fast_there.tokens_per_microbatch == 32768
    assert small.memory_mode == "lean" and small.tokens_per_microbatch == 8192
    assert small.device_total_gib < fast_there.device_total_gib
    optimizer = next(c for c in small.components if c.name == "optimizer states")
    activations = next(c for c in small.components if c.name == "activations")
    assert "8-bit" in optimizer.note and "offloaded" in activations.note


def test_lean_offloading_keeps_a_few_layer_inputs_on_the_gpu_not_all():
    cfg = make_cfg("llama-2-7b", micro_batch_size=16, gradient_accumulation_steps=1, max_seq_length=2048)
    info, gpu = read_model_config(cfg.model), get_gpu("h100")
    acts = {mode: next(c.gib for c in estimate(with_changes(cfg, {"training.memory": mode}), info, gpu,
                                                 tokens_per_microbatch=7000).components if c.name == "activations")
            for mode in ("fast", "lean")}
    # 32 layer inputs of 7,000 x 4,096 bf16 values stay on the GPU on the fast path, 6 of them under lean
    layer_input = 7000 * 4096 * 2 / 2 ** 30
    assert acts["fast"] - acts["lean"] == pytest.approx(26 * layer_input)


def test_a_gpu_memory_cap_is_what_the_estimate_plans_for(monkeypatch):
    from engine.errors import ConfigError
    from engine.gpu import GpuSample

    monkeypatch.setattr("engine.gpu.sample_gpus", lambda: [GpuSample(0, "NVIDIA H200", 1.0, 140.4)])
    monkeypatch.delenv("LORAPILOT_GPU_MEMORY_GIB", raising=False)
    assert detect_gpu().memory_gib == 140.4
    monkeypatch.setenv("LORAPILOT_GPU_MEMORY_GIB", "20")
    capped = detect_gpu()
    assert capped.memory_gib == 20 and capped.id == "h200-141" and "capped at 20 GiB" in capped.name
    monkeypatch.setenv("LORAPILOT_GPU_MEMORY_GIB", "200")  # above the card: the card's own memory
    assert detect_gpu().memory_gib == 140.4
    for bad in ("twenty", "-4", "0"):
        monkeypatch.setenv("LORAPILOT_GPU_MEMORY_GIB", bad)
        with pytest.raises(ConfigError, match="LORAPILOT_GPU_MEMORY_GIB"):
            detect_gpu()


PACKED_CASES = [("llama-3-8b", "h100-80", {}), ("llama-3-8b", "t4", {}), ("llama-3-8b", "t4", {"memory": "lean"}),
                ("llama-2-13b", "t4", {"max_seq_length": 4096}), ("qwen2.5-14b", "t4", {}),
                ("smollm2-135m", "h100-80", {"micro_batch_size": 1, "gradient_accumulation_steps": 8})]


@pytest.mark.parametrize("with_data", [False, True])
@pytest.mark.parametrize("model,gpu,training", PACKED_CASES)
def test_on_packed_gpu_paths_auto_fit_offers_only_changes_that_change_the_plan(model, gpu, training, with_data):
    """On the GPU a packed plan sizes micro-batches by a token budget (a whole step, or lean's cap): changing
    micro_batch_size trains the same micro-batches, so auto-fit never offers it; every change it does offer
    changes the plan engine.plan makes (checked with plan_run) or the memory."""
    from engine.plan import Machine, plan_run

    cfg = make_cfg(model, **training)
    info, card = read_model_config(model), get_gpu(gpu)
    lengths = dict(lengths=[300 + (i * 37) % 700 for i in range(400)],
                   val_lengths=[300 + (i * 53) % 700 for i in range(20)]) if with_data else {}
    fit = auto_fit(cfg, info, card, **lengths)
    assert not any(c.description.startswith("micro_batch_size") for c in fit.changes)
    assert fit.micro_batch_size == cfg.training.micro_batch_size
    machine = Machine.for_gpu(card)
    before, before_need = cfg, estimate(cfg, info, card, **lengths).need_gib
    for change in fit.changes:
        after = with_changes(before, change.settings)
        plans = [plan_run(c, machine, info=info, **lengths).to_dict() for c in (before, after)]
        assert plans[0] != plans[1] or change.estimate.need_gib < before_need - 0.01, change.description
        before, before_need = after, change.estimate.need_gib


def test_a_micro_batch_change_is_offered_where_it_changes_the_plan():
    """The same model and card with padded micro-batches (packing off): there micro_batch_size is the plan."""
    from engine.plan import Machine, plan_run

    cfg = make_cfg("llama-3-8b", packing=False)
    info, card = read_model_config(cfg.model), get_gpu("h100-80")
    fit = auto_fit(cfg, info, card)
    assert fit.changes and fit.changes[0].description.startswith("micro_batch_size 4 -> ")
    machine = Machine.for_gpu(card)
    assert plan_run(cfg, machine, info=info).to_dict() != \
        plan_run(with_changes(cfg, fit.settings), machine, info=info).to_dict()


@pytest.mark.parametrize("checkpointing", [True, False])
def test_every_change_auto_fit_may_offer_is_a_config_the_trainer_accepts(checkpointing):
    """Offered lean on a config with gradient checkpointing off, auto-fit wrote a config the validator refuses (lean
    offloads the checkpointed layer inputs: without checkpointing there are none): its lean turns checkpointing on."""
    from engine.config import dump_config
    from engine.estimate.fit import _candidates

    import yaml

    cfg = make_cfg("llama-2-13b", quantization="none", memory="fast", max_seq_length=4096,
                   gradient_checkpointing=checkpointing, optimizer="adamw_torch")
    offered = _candidates(cfg, read_model_config(cfg.model))
    assert any("training.memory" in settings for _, settings in offered)
    for description, settings in offered:
        config_from_dict(yaml.safe_load(dump_config(with_changes(cfg, settings))))   # raises on a refused one
        assert ("gradient checkpointing on" in description) == (settings.get("training.memory") == "lean"
                                                               and not checkpointing), description


def test_a_plan_that_keeps_its_rows_padded_is_offered_no_lean_token_cap():
    """A model whose layers carry state across a packed row (Qwen3.5) trains padded though its config packs: auto-fit
    offered lean "at most 8,192 tokens per micro-batch", a cap of packed rows, which its plan does not have."""
    from engine.estimate.fit import _candidates

    cfg = make_cfg("llama-2-7b", memory="fast")
    info = read_model_config(cfg.model)
    assert any("tokens per micro-batch" in d for d, _ in _candidates(cfg, info))
    assert not any("tokens per micro-batch" in d for d, _ in _candidates(cfg, info, packed=False))


def test_attention_only_names_the_whole_attention_of_a_latent_attention_model():
    """DeepSeek's attention is q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj and o_proj: auto-fit's "attention
    layers only" offered q_proj and o_proj (the names it knew) on a DeepSeek-V3, a list its own model refuses."""
    from engine.estimate import model_info_from_config
    from engine.estimate.fit import _candidates
    from engine.estimate.params import lora_targets

    deepseek = {"model_type": "deepseek_v3", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
                "num_attention_heads": 4, "vocab_size": 1000, "n_routed_experts": 4, "moe_intermediate_size": 64,
                "kv_lora_rank": 32, "q_lora_rank": 64, "first_k_dense_replace": 1}
    info = model_info_from_config("x", deepseek, "local")
    cfg = make_cfg("llama-2-7b")
    [settings] = [s for d, s in _candidates(cfg, info) if "attention layers only" in d]
    assert settings["lora.target_modules"] == ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    lora_targets(info.arch, settings["lora.target_modules"])           # the model takes them
