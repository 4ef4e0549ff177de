"""Mask-free LoRA dropout (LEVERS.mask_free_dropout, engine.train.mask_free_dropout): the keep mask is a hash of
(seed, element), regenerated in backward, so a LoRA'd layer saves for backward what it saves without dropout.

On the CPU with the real 4-bit demo model: the mask's statistics; the same loss and LoRA gradients as peft's own
dropout given the same masks; the same gradients through torch's activation checkpoint as without it; the tensors
one layer saves for backward, counted; the saved adapter unchanged; the plan, the estimate and a real training run
reading the one plan field. Both forms of the hash (int64, and int32 words under LEVERS.mask_hash32) draw the same
masks, eagerly and compiled. The compiled path's checks (aot_eager_decomp_partition: AOTAutograd's min-cut
partitioner, which decides what a compiled graph saves) run under LORAPILOT_TEST_COMPILE=1; the GPU run
(benchmarks/user_path.py's compiledmf side) measures the memory and the speed with inductor.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest
import yaml

torch = pytest.importorskip("torch")

from engine.config import config_from_dict  # noqa: E402
from engine.plan import COMPILE_MIN_STEPS, Machine, plan_run  # noqa: E402
from engine.train import mask_free_dropout as mfd  # noqa: E402
from engine.train import speed  # noqa: E402

GPU = Machine("cuda", "GPU", 141.0)
P = 0.1
compile_tests = pytest.mark.skipif(os.environ.get("LORAPILOT_TEST_COMPILE") != "1",
                                   reason="torch.compile on 2 CPU cores is slow; LORAPILOT_TEST_COMPILE=1 runs it")


# ------------------------------------------------------------------------------------------------ the mask
HASHES = pytest.mark.parametrize("hash32", [False, True], ids=["int64", "int32"])


def _mask(seed: int, shape=(512, 512), p: float = P, hash32: bool = False):
    return mfd.keep_mask(torch.tensor([seed]), shape, mfd.drop_threshold(p), torch.device("cpu"), hash32)


def _corr(a, b) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))


@HASHES
@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_mask_keeps_one_minus_p_of_the_elements_independently(p, hash32):
    n = 512 * 512
    tolerance = 5 * (p * (1 - p) / n) ** 0.5   # five standard deviations of the kept fraction
    for seed in (0, 1, 2, 12345, 2 ** 31 - 1):
        keep = _mask(seed, p=p, hash32=hash32)
        assert abs(keep.double().mean().item() - (1 - p)) < tolerance
        # neighbours along a row, along a column, and the next seed's mask: no correlation beyond noise (~0.002)
        assert abs(_corr(keep[:, 1:], keep[:, :-1])) < 0.01
        assert abs(_corr(keep[1:], keep[:-1])) < 0.01
        assert abs(_corr(keep, _mask(seed + 1, p=p, hash32=hash32))) < 0.01
    # a pure function of the seed and the element: the same seed, the same mask, whatever the shape's rows
    assert torch.equal(_mask(7, hash32=hash32), _mask(7, hash32=hash32))
    assert torch.equal(_mask(7, (2, 256, 512), hash32=hash32).reshape(512, 512), _mask(7, hash32=hash32))
    assert not torch.equal(_mask(7, hash32=hash32), _mask(8, hash32=hash32))


def _words(n: int):
    """n 32-bit words as int64 in [0, 2**32): the edges of both halves, then random ones."""
    edges = torch.tensor([0, 1, 0xFFFF, 0x10000, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1, 0x846CA68B,
                          0x7FEB352D, 0x9E3779B9])
    return torch.cat([edges, torch.randint(0, 2 ** 32, (n,), generator=torch.Generator().manual_seed(1))])


def _int32(words):
    return (words - ((words >> 31) << 32)).to(torch.int32)   # in range before the cast: the same bits


def test_the_int32_hash_gives_the_int64_hashs_words():
    """The int32 form relies on its multiplies wrapping (a signed overflow, undefined in C++): ATen's eager kernels
    here, vectorised and not (the 11 edge words first), give every word the exact int64 form gives (which never
    overflows)."""
    words = _words(1 << 20)
    assert torch.equal(mfd._hash32_i32(_int32(words)), _int32(mfd._hash32(words)))
    assert torch.equal(mfd._hash32_i32(_int32(words[:11])), _int32(mfd._hash32(words[:11])))   # scalar tails
    assert [mfd._signed32(w) for w in (0, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32)] == [0, 2 ** 31 - 1, -2 ** 31,
                                                                                           -1, 0]


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 0.95])
def test_both_hashes_draw_the_same_mask(p):
    """The same elements kept, whatever the seed (the seed's own hash too), the shape, the chunking, and past 2**31
    and 2**32 elements, where the int32 index wraps as the int64 form's index, masked to 32 bits, does."""
    threshold = mfd.drop_threshold(p)
    for seed in (0, 1, 2 ** 30, 2 ** 31 - 1):
        for shape in ((1, 1), (3, 5, 7), (129, 96)):
            assert torch.equal(_mask(seed, shape, p), _mask(seed, shape, p, hash32=True)), (seed, shape)
    cols = 1000
    key = torch.tensor(0x9E3779B9)   # an int64 word with its top bit set
    for start in (2 ** 31 // cols - 3, 2 ** 32 // cols - 3, 3 * 2 ** 32 // cols):
        old = mfd._keep_rows(key, start, start + 7, torch.arange(cols), threshold)
        assert torch.equal(mfd._keep_rows32(_int32(key), start, start + 7, cols, threshold, "cpu"), old), start


@HASHES
def test_the_eager_mask_made_in_chunks_is_the_whole_mask(monkeypatch, hash32):
    whole = _mask(3, (37, 96), hash32=hash32)
    monkeypatch.setattr(mfd, "EAGER_CHUNK_ELEMENTS", 5 * 96 + 7)   # 5 rows a chunk, the last one short
    assert torch.equal(_mask(3, (37, 96), hash32=hash32), whole)


@HASHES
def test_the_function_computes_what_autograd_of_the_dropped_linear_does(hash32):
    x = torch.randn(3, 40, 24, requires_grad=True)
    w = torch.randn(8, 24, requires_grad=True)
    seed = torch.tensor([99])
    out = mfd.DroppedLoraA.apply(x, w, seed, mfd.drop_threshold(P), hash32)
    g = torch.randn_like(out)
    out.backward(g)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = torch.nn.functional.linear(x2 * _mask(99, x.shape, hash32=hash32) / (1 - P), w2)   # nn.Dropout's scale
    ref.backward(g)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)
    # p = 0 is a plain linear
    torch.testing.assert_close(mfd.DroppedLoraA.apply(x, w, seed, 0, hash32), torch.nn.functional.linear(x, w))


@compile_tests
@HASHES
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_inductors_generated_code_draws_the_same_mask(hash32, backend):
    """The hash as inductor generates it (C++ here, Triton on the GPU), and as AOTAutograd's traced graph runs it,
    keeps the elements the eager int64 ops keep, in the compiled path's form (the dropped linear inside a checkpoint). The int64 form never overflows; the int32
    form's multiplies wrap in the generated C++ as in ATen's (benchmarks/mask_hash_ops.py checks Triton's on a GPU).
    Past 2**31 elements the int32 kernel's index wraps: the eager test above pins the words there."""
    threshold = mfd.drop_threshold(0.05)
    x, w, seed = torch.randn(300, 517), torch.randn(16, 517), torch.tensor([12345])   # 517: vector loops' tails

    def dropped(x, w, seed):
        return torch.utils.checkpoint.checkpoint(mfd._dropped_linear, x, w, seed, threshold, hash32,
                                                 use_reentrant=False, preserve_rng_state=False)

    torch._dynamo.reset()
    xc, wc = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = torch.compile(dropped, backend=backend, dynamic=True)(xc, wc, seed)
    out.sum().backward()
    xe, we = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = mfd.DroppedLoraA.apply(xe, we, seed, threshold)   # the int64 form, eagerly
    ref.sum().backward()
    assert torch.equal(xc.grad == 0, xe.grad == 0)   # the same elements dropped, forward and backward
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wc.grad, we.grad, rtol=1e-4, atol=1e-4)


@compile_tests
@HASHES
def test_a_compiled_step_hashes_each_mask_once_a_graph(hash32):
    """The compiled path's backward uses each keep mask twice (grad_x, and the dropped input lora_A's weight gradient
    reads): inductor's Triton code, as written for the GPU, hashes it once, both in one kernel. A step then hashes
    each mask 3 times: forward, the checkpoint's recompute (the forward graph again), backward. With the mask inlined
    into each of its users and no fusion (realize threshold 1000, max_fusion_size 1) the backward hashes it twice."""
    from benchmarks.mask_hash_ops import compiled_graphs, hashes, lora_linear_step

    graphs = compiled_graphs(lora_linear_step(hash32, "cpu"), "cpu")
    assert [(kind, sum(map(hashes, sources))) for kind, sources in graphs] == [("forward", 1), ("backward", 1)]


@compile_tests
def test_a_compiled_decoder_layer_hashes_each_mask_once_a_graph():
    """The same through a whole compiled decoder layer as the trainer runs it (7 adapters, their masks hashed in the
    kernels of the RMSNorms, attention's and the MLP's pointwise ops), the default int64 form."""
    from benchmarks.mask_hash_ops import compiled_graphs, decoder_layer_step, hashes

    graphs = compiled_graphs(decoder_layer_step(False, "cpu"), "cpu")
    assert [(kind, sum(map(hashes, sources))) for kind, sources in graphs] == [("forward", 7), ("backward", 7)]


# ------------------------------------------------------------------------------------------ the 4-bit model
def _model(model_dir, dropout: float = P, checkpointing: bool = True):
    """The demo's 4-bit llama, LoRA on all linears with this dropout, lora_B nonzero (test_compiled_layers')."""
    from tests.test_compiled_layers import _model as lora_model

    return lora_model(model_dir, dropout=dropout, checkpointing=checkpointing)


def _step(model, seed: int = 5, forward_in=contextlib.nullcontext):
    """One packed micro-batch, forward (inside forward_in(), as the Trainer's autocast) and backward, from a fixed
    RNG state; the loss and the LoRA gradients."""
    model.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 200, (1, 56), generator=gen)
    positions = torch.cat([torch.arange(20), torch.arange(36)])[None]
    torch.manual_seed(seed)
    with forward_in():
        loss = model(input_ids=ids, position_ids=positions, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _dropouts(model):
    return [(m, name, d) for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
            for name, d in m.lora_dropout.items()]


@contextlib.contextmanager
def _peft_dropout_with_the_seeds_masks(model):
    """peft's own dropout path (nn.Dropout -> lora_A, autograd saving the dropped copy) with a test-only forward
    on each nn.Dropout that draws its mask as the mask-free dropout does: a seed from torch's generator, then the
    same keep mask. Same RNG state, same masks."""
    def forward(self, x):
        seed = torch.randint(mfd._SEED_HIGH, (1,), device=x.device)
        return x * mfd.keep_mask(seed, x.shape, mfd.drop_threshold(self.p), x.device) * (1.0 / (1.0 - self.p))

    drops = [d for _, _, d in _dropouts(model)]
    for d in drops:
        d.forward = forward.__get__(d)
    try:
        yield
    finally:
        for d in drops:
            del d.forward


@pytest.fixture(scope="module")
def lora_model(demo_model_dir):
    return _model(demo_model_dir)


def _installed(model, hash32: bool = False) -> contextlib.AbstractContextManager:
    """Installs the mask-free dropout for the test, and puts peft's modules back after it."""
    saved = [(m, name, d, m.lora_A[name].__class__) for m, name, d in _dropouts(model)]

    @contextlib.contextmanager
    def ctx():
        n = mfd.install(model, hash32=hash32)
        try:
            yield n
        finally:
            for m, name, d, cls in saved:
                m.lora_dropout[name] = d
                m.lora_A[name].__class__ = cls
    return ctx()


@HASHES
def test_same_masks_give_peft_dropouts_loss_and_lora_gradients(lora_model, hash32):
    model = lora_model
    with _peft_dropout_with_the_seeds_masks(model):
        ref_loss, ref_grads = _step(model)
    with _installed(model, hash32) as n:
        assert n == len(_dropouts(model)) > 0
        loss, grads = _step(model)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7)
    # and the masks are real dropout: peft's plain path (other masks) trains a different step
    plain_loss, _ = _step(model)
    assert plain_loss != pytest.approx(loss, rel=1e-6)


def test_under_autocast_with_the_bf16_stream_the_same(demo_model_dir):
    """As on the GPU: the residual stream in bf16 (engine.train.speed.keep_unquantised_16bit), the step under bf16
    autocast, the adapters in fp32, the backward outside autocast (as the Trainer runs it). The mask-free path casts
    what autocast would cast, and its backward works in those dtypes."""
    model = _model(demo_model_dir)
    speed.keep_unquantised_16bit(model, lambda _: None)
    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    with _peft_dropout_with_the_seeds_masks(model):
        ref_loss, ref_grads = _step(model, forward_in=autocast)
    with _installed(model):
        loss, grads = _step(model, forward_in=autocast)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for name in grads:
        assert grads[name].dtype == torch.float32
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7)


def test_eval_mode_drops_nothing(lora_model):
    model = lora_model
    model.eval()
    try:
        ids = torch.randint(5, 200, (1, 16), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(input_ids=ids).logits
            with _installed(model):
                out = model(input_ids=ids).logits
    finally:
        model.train()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_dropout_zero_installs_nothing_and_trains_the_same(demo_model_dir):
    model = _model(demo_model_dir, dropout=0.0)
    ref_loss, ref_grads = _step(model)
    assert mfd.install(model) == 0
    assert not any(mfd.installed(m) for m in model.modules())
    loss, grads = _step(model)
    assert loss == ref_loss
    assert all(torch.equal(grads[n], ref_grads[n]) for n in grads)


def test_the_checkpoint_recompute_draws_the_forwards_masks(demo_model_dir, lora_model):
    """The seeds come from torch's generator, which the layers' activation checkpoint replays for the recompute:
    checkpointed and not, the same gradients from the same RNG state."""
    plain = _model(demo_model_dir, checkpointing=False)
    with _installed(lora_model), _installed(plain):
        loss, grads = _step(lora_model)
        plain_loss, plain_grads = _step(plain)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- what is saved for backward
def _saved_bytes(model, layer_index: int = 0) -> int:
    """Bytes of the distinct storages one decoder layer's forward saves for backward, the model's weights left out
    (checkpointing off: the layer's own activations, as its recompute saves them in a checkpointed run)."""
    from engine.train.compiled_layers import decoder_layers

    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}   # held anyway: not activations

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            storages[s.data_ptr()] = s.nbytes()
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    layer = decoder_layers(model)[layer_index]
    handles = [layer.register_forward_pre_hook(lambda *_: hooks.__enter__()),
               layer.register_forward_hook(lambda *_: hooks.__exit__(), always_call=True)]
    try:
        _step(model)
    finally:
        for h in handles:
            h.remove()
    return sum(storages.values())


def _full_size(model, element_bytes: int) -> int:
    """One tensor of `element_bytes` per element of each adapter's input, over one layer's adapters: what peft's
    dropout saves at least beyond the input. Eager on the CPU: torch's dropout saves its float mask and lora_A the
    dropped copy (where one of them is not already saved), 4 bytes; compiled, AOTAutograd's dropout saves a bool
    mask, 1 byte, and the partitioner recomputes some dropped copies from it; on the GPU eagerly, both."""
    from engine.train.compiled_layers import decoder_layers

    layer = decoder_layers(model)[0]
    tokens = 56
    return sum(tokens * m.lora_A[name].in_features * element_bytes for m, name, _ in _dropouts(layer))


@pytest.fixture(scope="module")
def unchecked(demo_model_dir):
    return _model(demo_model_dir, checkpointing=False), _model(demo_model_dir, dropout=0.0, checkpointing=False)


def test_a_layer_saves_what_it_saves_without_dropout(unchecked):
    with_dropout, without = unchecked
    peft_bytes = _saved_bytes(with_dropout)
    none_bytes = _saved_bytes(without)
    with _installed(with_dropout) as n:
        free_bytes = _saved_bytes(with_dropout)
    adapters = len(_dropouts(with_dropout)) // len(_layers(with_dropout))
    assert n and adapters == 7
    assert peft_bytes - none_bytes >= _full_size(with_dropout, 4)
    # one 8-byte seed per adapter (the CPU allocator rounds a storage to at least 64 bytes)
    assert 0 <= free_bytes - none_bytes <= 64 * adapters


def _layers(model):
    from engine.train.compiled_layers import decoder_layers

    return decoder_layers(model)


@compile_tests
def test_a_compiled_layer_saves_what_it_saves_without_dropout(unchecked):
    """In a compiled graph the partitioner decides what is saved: the mask-free path keeps it from saving the masks
    and the dropped copies (used on both sides of a matmul, they would be)."""
    from engine.train.compiled_layers import compile_decoder_layers, uncompile_decoder_layers

    with_dropout, without = unchecked
    sizes = {}
    for name, model, install in (("peft", with_dropout, None), ("none", without, None),
                                 ("free", with_dropout, False), ("free32", with_dropout, True)):
        torch._dynamo.reset()
        compile_decoder_layers(model, lambda _: None, backend="aot_eager_decomp_partition")
        try:
            with _installed(model, install) if install is not None else contextlib.nullcontext():
                sizes[name] = _saved_bytes(model)
        finally:
            uncompile_decoder_layers(model)
    adapters = len(_dropouts(_layers(with_dropout)[0]))
    assert sizes["peft"] - sizes["none"] >= _full_size(with_dropout, 1)
    # no more than without dropout (less here: the checkpoint recomputes the r-wide lora_A outputs too)
    assert sizes["free"] - sizes["none"] <= 64 * adapters
    assert sizes["free32"] - sizes["none"] <= 64 * adapters


@compile_tests
@HASHES
def test_compiled_layers_compute_what_eager_mask_free_layers_do(lora_model, hash32):
    from engine.train.compiled_layers import compile_decoder_layers, uncompile_decoder_layers

    with _installed(lora_model, hash32):
        eager_loss, eager_grads = _step(lora_model)
        torch._dynamo.reset()
        compile_decoder_layers(lora_model, lambda _: None, backend="aot_eager")
        try:
            loss, grads = _step(lora_model)
        finally:
            uncompile_decoder_layers(lora_model)
    assert loss == pytest.approx(eager_loss, rel=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ the saved adapter
def test_the_saved_adapter_is_the_same_with_the_lever(lora_model, tmp_path):
    lora_model.save_pretrained(tmp_path / "off")
    with _installed(lora_model):
        lora_model.save_pretrained(tmp_path / "on")
        keys_on = set(lora_model.state_dict())
    assert keys_on == set(lora_model.state_dict())
    assert (json.loads((tmp_path / "on" / "adapter_config.json").read_text())
            == json.loads((tmp_path / "off" / "adapter_config.json").read_text()))
    from safetensors.torch import load_file

    on, off = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("on", "off"))
    assert on.keys() == off.keys() and all(torch.equal(on[k], off[k]) for k in on)


# ------------------------------------------------------------------------------------ the plan and the estimate
def _cfg(**lora):
    return config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"}, "lora": lora,
                             "training": {"max_steps": COMPILE_MIN_STEPS}})


@pytest.fixture
def lever(monkeypatch):
    monkeypatch.setattr(speed.LEVERS, "mask_free_dropout", True)


def test_on_by_default_and_only_on_the_compiled_path_with_dropout(monkeypatch):
    """Measured on an H100 (user_path-s20-h100-2026-12-06.md): 0.40-0.47 GiB lower than peft's dropout, as fast."""
    assert speed.Levers().mask_free_dropout is True
    monkeypatch.setattr(speed.LEVERS, "mask_free_dropout", False)
    assert not plan_run(_cfg(), GPU).mask_free_dropout                  # the lever off: peft's dropout
    monkeypatch.setattr(speed.LEVERS, "mask_free_dropout", True)
    plan = plan_run(_cfg(), GPU)
    assert plan.compile_layers and plan.mask_free_dropout
    assert any(line.startswith("dropout: LoRA dropout 0.05 without saved masks") for line in plan.lines)
    assert plan.to_dict()["mask_free_dropout"] is True   # status.json's plan says it
    assert not plan_run(_cfg(dropout=0.0), GPU).mask_free_dropout
    assert not plan_run(_cfg(), Machine("cpu", "CPU")).mask_free_dropout
    eager = config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"}, "training": {"max_steps": 10}})
    assert not plan_run(eager, GPU).mask_free_dropout
    lean = config_from_dict({"model": "m", "dataset": {"path": "d.jsonl"},
                             "training": {"max_steps": COMPILE_MIN_STEPS, "memory": "lean"}})
    assert plan_run(lean, GPU).compile_layers and plan_run(lean, GPU).mask_free_dropout   # lean compiled too
    assert not plan.mask_hash32 and speed.Levers().mask_hash32 is False   # the int32 hash: a lever, off


def test_the_int32_hash_lever_reaches_the_plan_and_its_line(monkeypatch):
    monkeypatch.setattr(speed.LEVERS, "mask_free_dropout", True)
    monkeypatch.setattr(speed.LEVERS, "mask_hash32", True)
    plan = plan_run(_cfg(), GPU)
    assert plan.mask_free_dropout and plan.mask_hash32 and plan.to_dict()["mask_hash32"] is True
    assert any("hashed in int32 words" in line for line in plan.lines if line.startswith("dropout:"))
    assert not plan_run(_cfg(dropout=0.0), GPU).mask_hash32          # no dropout: no hash of either form
    assert not plan_run(_cfg(), Machine("cpu", "CPU")).mask_hash32


def test_the_benchmarks_int32_side_switches_its_lever_on(monkeypatch):
    """benchmarks/user_path.py's compiledmf32 side (h200-s21.sh) through lever_site's switch, as the trainer's
    process gets it: the mask-free dropout with the int32 hash, compiled; compiledmf keeps the int64 one."""
    from benchmarks.lever_site.sitecustomize import switch_levers
    from benchmarks.user_path import LEVER_SIDES

    for name, hash32 in (("compiledmf32", True), ("compiledmf", False)):
        monkeypatch.setattr(speed, "LEVERS", speed.Levers(mask_free_dropout=False))
        lean, compiled, spec = LEVER_SIDES[name]
        switch_levers(spec)
        assert compiled and not lean
        assert speed.LEVERS.mask_free_dropout and speed.LEVERS.mask_hash32 is hash32


def test_the_estimate_counts_what_no_dropout_saves_from_the_plan_field(monkeypatch):
    """Llama-2-7B compiled, 8,786 tokens in one micro-batch: the estimate reads RunPlan.mask_free_dropout and then
    counts the adapters' saved inputs as without dropout (no dropped copy, no mask)."""
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute

    info, gpu = read_model_config("llama-2-7b"), get_gpu("h200-141")

    def peak(dropout: float, lever: bool) -> float:
        monkeypatch.setattr(speed.LEVERS, "mask_free_dropout", lever)
        cfg = config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                                "lora": {"dropout": dropout},
                                "training": {"max_seq_length": 2048, "compile": True}})
        plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[8786 // 16] * 1120, info=info)
        assert plan.compile_layers and plan.mask_free_dropout == (lever and dropout > 0)
        return compute(cfg, info, gpu, plan=plan, tokens_per_microbatch=8786).peak_allocated_gib

    with_dropout, mask_free, none = peak(0.05, False), peak(0.05, True), peak(0.0, False)
    assert mask_free == none < with_dropout


# ------------------------------------------------------------------------------------------------ a real run
@pytest.mark.slow
@HASHES
def test_a_run_planned_with_it_trains_saves_and_reloads(tmp_path, monkeypatch, capsys, demo_model_dir, hash32):
    """The trainer in this process (engine.train.run.train, as test_varlen_seam runs it) on the demo, with a plan
    that chose the mask-free dropout (the plan's rule chooses it on a GPU only: forced here, in its one place), its
    hash in the form LEVERS.mask_hash32 says."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from conftest import DEMO_CONFIG
    from engine import plan as plan_module
    from engine.rundir import read_metrics
    from engine.train import run
    from engine.train.signals import StopFlag

    monkeypatch.setattr(plan_module, "mask_free_dropout_for",
                        lambda machine, memory, compiled, dropout: (True, "dropout: mask-free (a test forced it)"))
    monkeypatch.setattr(speed.LEVERS, "mask_hash32", hash32)
    installed, forms = [], set()
    install = mfd.install

    def counting(model, **kw):
        installed.append(install(model, **kw))
        forms.update(m.mask_free_hash32 for m in model.modules() if mfd.installed(m))
        return installed[-1]
    monkeypatch.setattr(mfd, "install", counting)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["dataset"].update(max_examples=24, validation_split=0.0)
    raw["training"].update(max_steps=4, logging_steps=1, save_steps=100, sample_max_new_tokens=0)
    cfg = config_from_dict(raw)
    assert cfg.lora.dropout > 0
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run.train(cfg, run_dir, resume=False, stop=StopFlag(run_dir)) == 0
    plan = json.loads((run_dir / "status.json").read_text())["plan"]
    assert plan["mask_free_dropout"] is True and plan["mask_hash32"] is hash32
    assert installed and installed[0] > 0 and forms == {hash32}
    hashed = " (masks hashed in int32 words)" if hash32 else ""
    assert f"dropout: {installed[0]} LoRA adapters drop their inputs without saved masks{hashed}\n" in \
        capsys.readouterr().out
    losses = [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    adapter = run_dir / "adapter"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["lora_dropout"] == cfg.lora.dropout
    base = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter)
    b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert b and any(p.abs().sum() > 0 for p in b)   # lora_B starts at zero: it trained, and it loaded
    assert not any(mfd.installed(m) for m in tuned.modules())   # a reloaded adapter is plain peft


@compile_tests
@HASHES
def test_a_compiled_layer_takes_new_packed_lengths_without_recompiling(lora_model, hash32):
    """Packed micro-batches change length every step: the mask-free path must keep the token count symbolic (on an
    H100 it specialised it, and dynamo recompiled the layer for each new length: 8 recompiles in 10 steps)."""
    from torch._dynamo.backends.debugging import aot_eager

    from engine.train.compiled_layers import compile_decoder_layers, uncompile_decoder_layers

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    def step(lengths):
        lora_model.zero_grad(set_to_none=True)
        ids = torch.randint(5, 200, (1, sum(lengths)), generator=torch.Generator().manual_seed(len(lengths)))
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        lora_model(input_ids=ids, position_ids=positions, labels=ids).loss.backward()

    with _installed(lora_model, hash32):
        torch._dynamo.reset()
        compile_decoder_layers(lora_model, lambda _: None, backend=counting)
        try:
            step([20, 36])
            first = len(graphs)
            step([17, 40, 9])
            step([25, 11, 25])
            step([33, 30])
        finally:
            uncompile_decoder_layers(lora_model)
    assert first > 0
    assert len(graphs) == first, f"{len(graphs) - first} graphs compiled again for new packed lengths"
