"""The packed row's flex-attention block mask, built from example boundaries, equals create_block_mask's."""

from __future__ import annotations

import random

import pytest
import torch

from engine.train.block_mask import document_ids, packed_block_mask

flex = pytest.importorskip("torch.nn.attention.flex_attention")


def reference(position_ids):
    doc = document_ids(position_ids[0])
    length = doc.shape[0]

    def mask_mod(b, h, q, k):
        return (doc[q] == doc[k]) & (k <= q)
    return flex.create_block_mask(mask_mod, 1, None, length, length, device="cpu")


def row(lengths):
    return torch.cat([torch.arange(n) for n in lengths])[None]


@pytest.mark.parametrize("seed", range(12))
def test_same_blocks_and_same_mask_as_create_block_mask(seed):
    rng = random.Random(seed)
    # example lengths around and across the 128-token blocks, rows that end inside a block
    lengths = [rng.choice([1, 2, 127, 128, 129, rng.randint(1, 600)]) for _ in range(rng.randint(1, 14))]
    pos = row(lengths)
    ours, ref = packed_block_mask(pos), reference(pos)
    assert torch.equal(ours.to_dense(), ref.to_dense())
    for name in ("kv_num_blocks", "full_kv_num_blocks"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name


def test_attention_through_it_keeps_examples_apart():
    lengths = [150, 90, 200, 33]
    pos = row(lengths)
    q, k, v = (torch.randn(1, 2, pos.shape[1], 16) for _ in range(3))
    out = flex.flex_attention(q, k, v, block_mask=packed_block_mask(pos))
    # the second example alone, attended causally on its own
    s, e = 150, 240
    alone = flex.flex_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], block_mask=packed_block_mask(row([90])))
    torch.testing.assert_close(out[:, :, s:e], alone, atol=1e-5, rtol=1e-5)
    causal = torch.nn.functional.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e],
                                                              is_causal=True)
    torch.testing.assert_close(alone, causal, atol=1e-5, rtol=1e-5)


def test_the_model_takes_it_as_its_attention_mask():
    # The trainer hands the mask to the model as attention_mask: transformers must use it as it is,
    # giving the logits the SDPA path computes from position_ids alone (as in training: no cache, which
    # would turn transformers' packed-row detection off), and each example's logits as if alone.
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(cfg).eval()
    pos = row([150, 90, 200, 33])
    ids = torch.randint(0, 97, pos.shape)
    with torch.no_grad():
        model.config._attn_implementation = "sdpa"
        want = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        alone = model(input_ids=ids[:, 150:240], use_cache=False).logits
        model.config._attn_implementation = "flex_attention"
        got = model(input_ids=ids, position_ids=pos, attention_mask=packed_block_mask(pos), use_cache=False).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[:, 150:240], alone, atol=1e-4, rtol=1e-4)
