"""The flex-attention block mask of a packed row, built from its example boundaries without torch.compile.

transformers builds the same mask inside the model with a compiled create_block_mask, one compilation
per new row length until the shape turns dynamic. On the H100/H200 some lengths made that compilation
take minutes (the block sort's kernel: 10 MB of PTX, ptxas over 4 minutes for a 123-block row on an H200;
benchmarks/results/multi_gpu-h200x2-2026-11-23b.md). The engine's default since then. Packed rows
only need block arithmetic on the examples' first and last block: a few eager ops on an
(n_blocks x n_blocks) grid. The model takes a BlockMask given as attention_mask as it is.
"""

from __future__ import annotations

BLOCK = 128  # flex attention's default sparse block size


def document_ids(position_ids):
    """Example index per token of a packed row (positions restart at 0 for each example)."""
    return (position_ids == 0).cumsum(-1) - 1


def packed_block_mask(position_ids, block: int = BLOCK):
    """Causal attention within each example of a (1, L) packed row, as a flex-attention BlockMask."""
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    assert position_ids.shape[0] == 1, "packed rows come one per micro-batch"
    doc = document_ids(position_ids[0])
    length = doc.shape[0]
    n = (length + block - 1) // block
    device = doc.device
    starts = torch.arange(n, device=device) * block
    ends = torch.clamp(starts + block, max=length) - 1
    first, last = doc[starts], doc[ends]
    q = torch.arange(n, device=device)[:, None]
    k = torch.arange(n, device=device)[None, :]
    # Example ids grow along the row: a (q, kv) block pair meets when their example ranges overlap.
    meets = (k <= q) & (first[None, :] <= last[:, None]) & (last[None, :] >= first[:, None])
    # Below the diagonal, a pair is full when the kv block's first example is the q block's last one:
    # then every token of both blocks belongs to that one example.
    # A block cut short by the row's end stays partial, as create_block_mask has it.
    whole = (ends - starts + 1) == block
    full = (k < q) & (first[None, :] == last[:, None]) & whole[:, None] & whole[None, :]
    partial = meets & ~full

    def ordered(grid):
        # counts and column indices, the valid ones first and ascending (stable sort on "not in the grid")
        counts = grid.sum(-1, dtype=torch.int32)
        idx = torch.argsort((~grid).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return counts[None, None], idx[None, None]

    def mask_mod(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (kv_idx <= q_idx)

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod,
                                    seq_lengths=(length, length))
