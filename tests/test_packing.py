"""Packing: no attention or labels cross an example boundary; the planner keeps the optimizer steps."""

from __future__ import annotations

import random

import pytest
import torch

from engine.data.packing import Collator, plan_steps
from engine.data.types import IGNORE_INDEX, TokenizedExample


def _example(ids: list[int], n_prompt: int) -> TokenizedExample:
    labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    return TokenizedExample(input_ids=ids, labels=labels, source="t", full_length=len(ids),
                            trained_tokens=len(ids) - n_prompt, trained_tokens_full=len(ids) - n_prompt)


@pytest.fixture(scope="module")
def model(demo_model_dir):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    m.config.use_cache = False  # as in training: with a cache, transformers ignores packed position_ids
    return m.eval()


@pytest.fixture(scope="module")
def pair():
    rng = random.Random(0)
    a = _example([1] + [rng.randrange(10, 800) for _ in range(11)], 5)
    b = _example([1] + [rng.randrange(10, 800) for _ in range(8)], 3)
    return a, b


def test_packed_row_layout(pair):
    a, b = pair
    batch = Collator(pad_id=3, pack=True)([[a, b]])
    assert "attention_mask" not in batch  # its presence would re-enable cross-example attention
    pos = batch["position_ids"][0].tolist()
    assert pos == list(range(len(a))) + list(range(len(b)))
    labels = batch["labels"][0].tolist()
    assert labels[len(a)] == IGNORE_INDEX  # B's first label would be predicted from A's last token
    assert labels[:len(a)] == [IGNORE_INDEX] + a.labels[1:]


def test_packed_logits_equal_alone(model, pair):
    a, b = pair
    batch = Collator(pad_id=3, pack=True)([[a, b]])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone_b = model(input_ids=torch.tensor([b.input_ids])).logits[0]
        alone_a = model(input_ids=torch.tensor([a.input_ids])).logits[0]
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      attention_mask=torch.ones_like(batch["input_ids"])).logits[0]
    torch.testing.assert_close(packed[len(a):], alone_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[:len(a)], alone_a, atol=1e-4, rtol=1e-4)
    # The trap DESIGN.md warns about: an all-ones mask beside position_ids lets B attend to A.
    assert not torch.allclose(leaky[len(a):], alone_b, atol=1e-4)


def test_packed_loss_equals_unpacked_padded(model, pair):
    a, b = pair
    packed = Collator(pad_id=3, pack=True)([[a, b]])
    padded = Collator(pad_id=3, pack=False)([a, b])
    with torch.no_grad():
        lp = model(**packed).loss
        lu = model(**padded).loss
    # Both are the mean over the same trained tokens.
    torch.testing.assert_close(lp, lu, atol=1e-4, rtol=1e-4)


def test_padding_to_a_length_bucket_changes_neither_the_loss_nor_the_counts(model, pair):
    """LEVERS.pad_multiple (CUDA graphs' repeating lengths): the pad is one more example no label reads."""
    a, b = pair
    plain_collator, padded_collator = Collator(pad_id=3, pack=True), Collator(pad_id=3, pack=True, pad_multiple=16)
    plain, padded = plain_collator([[a, b]]), padded_collator([[a, b]])
    n = len(a) + len(b)
    assert n % 16 and padded["input_ids"].shape[1] == -(-n // 16) * 16
    assert padded["labels"][0, n:].eq(IGNORE_INDEX).all()
    assert padded["position_ids"][0, n:].tolist() == list(range(padded["input_ids"].shape[1] - n))
    plain_collator.consume(), padded_collator.consume()
    assert padded_collator.tokens_seen == plain_collator.tokens_seen == n  # padding is not a token seen
    with torch.no_grad():
        lp, lq = model(**plain).loss, model(**padded).loss
        logits = model(input_ids=padded["input_ids"], position_ids=padded["position_ids"]).logits[0, :n]
        alone = model(input_ids=plain["input_ids"], position_ids=plain["position_ids"]).logits[0]
    torch.testing.assert_close(lq, lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, alone, atol=1e-4, rtol=1e-4)  # the examples never attend to the pad
    assert Collator(pad_id=3, pack=True, pad_multiple=n)([[a, b]])["input_ids"].shape[1] == n  # a multiple already


def test_planner_keeps_every_example_once_and_the_budget():
    rng = random.Random(1)
    lengths = [rng.randint(20, 300) for _ in range(203)]
    plan = plan_steps(lengths, examples_per_step=16, num_epochs=2, seed=3, token_budget=1024, micro_batch_size=4)
    for epoch in plan.epochs:
        seen = [i for step in epoch for mb in step for i in mb]
        assert sorted(seen) == list(range(203))
        for step in epoch[:-1]:
            assert sum(len(mb) for mb in step) == 16  # the effective batch is kept
            assert len(step) == plan.micro_batches_per_step
        for step in epoch:
            for mb in step:
                assert mb and sum(lengths[i] for i in mb) <= 1024
    assert plan.epochs[0] != plan.epochs[1]  # reshuffled per epoch
    again = plan_steps(lengths, examples_per_step=16, num_epochs=2, seed=3, token_budget=1024, micro_batch_size=4)
    assert again.epochs == plan.epochs  # deterministic: resume sees the same steps


def test_planner_without_budget_uses_micro_batches():
    plan = plan_steps([10] * 40, examples_per_step=8, num_epochs=1, seed=0, token_budget=None, micro_batch_size=2)
    assert plan.micro_batches_per_step == 4
    assert all(len(mb) == 2 for step in plan.epochs[0] for mb in step)


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_the_eos_is_trained_where_the_pad_is_the_eos(pack):
    """load_tokenizer sets pad = EOS when a tokenizer has none: padding is masked by position, so every example's
    trained EOS keeps its label, and only the padding is left out (of the labels and of the attention)."""
    eos = 2
    long = _example([1, 40, 41, 42, 43, 44, eos], 3)
    short = _example([1, 50, 51, eos], 2)
    batch = Collator(pad_id=eos, pack=pack, pad_multiple=16 if pack else 0)([[long, short]] if pack else [long, short])
    labels, ids = batch["labels"].tolist(), batch["input_ids"].tolist()
    if pack:
        n = len(long) + len(short)
        assert labels[0][:n] == [IGNORE_INDEX] + long.labels[1:] + [IGNORE_INDEX] + short.labels[1:]
        assert labels[0][n:] == [IGNORE_INDEX] * (16 - n) and ids[0][n:] == [eos] * (16 - n)
        return
    assert labels[1] == short.labels + [IGNORE_INDEX] * 3 and labels[1][3] == eos   # its EOS trained, then pad
    assert ids[1] == short.input_ids + [eos] * 3
    assert batch["attention_mask"].tolist() == [[1] * 7, [1] * 4 + [0] * 3]
    assert labels[0] == long.labels and labels[0][-1] == eos
