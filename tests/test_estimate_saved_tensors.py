"""The estimate's per-layer activation term against what autograd really saves, on the CPU.

The demo's tiny Llama (a 4-bit NF4 base; one plain 16-bit case) is built by the trainer's own build_model (engine.train.run) from the plan of
a CPU run, and one decoder layer runs forward under the autocast the Trainer would put around it. Every tensor autograd
saves goes through a saved-tensors hook and is counted once per storage (views share one: q, k and v's LoRA inputs
are one tensor). Per token: the difference between two lengths, so that the adapters' weight casts (as many bytes
at any length) drop out. With gradient checkpointing what counts for the peak is what the layer's recomputation
saves in backward (torch's non-reentrant checkpoint recomputes all of it before the first is used), less the layer's
input, which checkpointing keeps anyway: recorded through torch's recomputation hook.

A GPU cannot run here; where its path differs, the GPU path is emulated and the difference is stated:
- peft asks torch.is_autocast_enabled() with no device, which reads CUDA's autocast. On the CPU it says no and peft
  casts each adapter's input to fp32 (a copy of its own): that is what a CPU run does (the bf16 cases below). The
  GPU's view is given back to peft by asking the CPU's autocast instead (the `gpu_view` cases).
- ATen's CPU dropout keeps a noise tensor in the input's dtype where a GPU keeps a bool mask: the emulated GPU cases
  have no nn.Dropout (dropout 0, or mask-free).
- The CPU's SDPA returns its output token-major, so o_proj's input is the attention's saved output itself. The
  estimate counts o_proj's LoRA input apart on a GPU (not measured there yet): the emulated cases ask the GPU's
  estimate with that one rule as the CPU has it.

A packed row (the CPU's plan packs: several examples in one row, positions restarting at each) goes through SDPA
with the block-diagonal mask transformers builds from position_ids: the `packed` cases feed four examples so, the
mask as the model builds it. Its per-layer copy grows with the square of the row: those cases compare the saved
bytes' growth from the short row to the long one with the estimate's, not bytes per token.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import NamedTuple

import pytest

torch = pytest.importorskip("torch")

# by its package path: test_estimate_mask_free_dropout imports this module in a fresh interpreter, outside pytest
from tests.conftest import saved_storages  # noqa: E402

from engine.config import config_from_dict  # noqa: E402
from engine.estimate.memory import (  # noqa: E402
    attention_mask_bytes,
    layer_activation_bytes,
    recomputed_layer_bytes,
    shape_for_plan,
)
from engine.train.varlen_attention import ATTENTION  # noqa: E402

SHORT, LONG = 48, 80     # tokens of the two forwards; their difference gives bytes per token
# The estimate models each saved tensor, so the two agree to the byte; this leaves room for nothing else.
TOLERANCE = 0.005


def _cfg(model_dir, precision: str, dropout: float, targets, quantization: str = "nf4"):
    return config_from_dict({"model": str(model_dir), "dataset": {"path": "x.jsonl"}, "quantization": quantization,
                             "lora": {"r": 8, "alpha": 16, "dropout": dropout, "target_modules": targets},
                             "training": {"precision": precision, "gradient_checkpointing": True}})


def _built(cfg, mask_free: bool):
    """The peft model the trainer would train (engine.train.run.build_model) from this CPU's plan, and the plan."""
    from engine.estimate import read_model_config
    from engine.model import Hardware
    from engine.plan import Machine, plan_run
    from engine.train.run import Inputs, build_model

    hw = Hardware("cpu", "cpu", False, None, 0)
    plan = plan_run(cfg, Machine.for_hardware(hw), lengths=[LONG] * 8, info=read_model_config(cfg.model))
    plan = replace(plan, mask_free_dropout=mask_free)     # the plan chooses it on a GPU only: forced here
    inputs = Inputs(hw=hw, dtype_name=plan.precision, n_ranks=1, tokenizer=None, data=None)  # type: ignore[arg-type]
    model = build_model(cfg, inputs, plan).model
    model.train()
    return model, plan


def _autocast(precision: str):
    """What the Trainer puts around the forward (accelerate: autocast on the training device, none in fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


@contextlib.contextmanager
def _gpu_view(on: bool):
    """peft's torch.is_autocast_enabled() answering for the CPU's autocast, as it answers for CUDA's on a GPU."""
    if not on:
        yield
        return
    real = torch.is_autocast_enabled
    torch.is_autocast_enabled = lambda *device: real(*device) if device else real("cpu")
    try:
        yield
    finally:
        torch.is_autocast_enabled = real


def _decoder(model):
    return model.base_model.model.model


EXAMPLES = 4     # in a packed row


def _positions(tokens: int, packed: bool):
    """position_ids of one row: one example, or EXAMPLES packed ones (positions restart at each)."""
    if not packed:
        return torch.arange(tokens)[None]
    n = tokens // EXAMPLES
    return torch.cat([torch.arange(n)] * (EXAMPLES - 1) + [torch.arange(tokens - n * (EXAMPLES - 1))])[None]


def _layer_saved_bytes(model, precision: str, tokens: int, gpu_view: bool, packed: bool = False) -> int:
    """Bytes of the distinct storages the first decoder layer saves in one forward (no checkpointing), its
    parameters, the rotary tables and the attention mask (computed once for all layers) left out."""
    from transformers.masking_utils import create_causal_mask

    decoder = _decoder(model)
    layer = decoder.layers[0]
    x = torch.randn(1, tokens, decoder.config.hidden_size, dtype=decoder.embed_tokens.weight.dtype,
                    requires_grad=True)
    positions = _positions(tokens, packed)
    cos, sin = decoder.rotary_emb(x, positions)
    # As the model builds it (None for one example: SDPA's causal kernel, no mask)
    mask = create_causal_mask(config=decoder.config, inputs_embeds=x, attention_mask=None, cache=None,
                              position_ids=positions)
    assert (mask is not None) == packed
    apart = {t.untyped_storage().data_ptr() for t in (cos, sin, *model.parameters(), *([mask] if packed else []))}
    checkpointing, layer.gradient_checkpointing = layer.gradient_checkpointing, False
    try:
        with _gpu_view(gpu_view), _autocast(precision), saved_storages(apart) as storages:
            layer(x, attention_mask=mask, position_ids=positions, position_embeddings=(cos, sin))
    finally:
        layer.gradient_checkpointing = checkpointing
    return sum(storages.values())


def _recomputed_bytes(model, precision: str, tokens: int, gpu_view: bool,
                      packed: bool = False) -> tuple[list[int], int]:
    """Per decoder layer, bytes of the distinct storages its recomputation saves during backward (a training step
    with the engine's checkpointing), less the layer's inputs (checkpointing keeps them) and the parameters; and the
    bytes of the layers' 4-d inputs (the attention mask the model builds, one for all layers; 0 without).
    Recorded by benchmarks/saved_tensors.py's recorded_recomputations, the one place that uses torch's private
    recomputation hook."""
    from benchmarks.saved_tensors import recorded_recomputations

    held: list = []     # each layer's inputs, alive (checkpointing holds them): their storages are not reused

    def inputs(module, args, kwargs):
        held.extend(t for t in (*args, *kwargs.values(), *(kwargs.get("position_embeddings") or ()))
                    if isinstance(t, torch.Tensor))

    decoder = _decoder(model)
    hooks = [layer.register_forward_pre_hook(inputs, with_kwargs=True) for layer in decoder.layers]
    ids = torch.randint(0, decoder.config.vocab_size, (1, tokens))
    try:
        with recorded_recomputations(lambda: None) as frames, _gpu_view(gpu_view):
            with _autocast(precision):
                loss = model(input_ids=ids, labels=ids, position_ids=_positions(tokens, packed)).loss
            loss.backward()
    finally:
        for h in hooks:
            h.remove()
    assert len(frames) == len(decoder.layers), "no recomputation recorded: torch's checkpoint internals changed"
    apart = {t.untyped_storage().data_ptr() for t in (*held, *model.parameters())}
    masks = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in held if t.dim() == 4}
    return [sum(n for ptr, n in f.items() if ptr not in apart) for f in frames], sum(masks.values())


ALL = "all-linear"
QV = ["q_proj", "v_proj"]


class Case(NamedTuple):
    precision: str
    dropout: float
    mask_free: bool
    targets: str | list[str]
    gpu_view: bool                  # peft sees the autocast, as on a GPU
    recompute: bool = False         # also measured as checkpointing recomputes it
    quantization: str = "nf4"
    packed: bool = False            # a packed row of EXAMPLES examples, the mask as the model builds it

    def __str__(self) -> str:
        return (f"{self.quantization}-{self.precision}-dropout{self.dropout}{'-maskfree' if self.mask_free else ''}"
                f"-{'all' if self.targets == ALL else 'qv'}{'-gpu_view' if self.gpu_view else ''}"
                f"{'-packed' if self.packed else ''}")


CASES = [
    Case("fp32", 0.05, False, ALL, False, recompute=True),    # the CPU's own run: fp32, no autocast
    Case("fp32", 0.0, False, ALL, False, recompute=True),
    Case("fp32", 0.05, True, ALL, False),
    Case("fp32", 0.05, False, QV, False),
    Case("fp32", 0.0, False, QV, False),
    Case("bf16", 0.05, False, ALL, False),     # bf16 on the CPU: peft does not see autocast, copies each input
    Case("bf16", 0.0, False, ALL, False),
    Case("bf16", 0.0, False, ALL, True, recompute=True),   # the GPU's bf16 path: a bf16 stream the adapters share
    Case("bf16", 0.05, True, ALL, True),
    Case("bf16", 0.0, False, QV, True),
    Case("bf16", 0.0, False, ALL, True, quantization="none"),   # plain LoRA: peft casts each input to fp32 first
    Case("fp32", 0.05, False, ALL, False, recompute=True, packed=True),   # the demo's own run: packed rows
    Case("bf16", 0.0, False, QV, False, packed=True),    # the mask's copy in the query's dtype
]


@pytest.fixture(scope="module")
def built(demo_model_dir):
    """The model, its plan and its config for a case, each built once."""
    models: dict = {}

    def get(case: Case):
        key = (case.precision, case.dropout, case.mask_free, str(case.targets), case.quantization)
        if key not in models:
            torch.manual_seed(0)
            cfg = _cfg(demo_model_dir, case.precision, case.dropout, case.targets, case.quantization)
            models[key] = (*_built(cfg, case.mask_free), cfg)
        return models[key]
    return get


def _estimated(cfg, plan, case: Case):
    """The architecture and the estimate's shape of the plan; for the emulated GPU path, a GPU's shape with varlen
    flash attention, whose output is o_proj's input as the CPU's SDPA's is (measured on an H100)."""
    from engine.estimate import read_model_config

    arch = read_model_config(cfg.model).arch
    shape = shape_for_plan(cfg, arch, plan)
    assert shape.device == "cpu" and shape.precision == plan.precision and shape.packed
    shape = replace(shape, packed=case.packed)     # the plan packs; a case's row is one example unless packed
    if case.gpu_view:
        shape = replace(shape, device="cuda", attention=ATTENTION)   # the GPU's kernel for packed rows
    return arch, shape


def _estimated_growth(arch, shape, per_token: float) -> float:
    """The estimate's growth of one layer's saved bytes from SHORT to LONG tokens: per token, plus the layer's copy of
    a packed row's mask (the square of the row)."""
    grows = per_token * (LONG - SHORT)
    return grows + attention_mask_bytes(shape, LONG)[0] - attention_mask_bytes(shape, SHORT)[0]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_one_layer_saves_what_the_estimate_counts(built, case):
    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    measured = (_layer_saved_bytes(model, case.precision, LONG, case.gpu_view, case.packed)
                - _layer_saved_bytes(model, case.precision, SHORT, case.gpu_view, case.packed))
    estimated = _estimated_growth(arch, shape, layer_activation_bytes(arch, shape))
    assert measured == pytest.approx(estimated, rel=TOLERANCE)


@pytest.mark.parametrize("case", [c for c in CASES if c.recompute], ids=str)
def test_a_recomputed_layer_saves_what_the_estimate_counts(built, case):
    model, plan, cfg = built(case)
    arch, shape = _estimated(cfg, plan, case)
    short, _ = _recomputed_bytes(model, case.precision, SHORT, case.gpu_view, case.packed)
    long, mask = _recomputed_bytes(model, case.precision, LONG, case.gpu_view, case.packed)
    for a, b in zip(short, long):
        assert b - a == pytest.approx(_estimated_growth(arch, shape, recomputed_layer_bytes(arch, shape)),
                                      rel=TOLERANCE)
    # The mask the model builds for all layers: kept with their inputs, counted once
    assert mask == attention_mask_bytes(shape, LONG)[1]


def test_on_a_gpu_the_plans_attention_decides_whether_o_projs_input_is_counted_apart():
    """Varlen flash attention's output is o_proj's input (measured on an H100): an adapter on o_proj without dropout
    keeps nothing more. Flex attention is not measured: its output counted apart, hidden x 2 bytes more per token."""
    from engine.estimate import get_gpu, read_model_config
    from engine.plan import Machine, plan_run

    cfg = config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl"}, "lora": {"dropout": 0.0}})
    info = read_model_config("llama-2-7b")
    plan = plan_run(cfg, Machine.for_gpu(get_gpu("h200-141")), lengths=[400] * 200, info=info)
    assert plan.attention == ATTENTION
    varlen = shape_for_plan(cfg, info.arch, plan)
    assert varlen.attention == plan.attention
    flex = shape_for_plan(cfg, info.arch, replace(plan, attention="flex_attention"))
    assert layer_activation_bytes(info.arch, flex) - layer_activation_bytes(info.arch, varlen) == 2 * info.arch.hidden
