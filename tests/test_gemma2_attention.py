"""Gemma-2 soft-caps its attention logits: transformers refuses SDPA for it at load (a ValueError), so the plan takes
eager attention wherever flex attention does not run (the CPU, padded rows), and the estimate counts what eager
attention keeps: each layer's tokens x tokens scores per head, measured here on a tiny Gemma-2 built on the CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from conftest import saved_storages  # noqa: E402

from engine.config import config_from_dict  # noqa: E402
from engine.errors import ModelError  # noqa: E402
from engine.estimate import read_model_config  # noqa: E402
from engine.estimate.memory import (  # noqa: E402
    eager_scores_bytes,
    layer_activation_bytes,
    memory,
    shape_for_plan,
)
from engine.plan import Machine, attention_for, plan_run  # noqa: E402


@pytest.fixture(scope="module")
def gemma2_dir(tmp_path_factory):
    """A tiny Gemma-2 (two layers, one sliding and one full) saved as a local model directory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma2", vocab_size=256, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  max_position_embeddings=256, sliding_window=128, pad_token_id=0, bos_token_id=2,
                                  eos_token_id=1)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gemma2")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def _cfg(model, packing: bool, precision: str = "auto"):
    return config_from_dict({"model": str(model), "dataset": {"path": "x.jsonl"}, "quantization": "none",
                             "training": {"packing": packing, "precision": precision, "max_seq_length": 64}})


CPU = Machine.for_gpu(None)
GPU = Machine("cuda", "GPU", 80.0, varlen=True)


def test_the_plan_takes_eager_attention_for_soft_capped_logits_where_flex_does_not_run():
    assert attention_for(CPU, True, "fp32", softcap=True)[0] == "eager"
    assert attention_for(CPU, False, "fp32", softcap=True)[0] == "eager"
    assert attention_for(GPU, False, "bf16", softcap=True)[0] == "eager"
    assert attention_for(GPU, True, "bf16", softcap=True)[0] == "flex_attention"   # packed rows on a GPU: as before
    assert attention_for(CPU, False, "fp32")[0] == attention_for(GPU, False, "bf16")[0] == "sdpa"   # others: as before


@pytest.mark.parametrize("packing", [True, False])
def test_a_gemma2_model_loads_with_the_plans_attention_on_the_cpu(gemma2_dir, packing):
    """Before, the plan said sdpa and transformers refused it at load: a ValueError traceback for a beginner."""
    from engine.model import load_base_model

    plan = plan_run(_cfg(gemma2_dir, packing), CPU, lengths=[40] * 16, info=read_model_config(str(gemma2_dir)))
    model, _ = load_base_model(str(gemma2_dir), "none", plan.precision, attn_implementation=plan.attention)
    assert model.config._attn_implementation == plan.attention == "eager"


def test_an_attention_transformers_refuses_is_a_clear_message_not_a_traceback(gemma2_dir):
    from engine.model import load_base_model

    with pytest.raises(ModelError) as caught:
        load_base_model(str(gemma2_dir), "none", "fp32", attn_implementation="sdpa")
    text = str(caught.value)
    assert "transformers cannot load it" in text and "does not support an attention implementation" in text
    assert "sdpa attention" in text and "https://" not in text


def _saved_bytes(model, tokens: int, precision: str) -> int:
    """Bytes of the distinct storages autograd saves in one forward of a row of `tokens` (parameters left out)."""
    ids = torch.randint(3, 256, (1, tokens))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with autocast, saved_storages({p.untyped_storage().data_ptr() for p in model.parameters()}) as storages:
        model(input_ids=ids, use_cache=False)
    return sum(storages.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_estimate_counts_the_square_terms_eager_attention_keeps(gemma2_dir, precision):
    """Every layer's saved bytes grow with the square of the row under eager attention: the second difference over
    three evenly spaced lengths isolates that term (the per-token ones cancel), against the estimate's."""
    from transformers import AutoModelForCausalLM

    info = read_model_config(str(gemma2_dir))
    cfg = _cfg(gemma2_dir, False, precision)
    plan = plan_run(cfg, CPU, lengths=[40] * 16, info=info)
    shape = shape_for_plan(cfg, info.arch, plan)
    assert shape.attention == "eager" and shape.precision == precision
    model = AutoModelForCausalLM.from_pretrained(gemma2_dir, attn_implementation=plan.attention).train()
    lengths = (32, 48, 64)
    measured = [_saved_bytes(model, n, precision) for n in lengths]
    estimated = [info.arch.layers * eager_scores_bytes(info.arch, replace(shape, row_tokens=n), n)[0]
                 for n in lengths]
    assert measured[0] - 2 * measured[1] + measured[2] == estimated[0] - 2 * estimated[1] + estimated[2] > 0


@pytest.mark.parametrize("quantization,precision,dropout,targets", [
    ("nf4", "fp32", 0.05, "all-linear"), ("nf4", "bf16", 0.0, ["q_proj", "v_proj"]),
    ("none", "fp32", 0.0, ["q_proj", "v_proj"])], ids=["nf4-fp32-all", "nf4-bf16-qv", "none-fp32-qv"])
def test_a_gemma2_layer_the_trainer_builds_saves_what_the_estimate_counts(gemma2_dir, quantization, precision, dropout,
                                                                          targets):
    """The trainer's own model (engine.train.run.build_model, from the CPU's plan): one decoder layer's saved bytes
    grow from 48 to 80 tokens as the estimate's per-token term and eager attention's square terms say, to the byte
    (eager keeps q and k and v repeated to every head, not its output: o_proj's adapter keeps that where there is
    one)."""
    from transformers.masking_utils import create_sliding_window_causal_mask

    from engine.model import Hardware
    from engine.train.run import Inputs, build_model

    cfg = config_from_dict({"model": str(gemma2_dir), "dataset": {"path": "x.jsonl"}, "quantization": quantization,
                            "lora": {"r": 8, "alpha": 16, "dropout": dropout, "target_modules": targets},
                            "training": {"precision": precision, "packing": False}})
    hw, info = Hardware("cpu", "cpu", False, None, 0), read_model_config(str(gemma2_dir))
    plan = plan_run(cfg, Machine.for_hardware(hw), lengths=[80] * 8, info=info)
    torch.manual_seed(0)
    model = build_model(cfg, Inputs(hw=hw, dtype_name=plan.precision, n_ranks=1, tokenizer=None, data=None),  # type: ignore[arg-type]
                        plan).model.train()
    decoder = model.base_model.model.model
    layer = decoder.layers[0]    # a sliding-window layer (its window, 128, longer than the rows)
    layer.gradient_checkpointing = False

    def saved(tokens: int) -> int:
        x = torch.randn(1, tokens, decoder.config.hidden_size, dtype=decoder.embed_tokens.weight.dtype,
                        requires_grad=True)
        positions = torch.arange(tokens)[None]
        cos, sin = decoder.rotary_emb(x, positions)
        mask = create_sliding_window_causal_mask(config=decoder.config, inputs_embeds=x, attention_mask=None,
                                                 cache=None, position_ids=positions)
        apart = {t.untyped_storage().data_ptr() for t in (cos, sin, mask, *model.parameters())}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), \
                saved_storages(apart) as storages:
            layer(x, attention_mask=mask, position_ids=positions, position_embeddings=(cos, sin))
        return sum(storages.values())

    shape = shape_for_plan(cfg, info.arch, plan)

    def estimated(tokens: int) -> float:
        at = replace(shape, tokens=tokens, row_tokens=tokens)
        return layer_activation_bytes(info.arch, at) * tokens + eager_scores_bytes(info.arch, at)[0]

    assert shape.attention == "eager"
    assert saved(80) - saved(48) == estimated(80) - estimated(48)


def test_the_memory_estimate_reads_the_plans_attention(gemma2_dir):
    """The same run with SDPA (what the plan said before) and with the plan's eager attention: the eager one's
    activations hold the layers' scores and the masks, and the note says so."""
    info = read_model_config(str(gemma2_dir))
    cfg = _cfg(gemma2_dir, False)
    plan = plan_run(cfg, CPU, lengths=[64] * 16, info=info)
    eager = memory(info.arch, info.params, shape_for_plan(cfg, info.arch, plan))
    sdpa = memory(info.arch, info.params, shape_for_plan(cfg, info.arch, replace(plan, attention="sdpa")))
    per_layer, shared = eager_scores_bytes(info.arch, shape_for_plan(cfg, info.arch, plan))
    assert per_layer == 8 * 4 * plan.largest_microbatch_tokens * 64    # 8 bytes a score, 4 heads, rows of 64
    act = {c.name: c for c in eager.components}["activations"]
    assert "eager attention" in act.note
    assert {c.name: c for c in sdpa.components}["activations"].gib < act.gib
    assert eager.peak_allocated_gib > sdpa.peak_allocated_gib
