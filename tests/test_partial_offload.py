"""Partial activation offload (LEVERS.offload_layers, engine.train.speed.PartialOffload): only the first K decoder
layers' checkpointed inputs reach the offload manager, a 4-bit step through it trains exactly as without, and the
plan, the estimate and the trainer read the one plan field.

TRL's OffloadActivations needs an accelerator (it asks torch.accelerator for its streams): on the CPU the manager is
a saved-tensors hooks object that records, or moves each tensor into its own store and back, as TRL's does to the
host. The GPU run (benchmarks/user_path.py's compiledoff side) measures the memory and the speed.
"""

from __future__ import annotations

import contextlib
import os

import pytest

torch = pytest.importorskip("torch")

from engine.config import config_from_dict  # noqa: E402
from engine.plan import COMPILE_MIN_STEPS, Machine, plan_run  # noqa: E402
from engine.train import speed  # noqa: E402

GPU = Machine("cuda", "GPU", 141.0)


class Store(torch.autograd.graph.saved_tensors_hooks):
    """A stand-in for TRL's manager: keeps a copy of each saved tensor under an id (the host copy) and hands it back
    once in backward; `saved` keeps the tensors it was given, for identity checks."""

    def __init__(self) -> None:
        self.saved: list = []
        self.store: dict[int, object] = {}
        self.entered = 0

        def pack(t):
            self.saved.append(t)
            self.store[len(self.saved)] = t.detach().clone()
            return len(self.saved)

        def unpack(key):
            return self.store.pop(key)
        super().__init__(pack, unpack)

    def __enter__(self):
        self.entered += 1
        return super().__enter__()


def _model(model_dir):
    from tests.test_compiled_layers import _model as lora_model

    return lora_model(model_dir)   # the demo's 4-bit llama, LoRA on all linears, non-reentrant checkpointing


@pytest.fixture(scope="module")
def model(demo_model_dir):
    """One model for the eager tests (loading and quantising it is most of their time on 2 cores); each test
    removes what it adds and clears the gradients it makes."""
    m = _model(demo_model_dir)
    yield m
    m.zero_grad(set_to_none=True)


def _step(model):
    from tests.test_compiled_layers import _step as packed_step

    return packed_step(model)


def _layers(model):
    from engine.train.compiled_layers import decoder_layers

    return decoder_layers(model)


@contextlib.contextmanager
def _layer_inputs(model):
    """Each decoder layer's hidden-state input of the forwards inside, recorded by a pre-hook."""
    inputs: dict[int, object] = {}
    handles = [layer.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
               for i, layer in enumerate(_layers(model))]
    try:
        yield inputs
    finally:
        for h in handles:
            h.remove()


def test_only_the_first_k_layers_inputs_reach_the_manager(model):
    layers = _layers(model)
    assert len(layers) == 4
    with _layer_inputs(model) as inputs:
        _selection(model, layers, inputs)
    model.zero_grad(set_to_none=True)


def _selection(model, layers, inputs):
    everything_else = Store()   # an outer hook: it sees whatever the partial context does not cover
    with everything_else:
        _step(model)
    # without the partial context every layer's input, the final norm's, lm_head's... all reach the outer hook
    assert {i for i, x in inputs.items() if any(s is x for s in everything_else.saved)} == {0, 1, 2, 3}
    assert len(everything_else.saved) > 4

    manager, outer = Store(), Store()
    partial = speed.PartialOffload(layers[:2], manager)
    with outer, partial:
        _step(model)
    assert len(manager.saved) == 2
    assert manager.saved[0] is inputs[0] and manager.saved[1] is inputs[1]
    assert outer.saved == []            # the other layers, the final norm and the loss saved on the GPU (the no-op)
    assert manager.store == {}          # each came back in backward, once
    assert manager.entered == 1         # entered once a step (TRL's manager resets and syncs its streams there)


def test_the_layers_hooks_move_nothing_outside_a_step_and_recover_from_an_error(model):
    manager = Store()
    partial = speed.PartialOffload(_layers(model)[:2], manager)
    outer = Store()
    with outer:
        _step(model)                    # a step outside the context: the layers' hooks stand aside
        with torch.no_grad(), partial:   # evaluation: nothing saved, nothing moved
            model(input_ids=torch.tensor([[5, 6, 7]]))
    assert manager.saved == [] and len(outer.saved) > 4 and partial.pushed == []

    def boom(module, args):
        raise RuntimeError("forced")
    handle = _layers(model)[1].register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="forced"), partial:
        _step(model)
    handle.remove()
    assert partial.pushed == [] and not partial.active
    after = Store()
    with after:                         # the saved-tensors hook stack is back as it was: the outer hook sees all
        _step(model)
    assert len(after.saved) == len(outer.saved)
    model.zero_grad(set_to_none=True)


def test_a_4bit_step_through_the_partial_offload_trains_the_same(model):
    def run(partial: bool):
        model.zero_grad(set_to_none=True)
        manager = Store()
        with speed.PartialOffload(_layers(model)[:2], manager) if partial else contextlib.nullcontext():
            loss = _step(model)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return loss, grads, manager

    loss, grads, _ = run(False)
    loss_off, grads_off, manager = run(True)
    model.zero_grad(set_to_none=True)
    assert len(manager.saved) == 2 and manager.store == {}   # moved out and back: the copies are what backward used
    assert loss_off == loss
    assert grads_off.keys() == grads.keys() and any("lora_A" in n for n in grads)
    for name in grads:
        assert torch.equal(grads_off[name], grads[name]), name


@pytest.mark.skipif(os.environ.get("LORAPILOT_TEST_COMPILE") != "1",
                    reason="torch.compile on 2 CPU cores is slow; LORAPILOT_TEST_COMPILE=1 runs it")
def test_the_same_through_compiled_layers_without_a_recompile(demo_model_dir):
    from tests.test_compiled_layers import _counting

    from engine.train.compiled_layers import compile_decoder_layers

    def run(partial: bool):
        model = _model(demo_model_dir)
        graphs: list = []
        torch._dynamo.reset()
        compile_decoder_layers(model, lambda line: None, backend=_counting(graphs))
        manager = Store()
        with speed.PartialOffload(_layers(model)[:2], manager) if partial else contextlib.nullcontext():
            loss = _step(model)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return loss, grads, manager, len(graphs)

    loss, grads, _, graphs = run(False)
    loss_off, grads_off, manager, graphs_off = run(True)
    assert len(manager.saved) == 2 and manager.store == {}   # moved out and back: the copies are what backward used
    assert loss_off == loss
    assert grads_off.keys() == grads.keys() and any("lora_A" in n for n in grads)
    for name in grads:
        assert torch.equal(grads_off[name], grads[name]), name
    assert graphs_off == graphs         # the hooks around the compiled layers cost no recompile


def test_the_trainer_builds_it_from_the_plans_count(model, monkeypatch):
    """engine.train.run passes RunPlan.offload_layers here: TRL's manager (its stash at PARTIAL_OFFLOAD_STASH, the
    model's parameters never offloaded) over the first K decoder layers; 0 changes nothing."""
    import trl.models.activation_offloading as trl_offload

    made = []

    class Manager(Store):
        def __init__(self, max_fwd_stash_size: int) -> None:
            super().__init__()
            made.append(max_fwd_stash_size)

        def update_model_params(self, model) -> None:
            made.append("params")

    monkeypatch.setattr(trl_offload, "OffloadActivations", Manager)
    assert isinstance(speed.activation_offload(model, False, layers=0), contextlib.nullcontext)
    assert made == []
    partial = speed.activation_offload(model, False, layers=3)
    assert isinstance(partial, speed.PartialOffload) and made == [speed.PARTIAL_OFFLOAD_STASH, "params"]
    assert partial.layers == _layers(model)[:3]


# ------------------------------------------------------------------------------------------- the plan and the estimate
def _cfg(**training):
    return config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl", "validation_split": 0.0},
                             "training": {"max_seq_length": 2048, **training}})


def _plan(machine=GPU, info=None, **training):
    return plan_run(_cfg(**training), machine, lengths=[8786 // 16] * 1120, info=info)


def _offload_lines(plan) -> list[str]:
    return [x for x in plan.lines if "decoder layers' inputs offloaded" in x]


def test_the_plan_offloads_the_first_layers_only_on_the_fast_compiled_gpu_path(monkeypatch):
    long = {"max_steps": COMPILE_MIN_STEPS}
    assert speed.Levers().offload_layers == 0    # off until measured
    off = _plan(**long)
    assert off.compile_layers and off.offload_layers == 0 and not _offload_lines(off)
    assert off.to_dict()["offload_layers"] == 0
    monkeypatch.setattr(speed.LEVERS, "offload_layers", 8)
    on = _plan(**long)
    assert on.compile_layers and on.memory == "fast" and on.offload_layers == 8 and not on.offload
    assert _offload_lines(on) == ["activations: the first 8 decoder layers' inputs offloaded to pinned host memory "
                                  "during forward, fetched back for their backward (TRL); the other layers' kept on "
                                  "the GPU"]
    assert on.to_dict()["offload_layers"] == 8   # status.json's plan
    for other in (_plan(max_steps=COMPILE_MIN_STEPS - 1),                       # eager: nothing to make room for
                  _plan(memory="lean", **long),                                 # lean offloads every layer
                  _plan(machine=Machine("cpu", "cpu"), **long),
                  _plan(machine=Machine("cuda", "GPU", 141.0, processes=2), compile=True, **long),
                  _plan(gradient_checkpointing=False, **long)):                # no checkpointed inputs to move
        assert other.offload_layers == 0 and not _offload_lines(other)


def test_the_estimate_drops_by_the_offloaded_layers_inputs_less_the_one_in_flight(monkeypatch):
    """Llama-2-7B, compiled with the weights dequantised in the graph, 8,786 tokens in one micro-batch: measured
    8.93 GiB on the H200 (user_path-s13-h200-2026-12-04), the eager default 8.63. Eight layers offloaded free seven
    layer inputs (4,096 x 8,786 tokens x 2 bytes each): the goal is the eager default's peak or less."""
    from engine.estimate import get_gpu, read_model_config
    from engine.estimate.estimator import compute

    info, gpu = read_model_config("llama-2-7b"), get_gpu("h200-141")
    cfg = _cfg(compile=True)

    def peak(k: int) -> float:
        monkeypatch.setattr(speed.LEVERS, "offload_layers", k)
        plan = plan_run(cfg, Machine.for_gpu(gpu), lengths=[8786 // 16] * 1120, info=info)
        assert plan.compile_layers and plan.graph_dequant and plan.offload_layers == k
        return compute(cfg, info, gpu, plan=plan, tokens_per_microbatch=8786).peak_allocated_gib

    layer_input = 4096 * 8786 * 2 / 1024 ** 3
    whole = peak(0)
    assert whole - peak(8) == pytest.approx((8 - speed.PARTIAL_OFFLOAD_STASH) * layer_input, rel=1e-9)
    assert whole - peak(1) == 0.0               # one layer's input is the one in flight: nothing freed
    assert whole - peak(64) == pytest.approx((32 - speed.PARTIAL_OFFLOAD_STASH) * layer_input, rel=1e-9)
    assert 8.928 - (whole - peak(8)) <= 8.63    # the measured compiled peak less what the estimate frees
