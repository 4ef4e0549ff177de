"""Whether dynamo is tracing a compiled layer whose graph holds the layer's own activation checkpoint
(LEVERS.checkpoint_in_graph; compiled_layers._in_graph_or_not sets it around the call, dynamo reads it as it traces).

Inside that region every op is already recomputed by the one backward graph, each once. A projection's own
checkpoint nested in it does harm rather than good:
- graph_dequant's checkpoint around the NF4 dequantise: AOTAutograd's partitioner saves the output of a checkpoint
  region that feeds a later one (cleanup_recompute_tags: the 16-bit weight, between the dequantise's region and the
  layer's), all of a model's 16-bit weights through the backward (+15.7 GiB on Llama-2-7B, H100, torch 2.11:
  benchmarks/results/user_path-s22-h100-2026-12-06.md);
- the mask-free dropout's checkpoint: the dropped input one node for lora_A's recomputed output and for its weight
  gradient, alive from one to the other (mask_free_dropout traces its autograd Function instead).
"""

from __future__ import annotations

import contextlib

_inside = False


def inside() -> bool:
    return _inside


@contextlib.contextmanager
def tracing():
    """Within: the layer's forward is traced inside its own checkpoint."""
    global _inside
    before, _inside = _inside, True
    try:
        yield
    finally:
        _inside = before
