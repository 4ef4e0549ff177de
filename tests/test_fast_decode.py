"""engine.fast_decode: the fixed-shape greedy loop gives model.generate's tokens, on real tiny models (CPU, eager)."""

from __future__ import annotations

import os
import warnings

import pytest

from engine.fast_decode import greedy_decode

PAD, EOS = 0, 1
PROMPT_LENGTHS = (5, 11, 8)  # left padding differs per row


def tiny_llama(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, bos_token_id=2, eos_token_id=EOS, initializer_range=0.1,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def prompts(seed: int = 0) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 256, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def generate_rows(model, prompt_rows, *, max_new_tokens, stop_ids):
    """model.generate as engine.samples calls it, each row cut after its first stop id."""
    import torch

    width = max(len(p) for p in prompt_rows)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompt_rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_rows])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids or None, pad_token_id=PAD, use_cache=True)
    rows = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
        rows.append(row[:cut])
    return rows


def with_lora(model, seed: int = 1):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    # init_lora_weights=False: B is random too, so the adapter changes the outputs from the start
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora).eval()


def test_same_tokens_as_generate():
    model = tiny_llama()
    rows = greedy_decode(model, prompts(), max_new_tokens=20, stop_ids=[EOS], pad_id=PAD)
    assert rows == generate_rows(model, prompts(), max_new_tokens=20, stop_ids=[EOS])
    assert [len(r) for r in rows] == [20, 20, 20] and len({t for r in rows for t in r}) > 5  # a real test


# The architectures lorapilot's fast path covers (Liger's list, engine.train.speed): fast decode is the samples'
# default on GPUs, so each must give generate's tokens through its own cache layout (sliding windows, MoE,
# head_dim apart from hidden / heads). Gemma 2 has no SDPA in transformers: it decodes eagerly, as the samples do.
ARCHITECTURES = {"qwen2": {}, "qwen3": {"head_dim": 16}, "mistral": {}, "mixtral": {"num_local_experts": 4},
                 "gemma": {"head_dim": 16}, "gemma2": {"head_dim": 16, "sliding_window": 8},
                 "gemma3_text": {"head_dim": 16, "sliding_window": 8}, "phi3": {}, "granite": {}, "olmo2": {}}


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_same_tokens_as_generate_on_each_covered_architecture(model_type):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=256, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=256, pad_token_id=PAD, bos_token_id=2, eos_token_id=EOS,
                                  initializer_range=0.1, tie_word_embeddings=False, **ARCHITECTURES[model_type])
    config._attn_implementation = "eager" if model_type == "gemma2" else "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    # 12 new tokens after prompts of up to 11: past the sliding window of 8
    want = generate_rows(model, prompts(), max_new_tokens=12, stop_ids=[EOS])
    assert greedy_decode(model, prompts(), max_new_tokens=12, stop_ids=[EOS], pad_id=PAD) == want


def test_same_tokens_as_generate_through_lora():
    import torch

    base = tiny_llama()
    plain = greedy_decode(base, prompts(), max_new_tokens=20, stop_ids=[EOS], pad_id=PAD)
    model = with_lora(base)
    ids = torch.tensor([prompts()[1]])
    with torch.no_grad(), model.disable_adapter():
        base_logits = model(input_ids=ids).logits
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, base_logits, atol=1e-3)  # the adapter acts
    rows = greedy_decode(model, prompts(), max_new_tokens=20, stop_ids=[EOS], pad_id=PAD)
    assert rows == generate_rows(model, prompts(), max_new_tokens=20, stop_ids=[EOS])
    assert rows != plain


def test_rows_stop_at_their_first_stop_id():
    model = tiny_llama()
    free = greedy_decode(model, prompts(), max_new_tokens=20, stop_ids=[], pad_id=PAD)
    stop = free[0][6]
    rows = greedy_decode(model, prompts(), max_new_tokens=20, stop_ids=[stop], pad_id=PAD)
    assert rows[0] == free[0][:free[0].index(stop) + 1]
    for row, full in zip(rows, free):
        assert row == (full[:full.index(stop) + 1] if stop in full else full)
    assert rows == generate_rows(model, prompts(), max_new_tokens=20, stop_ids=[stop])


def test_loop_ends_soon_after_every_row_stopped():
    from engine.fast_decode import STOP_CHECK_EVERY

    model = tiny_llama()
    free = greedy_decode(model, prompts(), max_new_tokens=8, stop_ids=[], pad_id=PAD)
    stops = [row[2] for row in free]  # every row stops by its third token
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        rows = greedy_decode(model, prompts(), max_new_tokens=200, stop_ids=stops, pad_id=PAD)
    finally:
        hook.remove()
    assert all(len(r) <= 3 for r in rows)
    assert len(forwards) <= 1 + STOP_CHECK_EVERY  # the prefill and the steps up to the first check, not 200


def test_nothing_to_decode():
    model = tiny_llama()
    assert greedy_decode(model, [], max_new_tokens=5, stop_ids=[EOS], pad_id=PAD) == []
    assert greedy_decode(model, prompts(), max_new_tokens=0, stop_ids=[EOS], pad_id=PAD) == [[], [], []]


def test_4bit_base_with_lora_matches_generate(demo_model_dir):
    """The trainer's case: an nf4 bitsandbytes base (here on the CPU) under LoRA."""
    from engine.model import load_base_model

    base, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    model = with_lora(base)
    rows = greedy_decode(model, prompts(), max_new_tokens=20, stop_ids=[EOS], pad_id=PAD)
    assert rows == generate_rows(model, prompts(), max_new_tokens=20, stop_ids=[EOS])


def demo_prompts(tokenizer):
    from engine.samples import from_text

    return [from_text(tokenizer, t) for t in ("What is the opposite of hot?", "Name a color.",
                                              "Write one sentence about the sea and the wind.")]


def training_demo_model(demo_model_dir):
    """As the trainer holds it: LoRA over the demo model, gradient checkpointing on, in train mode."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(demo_model_dir))
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = with_lora(base)
    model.train()
    return model


def test_sample_all_same_texts_with_the_switch(demo_model_dir, demo_tokenizer, monkeypatch):
    import engine.samples
    from engine.samples import FAST_DECODE_ENV, sample_all

    model = training_demo_model(demo_model_dir)
    sample_prompts = demo_prompts(demo_tokenizer)
    monkeypatch.delenv(FAST_DECODE_ENV, raising=False)
    plain = sample_all(model, demo_tokenizer, sample_prompts, max_new_tokens=24)
    monkeypatch.setattr(engine.samples, "_fast_decode_broken", False)
    monkeypatch.setenv(FAST_DECODE_ENV, "1")  # compile is asked for; on the CPU the loop runs eagerly
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to generate would warn
        fast = sample_all(model, demo_tokenizer, sample_prompts, max_new_tokens=24)
    assert not engine.samples._fast_decode_broken
    assert [r["output"] for r in fast] == [r["output"] for r in plain]
    assert any(r["output"] for r in fast)
    assert model.training  # left in the mode it was in


def test_sample_all_falls_back_to_generate_once(demo_model_dir, demo_tokenizer, monkeypatch):
    import engine.fast_decode
    import engine.samples
    from engine.samples import FAST_DECODE_ENV, sample_all

    model = training_demo_model(demo_model_dir)
    sample_prompts = demo_prompts(demo_tokenizer)[:2]
    monkeypatch.delenv(FAST_DECODE_ENV, raising=False)
    plain = sample_all(model, demo_tokenizer, sample_prompts, max_new_tokens=12)

    calls = []

    def unsupported(*args, **kwargs):
        calls.append(1)
        raise NotImplementedError("no static cache for this architecture")

    monkeypatch.setattr(engine.fast_decode, "greedy_decode", unsupported)
    monkeypatch.setattr(engine.samples, "_fast_decode_broken", False)
    monkeypatch.setenv(FAST_DECODE_ENV, "eager")
    with pytest.warns(RuntimeWarning, match="fast decoding failed"):
        first = sample_all(model, demo_tokenizer, sample_prompts, max_new_tokens=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = sample_all(model, demo_tokenizer, sample_prompts, max_new_tokens=12)
    assert len(calls) == 1  # not retried
    assert [r["output"] for r in first] == [r["output"] for r in second] == [r["output"] for r in plain]


@pytest.mark.skipif(os.environ.get("LORAPILOT_TEST_COMPILE") != "1",
                    reason="torch.compile on 2 CPU cores is slow; LORAPILOT_TEST_COMPILE=1 runs it")
def test_decode_step_traces_as_one_graph(demo_model_dir):
    """What CUDA graphs need: dynamo traces the step (4-bit base + LoRA, static cache) without graph breaks."""
    import torch
    from transformers import StaticCache

    from engine.fast_decode import _decode_step, _transformers_model
    from engine.model import load_base_model

    base, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    net = _transformers_model(with_lora(base))
    cache = StaticCache(config=net.config, max_cache_len=16)
    tokens, positions = torch.tensor([[5], [6]]), torch.tensor([[0], [0]])
    mask, done = torch.ones(2, 16, dtype=torch.long), torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        net(input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        explained = torch._dynamo.explain(_decode_step)(net, cache, tokens, positions + 1, mask, done,
                                                         torch.tensor([EOS]), torch.tensor(PAD))
    assert explained.graph_break_count == 0, explained.break_reasons
