"""The base model loads without the Hub's kernels: transformers 5.25 downloads and swaps in layers from the Hub by
default (use_kernels is on whenever `kernels` is installed, and 5.25 requires it), which fails offline and trains a
path the estimate never measured (engine.model.causal_lm)."""

from __future__ import annotations


def test_the_base_model_loads_without_the_hubs_kernels(demo_model_dir):
    from engine.model import load_base_model

    model, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    assert model.use_kernels is False
