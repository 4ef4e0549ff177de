"""The VRAM estimate: components, monotonicity, the logits term, speed, and no torch import."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from engine.config import config_from_dict
from engine.estimate import estimate, get_gpu, read_model_config, with_changes
from engine.estimate.memory import NF4_BYTES_PER_PARAM

H100 = get_gpu("h100-80")


def make_cfg(model="llama-2-7b", **training):
    quant = training.pop("quantization", "nf4")
    lora = training.pop("lora", {})
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"}, "quantization": quant,
                             "lora": lora, "training": training})


def est(cfg, gpu=H100, **kw):
    return estimate(cfg, read_model_config(cfg.model), gpu, n_examples=1000, **kw)


def component(e, name):
    return next(c for c in e.components if c.name == name)


def test_components_add_up_to_the_peak_and_device_total():
    e = est(make_cfg())
    assert e.peak_allocated_gib == pytest.approx(sum(c.gib for c in e.components if c.in_peak))
    assert e.device_total_gib == pytest.approx(sum(c.gib for c in e.components if c.in_peak or c.name in
                                                   ("CUDA context", "allocator slack", "paged optimizer states")))
    assert e.device_total_gib > e.peak_allocated_gib + 0.5
    assert e.load_peak_gib < e.peak_allocated_gib


def test_nf4_base_weights_with_double_quant():
    e = est(make_cfg())
    info = read_model_config("llama-2-7b")
    assert NF4_BYTES_PER_PARAM == pytest.approx(0.5 + 0.125 / 8 + 32 / (64 * 256 * 8))
    assert component(e, "base weights").gib == pytest.approx(info.params.linear * NF4_BYTES_PER_PARAM / 2**30)
    # embeddings + lm_head + norms stay unquantised: bf16 on a bf16 GPU (the engine undoes kbit preparation's
    # fp32 upcast there), fp32 under fp16 (T4), where the upcast is kept for range
    assert component(e, "unquantised weights").gib == pytest.approx(info.params.unquantised * 2 / 2**30)
    t4 = est(make_cfg(), gpu=get_gpu("T4"))
    assert component(t4, "unquantised weights").gib == pytest.approx(info.params.unquantised * 4 / 2**30)


def test_quantization_orders_base_memory():
    weights = [component(est(make_cfg(quantization=q)), "base weights").gib for q in ("nf4", "int8", "none")]
    assert weights[0] < weights[1] < weights[2]
    assert weights[2] == pytest.approx(read_model_config("llama-2-7b").params.linear * 2 / 2**30)


def test_lora_is_fp32_and_optimizer_bytes_per_optimizer():
    cfg = make_cfg(optimizer="adamw_torch")
    e = est(cfg)
    n = e.params_trainable
    assert component(e, "LoRA adapters").gib == pytest.approx(n * 4 / 2**30)
    assert component(e, "optimizer states").gib == pytest.approx(n * 8 / 2**30)
    eight = est(make_cfg(optimizer="adamw_8bit"))
    assert component(eight, "optimizer states").gib == pytest.approx(n * 2 / 2**30, rel=0.02)


def test_paged_states_leave_the_allocator_only_for_large_tensors(monkeypatch):
    from engine.train import speed

    monkeypatch.setattr(speed.LEVERS, "fused_optimizer", False)  # bitsandbytes' paged AdamW as named
    small_r = est(make_cfg(optimizer="paged_adamw_32bit"))      # r=16: A is 16 x 4096 < 1e5 elements
    assert component(small_r, "optimizer states").gib > 0
    big_r = est(make_cfg(optimizer="paged_adamw_32bit", lora={"r": 64}))  # every A and B >= 1e5 elements
    assert component(big_r, "optimizer states").gib == 0
    assert component(big_r, "paged optimizer states").gib == pytest.approx(big_r.params_trainable * 8 / 2**30)
    monkeypatch.setattr(speed.LEVERS, "fused_optimizer", True)  # the fast path's default: torch's fused AdamW
    fused = est(make_cfg(optimizer="paged_adamw_32bit", lora={"r": 64}))
    assert component(fused, "optimizer states").gib == pytest.approx(fused.params_trainable * 8 / 2**30)
    assert not any(c.name == "paged optimizer states" and c.gib for c in fused.components)


MONOTONE = [
    ("micro_batch_size", 1, 8),
    ("max_seq_length", 256, 4096),
    ("gradient_checkpointing", True, False),
]


@pytest.mark.parametrize("model", ["llama-2-7b", "qwen2.5-1.5b", "gemma-2-2b", "phi-3-mini"])
@pytest.mark.parametrize("quant", ["nf4", "none"])
@pytest.mark.parametrize("key,small,large", MONOTONE)
def test_more_never_costs_less(model, quant, key, small, large):
    a = est(make_cfg(model, quantization=quant, **{key: small}))
    b = est(make_cfg(model, quantization=quant, **{key: large}))
    assert b.peak_allocated_gib > a.peak_allocated_gib
    assert b.device_total_gib > a.device_total_gib


@pytest.mark.parametrize("r_small,r_large", [(4, 8), (8, 64), (64, 256)])
def test_larger_rank_never_costs_less(r_small, r_large):
    a, b = est(make_cfg(lora={"r": r_small})), est(make_cfg(lora={"r": r_large}))
    assert b.peak_allocated_gib > a.peak_allocated_gib and b.device_total_gib > a.device_total_gib


def test_memory_grows_with_the_token_budget_not_the_batch_shape():
    cfg = make_cfg(micro_batch_size=4, max_seq_length=1024)
    a = est(cfg)
    b = est(make_cfg(micro_batch_size=1, max_seq_length=4096))
    # Without the data every example is assumed to fill max_seq_length: the fast path packs a whole optimizer step.
    assert a.tokens_per_microbatch == b.tokens_per_microbatch == 4 * 4096
    assert a.peak_allocated_gib == pytest.approx(b.peak_allocated_gib)
    budgets = [est(cfg, tokens_per_microbatch=t).peak_allocated_gib for t in (512, 2048, 8192, 32768)]
    assert budgets == sorted(budgets)


def test_logits_dominate_for_large_vocabularies_unless_the_loss_is_fused():
    cfg = make_cfg("qwen2.5-1.5b", micro_batch_size=8, max_seq_length=2048)
    e = est(cfg, fused_loss=False)
    logits = component(e, "logits and loss")
    # 16k tokens x 151,936 x 12 bytes: about 27 GiB, more than all the rest together
    assert logits.in_peak and logits.gib > 27
    assert logits.gib > e.peak_allocated_gib / 2
    fused = est(cfg, fused_loss=True)
    assert component(fused, "logits and loss").gib < logits.gib / 5
    assert fused.peak_allocated_gib < e.peak_allocated_gib - 20


def test_gradient_checkpointing_keeps_one_hidden_state_per_layer():
    on = est(make_cfg(max_seq_length=2048, micro_batch_size=1), tokens_per_microbatch=2048, fused_loss=False)
    off = est(make_cfg(max_seq_length=2048, micro_batch_size=1, gradient_checkpointing=False),
              tokens_per_microbatch=2048, fused_loss=False)
    arch = read_model_config("llama-2-7b").arch
    boundary = arch.layers * 2 * arch.hidden * 2048 / 2**30        # the bf16 stream (fp32 under fp16)
    final_norm = (4 * arch.hidden + 4) * 2048 / 2**30                # its fp32 input and reciprocal RMS
    assert component(on, "activations").gib == pytest.approx(boundary + final_norm)
    assert component(off, "activations").gib > 5 * component(on, "activations").gib


def test_plain_lora_keeps_the_stream_in_16_bit():
    a = est(make_cfg(quantization="none"), fused_loss=False)
    arch = read_model_config("llama-2-7b").arch
    t = a.tokens_per_microbatch
    assert component(a, "activations").gib == pytest.approx(((arch.layers * 2 + 4) * arch.hidden + 4) * t / 2**30)
    assert not any(c.name == "dequantisation buffer" for c in a.components)


def test_fits_and_headroom_against_the_card():
    small = est(make_cfg("smollm2-135m", micro_batch_size=1, max_seq_length=256), gpu=get_gpu("t4"))
    assert small.fits is True and small.headroom_gib == pytest.approx(15.0 - small.device_total_gib)
    assert small.suggestions == []
    big = est(make_cfg("llama-2-70b", quantization="none", micro_batch_size=1, max_seq_length=512),
              gpu=get_gpu("t4"))
    assert big.fits is False and big.headroom_gib < 0 and big.suggestions
    no_gpu = est(make_cfg(), gpu=None)
    # No GPU: the run trains on this machine's CPU, in fp32, and the estimate says so and times it there.
    assert no_gpu.fits is None and no_gpu.headroom_gib is None and no_gpu.time_s is not None
    assert no_gpu.precision == "fp32" and any("this machine's CPU" in n for n in no_gpu.notes)


def test_steps_time_and_cost():
    cfg = make_cfg(micro_batch_size=4, gradient_accumulation_steps=4, num_epochs=3)
    e = estimate(cfg, read_model_config(cfg.model), H100, n_examples=1000, num_gpus=2, price_per_hour=3.0)
    assert e.steps_per_epoch == 32 and e.total_steps == 96      # ceil(1000 / (4 x 4 x 2)) x 3
    assert e.time_s > 0 and e.cost == pytest.approx(e.time_s / 3600 * 3.0)
    capped = estimate(with_changes(cfg, {"training.max_steps": 10}), read_model_config(cfg.model), H100,
                      n_examples=None)
    assert capped.total_steps == 10 and capped.steps_per_epoch is None
    slow = estimate(with_changes(cfg, {"training.gradient_checkpointing": False}), read_model_config(cfg.model),
                    H100, n_examples=1000, num_gpus=2)
    assert slow.time_s < e.time_s           # checkpointing recomputes the forward


def test_lr_hint_shows_the_scaling_rule_with_its_inputs():
    cfg = make_cfg("mistral-7b", micro_batch_size=1, gradient_accumulation_steps=1, max_seq_length=512)
    hint = est(cfg).lr_hint
    assert hint["range"] == [1e-4, 3e-4] and hint["default"] == 2e-4
    assert hint["base_lr"] == 5e-5 and hint["pretrained_batch_tokens"] == 4_000_000 and hint["pretraining_published"]
    assert hint["scaled_lr"] == pytest.approx(5e-5 * (512 / 4_000_000) ** 0.5)
    assert hint["level"] == "ok" and hint["text"].startswith("2e-4 is within the recommended 1e-4 to 3e-4")
    # Plain words for a beginner, not "scaling rule 5.0e-05 x sqrt(512 / 4,000,000) = 5.7e-07".
    assert "sqrt" not in hint["text"] and "scaling rule" not in hint["text"]
    assert ("for comparison, full fine-tuning (every weight) would start near 5.7e-07: its published pretraining "
            "rate 5.0e-05, scaled down because a step here trains 512 tokens, not 4,000,000.") in hint["text"]
    assert hint["text"].endswith("usually wants a higher rate: a reference, not the advice")


def test_t4_without_bf16_resolves_to_fp16():
    e = est(make_cfg(), gpu=get_gpu("t4"))
    assert e.precision == "fp16"
    forced = est(make_cfg(precision="bf16"), gpu=get_gpu("t4"))
    assert any("no bf16" in n for n in forced.notes)


def test_recompute_is_fast():
    cfg, info = make_cfg("qwen2.5-7b"), read_model_config("Qwen/Qwen2.5-7B")
    estimate(cfg, info, H100, n_examples=1000)
    start = time.perf_counter()
    for _ in range(20):
        estimate(cfg, info, H100, n_examples=1000)
    # ~5 ms each on an idle machine; the bound is 100x that so a loaded CI box cannot trip it, while a
    # regression to re-reading config.json or tokenizing on every keystroke (seconds) still would.
    assert (time.perf_counter() - start) / 20 < 0.5


def test_the_estimate_imports_no_torch():
    code = ("import sys, engine.estimate as e, engine.estimate.command\n"
            "from engine.config import config_from_dict\n"
            "cfg = config_from_dict({'model': 'llama-3-8b', 'dataset': {'path': 'x.jsonl'}})\n"
            "e.estimate(cfg, e.read_model_config(cfg.model), e.get_gpu('a10'), n_examples=10)\n"
            "e.auto_fit(cfg, e.read_model_config(cfg.model), e.get_gpu('t4'))\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'datasets') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_fsdp_splits_the_weights_per_gpu_and_auto_shards_only_where_a_copy_does_not_fit():
    # adamw_torch on both: a sharded run's optimizer is torch's whatever was asked (engine.plan.optimizer_for)
    ddp = est(make_cfg("llama-2-70b", parallelism="ddp", memory="fast", optimizer="adamw_torch"), num_gpus=2)
    fsdp = est(make_cfg("llama-2-70b", parallelism="fsdp", memory="fast", optimizer="adamw_torch"), num_gpus=2)
    assert ddp.parallelism == "ddp" and fsdp.parallelism == "fsdp"
    for name in ("base weights", "unquantised weights", "LoRA adapters", "optimizer states"):
        assert component(fsdp, name).gib == pytest.approx(component(ddp, name).gib / 2)
    assert component(fsdp, "activations").gib == component(ddp, "activations").gib  # each GPU its own tokens
    gathered = component(fsdp, "FSDP gathered layers").gib
    assert 0 < gathered < component(ddp, "base weights").gib / 10  # two of 80 layers
    saved = sum(component(ddp, name).gib / 2 for name in ("base weights", "unquantised weights", "LoRA adapters",
                                                           "LoRA gradients", "optimizer states"))
    assert ddp.peak_allocated_gib - fsdp.peak_allocated_gib == pytest.approx(saved - gathered, rel=0.05)
    assert fsdp.load_peak_gib == ddp.load_peak_gib  # each rank loads the whole 4-bit model before sharding
    # auto: a 7B copy fits an 80 GB GPU; a 70B at 8k tokens does not on 40 GB ones, so it is sharded.
    assert est(make_cfg("llama-2-7b"), num_gpus=2).parallelism == "ddp"
    big = est(make_cfg("llama-2-70b", max_seq_length=8192), get_gpu("a100-40"), num_gpus=2)
    assert big.parallelism == "fsdp"
    assert est(make_cfg("llama-2-70b"), num_gpus=1).parallelism == "none"


def test_a_model_that_cannot_load_does_not_fit_even_when_training_would():
    e = est(make_cfg("llama-2-70b", max_seq_length=512, parallelism="fsdp"), get_gpu("a100-40"), num_gpus=4)
    assert e.device_total_gib < 0.9 * 40 < e.load_peak_gib + 0.5  # sharded training fits; loading a copy does not
    assert e.fits is False and any("loading peaks above training" in n for n in e.notes)
    assert est(make_cfg("llama-2-7b"), get_gpu("a100-40")).fits is True


def test_the_cpu_estimate_has_no_cuda_context_and_speaks_of_fp32():
    # No GPU: the run trains in fp32 on this machine's CPU, in RAM: no CUDA context, no caching allocator's slack,
    # the logits and the dequantised weight in fp32; a card keeps its context, slack and 16-bit wording.
    cfg = make_cfg()
    cpu, gpu = est(cfg, gpu=None, fused_loss=False), est(cfg, fused_loss=False)
    names = {c.name for c in cpu.components}
    assert "CUDA context" not in names and "allocator slack" not in names
    assert cpu.device_total_gib == pytest.approx(cpu.peak_allocated_gib)
    assert cpu.need_gib == pytest.approx(max(cpu.peak_allocated_gib, cpu.load_peak_gib))
    assert not any(word in c.note for c in cpu.components for word in ("bf16", "16-bit", "nvidia-smi", "GPU"))
    assert component(cpu, "logits and loss").note.startswith("batch x seq x vocab (32,000): fp32 logits,")
    arch = read_model_config(cfg.model).arch
    largest = max(lin.d_in * lin.d_out for lin in arch.linears)
    assert component(cpu, "dequantisation buffer").gib == pytest.approx(largest * 4 / 2**30)
    assert "in fp32 during its matmul" in component(cpu, "dequantisation buffer").note
    # The GPU's estimate as it was.
    assert component(gpu, "CUDA context").gib == 0.5 and component(gpu, "allocator slack").gib > 0
    assert component(gpu, "dequantisation buffer").gib == pytest.approx(largest * 2 / 2**30)
    assert "bf16 logits upcast to fp32" in component(gpu, "logits and loss").note
    assert gpu.need_gib >= gpu.device_total_gib > gpu.peak_allocated_gib + 0.5


def test_the_notes_name_the_plans_compute_dtype():
    # The words follow the plan's precision (engine.plan.precision_for): fp16 on a T4 or when asked, bf16 on an
    # H100 by default; the bytes are those of a 16-bit dtype either way.
    t4 = est(make_cfg(), gpu=get_gpu("t4"), fused_loss=False)
    asked = est(make_cfg(precision="fp16"), fused_loss=False)
    for e in (t4, asked):
        assert e.precision == "fp16"
        note = component(e, "logits and loss").note
        assert "fp16 logits upcast to fp32 in the loss" in note and "plus a fp16 copy of the fp32 lm_head" in note
        assert not any("bf16" in c.note for c in e.components), [c.note for c in e.components]
    cpu = est(make_cfg(precision="fp16"), gpu=None)   # asked for on the CPU: the plan keeps it, and so do the words
    assert cpu.precision == "fp16" and "no GPU: the run trains on this machine's CPU (fp16, plain PyTorch kernels)" \
        in cpu.notes and not any("bf16" in c.note for c in cpu.components)
    h100 = est(make_cfg(), fused_loss=False)
    assert h100.precision == "bf16"
    assert "bf16 logits upcast to fp32 in the loss" in component(h100, "logits and loss").note
    assert "in bf16 (cast back after kbit preparation)" in component(h100, "unquantised weights").note


def test_the_wizards_breakdown_lists_every_component_lorapilot_estimate_lists():
    """One estimate, two screens: the Review step's legend names what `lorapilot estimate` lists, with the same
    mark for the ones at another moment than the peak (llama-2-7b's logits are below its backward working memory:
    the wizard used to drop them)."""
    from engine.estimate.command import render
    from tui.widgets.vram_bar import VramBar

    e = est(make_cfg())
    info = read_model_config("llama-2-7b")
    table = render(e, info, 1000, True)
    assert component(e, "logits and loss").mark == "~"
    bar = VramBar()
    bar.show(e, width=60)
    legend = str(bar.render())
    for c in e.components:
        assert f" {c.mark} {c.name} " in table
        if c.gib > 0:
            assert c.name in legend, c.name
    assert "~~ logits and loss " in legend
