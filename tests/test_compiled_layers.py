"""The compiled decoder layers (where the plan compiles them: engine.plan.compile_for): the same numbers as eager,
on the real 4-bit model.

aot_eager traces through dynamo and AOTAutograd, where graph breaks and wrong gradients would show, without
inductor's C++ code generation (minutes on 2 cores); the GPU run uses inductor.
"""

from __future__ import annotations


import pytest


def _loss_and_grads(model_dir, compiled: bool, graphs: list | None = None, graph_dequant: bool = False,
                    fallback_events: list | None = None):
    """fallback_events: the compiled steps run as the trainer runs them, under CompileFallback, its events kept."""
    import torch

    from engine.train.compiled_layers import CompileFallback, compile_decoder_layers

    model = _model(model_dir)
    logs = []
    if compiled:
        torch._dynamo.reset()
        assert compile_decoder_layers(model, logs.append, backend=_counting(graphs),
                                      graph_dequant=graph_dequant) == model.config.num_hidden_layers
    fallback = None if fallback_events is None else CompileFallback(model, logs.append,
                                                                    on_fallback=fallback_events.append)
    model.train()
    losses, grads = [], None
    for length in (40, 72):  # two packed lengths: the second must not need a static recompile to be right
        gen = torch.Generator().manual_seed(length)
        ids = torch.randint(5, 200, (1, length), generator=gen)
        positions = torch.cat([torch.arange(length // 2), torch.arange(length - length // 2)])[None]

        def step():
            loss = model(input_ids=ids, position_ids=positions, labels=ids).loss
            loss.backward()
            return loss.item()
        losses.append(step() if fallback is None else fallback.run(step))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return losses, grads, logs, model


@pytest.mark.slow
def test_compiled_layers_compute_what_eager_layers_do(demo_model_dir):
    import torch

    from engine.train.compiled_layers import decoder_layers, eager_decoding, is_compiled

    eager_losses, eager_grads, _, _ = _loss_and_grads(demo_model_dir, compiled=False)
    graphs, events = [], []
    losses, grads, logs, model = _loss_and_grads(demo_model_dir, compiled=True, graphs=graphs, fallback_events=events)
    assert "decoder layers compiled" in logs[0]
    # the trainer's fallback saw the compiled code run: no event, and the layers stay compiled
    assert events == [] and all(is_compiled(m) for m in decoder_layers(model))
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    assert grads.keys() == eager_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-6)
    # dynamo really captured the layers' 4-bit projections and their adapters: a layer it skips (a graph break it
    # cannot resume from, as a checkpoint inside the compiled region is) trains eagerly without a word
    code = "\n".join(g.code for g in graphs)
    assert "q_proj" in code and "down_proj" in code and "lora_A" in code
    # one graph family for all the layers, not one per layer (dynamo's recompile limit would drop the rest to eager)
    assert len(graphs) < 4 * model.config.num_hidden_layers
    # samples decode around the compiled layers: a one-token call under eager_decoding compiles nothing new
    n = len(graphs)
    model.eval()
    with torch.no_grad(), eager_decoding(model):
        model(input_ids=torch.tensor([[7]]), position_ids=torch.tensor([[0]]))
    assert len(graphs) == n


def _model(model_dir, dropout: float = 0.0, checkpointing: bool = True, precision: str = "auto"):
    import torch

    from engine.config import config_from_dict
    from engine.model import add_lora, load_base_model

    cfg = config_from_dict({"model": str(model_dir), "dataset": {"path": "unused.jsonl"}, "lora": {"dropout": dropout}})
    torch.manual_seed(0)
    model, _ = load_base_model(str(model_dir), "nf4", precision)
    model = add_lora(model, cfg, gradient_checkpointing=checkpointing)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    model.train()
    return model


def _step(model):
    """One packed micro-batch, forward and backward, as the trainer's step runs it."""
    import torch

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 200, (1, 56), generator=gen)
    positions = torch.cat([torch.arange(20), torch.arange(36)])[None]
    loss = model(input_ids=ids, position_ids=positions, labels=ids).loss
    loss.backward()
    return loss.item()


def _counting(graphs: list | None):
    """aot_eager, keeping every graph dynamo hands it."""
    from torch._dynamo.backends.registry import lookup_backend

    aot_eager = lookup_backend("aot_eager")

    def backend(gm, example_inputs):
        if graphs is not None:
            graphs.append(gm)
        return aot_eager(gm, example_inputs)
    return backend


def _forward_fails(gm, example_inputs):
    raise RuntimeError("forced: this backend cannot compile")


def _backward_fails():
    """Compiles the forward (as is) and fails on the backward graph, which AOTAutograd compiles at its first use."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def fail(gm, example_inputs):
        raise RuntimeError("forced: the backward cannot compile")
    return aot_autograd(fw_compiler=lambda gm, example_inputs: make_boxed_func(gm.forward), bw_compiler=fail)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["forward", "backward"])
def test_a_compile_failure_trains_on_eagerly_with_an_event(demo_model_dir, where):
    import torch

    from engine.train.compiled_layers import CompileFallback, compile_decoder_layers, decoder_layers, is_compiled

    eager = _model(demo_model_dir)
    eager_loss = _step(eager)
    eager_grads = {n: p.grad.clone() for n, p in eager.named_parameters() if p.requires_grad}

    torch._dynamo.reset()
    model = _model(demo_model_dir)
    logs, events = [], []
    compile_decoder_layers(model, logs.append, backend=_forward_fails if where == "forward" else _backward_fails())
    fallback = CompileFallback(model, logs.append, on_fallback=events.append)
    loss = fallback.run(lambda: _step(model))

    assert "forced" in fallback.failed
    assert len(events) == 1 and events[0].startswith("torch.compile failed") and "eagerly" in events[0]
    assert not any(is_compiled(m) for m in decoder_layers(model))
    # the retried micro-batch trains exactly what eager does: no half gradient of the failed attempt stays behind
    assert loss == pytest.approx(eager_loss, rel=1e-6)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, eager_grads[name], rtol=1e-5, atol=1e-7)
    # and the next micro-batch runs eagerly, with no second event
    fallback.run(lambda: _step(model))
    assert len(events) == 1


@pytest.mark.slow
def test_layers_dynamo_compiled_nothing_for_are_reported_and_run_eagerly(demo_model_dir):
    """Dynamo skips a frame it cannot trace without an error (transformers 5.25's checkpoint inside forward did):
    after the first step the fallback sees no compiled code, says so once, and the layers go back to eager. (That it
    says nothing where dynamo did compile: test_compiled_layers_compute_what_eager_layers_do, whose compiled steps
    run under the fallback.)"""
    import torch

    from engine.train.compiled_layers import CompileFallback, compile_decoder_layers, decoder_layers, is_compiled

    torch._dynamo.reset()
    model = _model(demo_model_dir)
    logs, events = [], []
    compile_decoder_layers(model, logs.append, backend=_counting(None))
    fallback = CompileFallback(model, logs.append, on_fallback=events.append)
    # force_eager: the compiled forward runs as is and dynamo compiles nothing, as when it skips the frame
    with torch.compiler.set_stance("force_eager"):
        fallback.run(lambda: _step(model))
    fallback.run(lambda: _step(model))
    assert len(events) == 1 and "compiled none of the" in events[0] and "run eagerly" in events[0]
    assert not any(is_compiled(m) for m in decoder_layers(model))


def test_errors_of_the_model_itself_are_not_swallowed():
    import torch

    from engine.train.compiled_layers import CompileFallback, is_compile_failure

    model = torch.nn.Linear(2, 2)
    fallback = CompileFallback(model, lambda m: None)

    def bad_step():
        culprit = "row 7"
        raise ValueError(f"a shape error in the data ({culprit})")
    with pytest.raises(ValueError) as raised:
        fallback.run(bad_step)
    assert fallback.failed is None
    # raised as it was: its traceback still ends in the step, with the step's locals there to debug it
    last = raised.tb
    while last.tb_next is not None:
        last = last.tb_next
    assert last.tb_frame.f_code.co_name == "bad_step" and last.tb_frame.f_locals["culprit"] == "row 7"
    assert not is_compile_failure(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_compile_failure(torch._dynamo.exc.BackendCompilerFailed(_forward_fails, RuntimeError("x"), None))


def test_cuda_graph_mode_is_passed_to_every_layer_and_may_record_a_graph_per_layer(demo_model_dir, monkeypatch):
    """LEVERS.compile_mode reduce-overhead (CUDA graphs): every layer's forward compiled in that mode, and cudagraph
    trees allowed to record one graph per layer and length (each layer's weights are other static inputs)."""
    import torch

    from engine.train.compiled_layers import compile_decoder_layers, decoder_layers, is_compiled

    cfg = torch._inductor.config.triton
    monkeypatch.setattr(cfg, "cudagraph_unexpected_rerecord_limit", 128)
    model = _model(demo_model_dir)
    eager = type(decoder_layers(model)[0])
    modes = []
    real_compile = torch.compile

    def compile_(fn, **kw):
        modes.append(kw.get("mode"))
        return real_compile(fn, **kw)
    monkeypatch.setattr(torch, "compile", compile_)
    logs = []
    assert compile_decoder_layers(model, logs.append, mode="reduce-overhead") == model.config.num_hidden_layers
    assert modes == ["reduce-overhead"] and "mode reduce-overhead" in logs[0]  # one compiled forward, shared
    assert all(is_compiled(m) for m in decoder_layers(model))
    assert cfg.cudagraph_unexpected_rerecord_limit >= 32 * 3 * 8
    modes.clear()
    compile_decoder_layers(model, logs.append)  # compiling compiled layers again starts from their eager class
    assert modes == [None] and "mode" not in logs[-1]
    assert all(type(m).__bases__ == (eager,) for m in decoder_layers(model))


def test_trimmed_guards_still_send_what_can_change_to_another_graph(demo_model_dir, monkeypatch):
    """LEVERS.trim_guards: dynamo skips the ~1,000 guards per layer on what is fixed once the model is built, but
    an eval-mode or no-grad call must not replay the training graph (dropout on, autograd saved): it compiles anew."""
    import torch

    import engine.train.compiled_layers as cl

    kept: list[tuple[int, int]] = []
    real = cl.guards_that_can_change

    def counting_filter(entries):
        flags = real(entries)
        kept.append((sum(flags), len(flags)))
        return flags
    monkeypatch.setattr(cl, "guards_that_can_change", counting_filter)
    model = _model(demo_model_dir)
    torch._dynamo.reset()
    graphs: list = []
    logs: list[str] = []
    cl.compile_decoder_layers(model, logs.append, backend=_counting(graphs), trim_guards=True)
    assert "trimmed guards" in logs[0]
    _step(model)
    trained = len(graphs)
    assert trained > 0 and kept and all(k < n / 2 for k, n in kept)  # most guards dropped
    _step(model)
    assert len(graphs) == trained  # the same shapes replay the graphs
    model.eval()
    _step(model)  # the same tensors, only the training flags differ
    assert len(graphs) > trained  # a new graph: the training one would keep dropout on
    evaluated = len(graphs)
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]), position_ids=torch.tensor([[0, 1, 2]]))
    assert len(graphs) > evaluated  # no_grad: a new graph, not one that saves for a backward


def test_host_levers_reach_torch_compile_as_options(demo_model_dir, monkeypatch):
    """trim_guards and cpp_wrapper become torch.compile options (with reduce-overhead or max-autotune as their
    options: torch.compile takes a mode or options, not both); the C++ wrapper only for inductor, which alone has one."""
    import torch

    from engine.train.compiled_layers import compile_decoder_layers, guards_that_can_change

    model = _model(demo_model_dir)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)
    logs: list[str] = []
    compile_decoder_layers(model, logs.append, backend="inductor", mode="reduce-overhead", trim_guards=True,
                           cpp_wrapper=True)
    assert calls[-1]["mode"] is None and calls[-1]["options"] == {
        "guard_filter_fn": guards_that_can_change, "cpp_wrapper": True, "triton.cudagraphs": True}
    assert "trimmed guards, C++ wrapper" in logs[-1]
    compile_decoder_layers(model, logs.append, backend="inductor", mode="max-autotune-no-cudagraphs", trim_guards=True)
    assert calls[-1]["mode"] is None and calls[-1]["options"] == {
        "guard_filter_fn": guards_that_can_change, "max_autotune": True}
    assert "mode max-autotune-no-cudagraphs, trimmed guards" in logs[-1]
    compile_decoder_layers(model, logs.append, backend="aot_eager", cpp_wrapper=True)
    assert calls[-1]["options"] is None and calls[-1]["mode"] is None and "C++" not in logs[-1]


def test_a_compile_failure_is_retried_only_once_the_failed_attempt_is_freed():
    """The failed attempt's tensors (the forward's activations, alive in its frames through the exception's
    traceback) are gone before the eager retry starts: on a GPU where the run barely fits, the retry beside them
    would run out of memory (on the H200 it peaked 1.1 GiB higher, 31 layer outputs of the failed forward)."""
    import gc
    import weakref

    import torch

    from engine.train.compiled_layers import CompileFallback

    fallback = CompileFallback(torch.nn.Linear(2, 2), lambda m: None)
    failed: list[weakref.ref] = []

    def compiled_forward():
        activations = torch.ones(256, 1024)  # stands in for the failed forward's layer outputs
        graph = {"saved": activations}
        graph["next"] = graph  # as autograd graphs can be: a reference cycle, which only the collector frees
        failed.append(weakref.ref(activations))
        raise torch._dynamo.exc.BackendCompilerFailed(_forward_fails, RuntimeError("forced"), None)

    def step():
        if not failed:
            compiled_forward()
        alive = failed[0]() is not None
        assert not alive, "the failed attempt's activations are still alive during the eager retry"
        return "retried"

    enabled = gc.isenabled()
    gc.disable()  # the fallback frees them itself, not the collector running by chance in between
    try:
        assert fallback.run(step) == "retried"
    finally:
        if enabled:
            gc.enable()
    assert "forced" in fallback.failed


def test_a_compile_failure_after_some_accumulated_gradient_changed_is_raised_with_its_cause():
    """A later micro-batch of a step: the earlier ones' gradients are in .grad, and the failed attempt added to
    them; that cannot be undone."""
    import torch

    from engine.train.compiled_layers import CompileFallback

    model = torch.nn.Linear(2, 2)
    model.weight.grad = torch.zeros(2, 2)   # the step's earlier micro-batches
    fallback = CompileFallback(model, lambda m: None)
    failure = torch._dynamo.exc.BackendCompilerFailed(_forward_fails, RuntimeError("forced"), None)

    def step():
        model.weight.grad += 1  # part of the micro-batch's gradient, then the backward fails
        raise failure
    with pytest.raises(RuntimeError, match="cannot be retried exactly") as raised:
        fallback.run(step)
    assert raised.value.__cause__ is failure


def test_a_backward_compile_failure_in_a_steps_first_micro_batch_is_retried_from_no_gradient():
    """The first layers' own compiled class (the checkpoint in their graph) compiles its backward after the later
    layers' adapters got their gradients: in the step's first micro-batch (no gradient before it) those are
    cleared and the micro-batch trained again eagerly, rather than the run stopped."""
    import torch

    from engine.train.compiled_layers import CompileFallback

    model = torch.nn.Linear(2, 2)
    fallback = CompileFallback(model, lambda m: None)
    seen: list = []

    def step():
        if fallback.failed is None:
            model.bias.grad = torch.ones(2)   # a later layer's adapter, then an earlier layer's backward fails
            raise torch._dynamo.exc.BackendCompilerFailed(_forward_fails, RuntimeError("forced"), None)
        seen.append((model.weight.grad, model.bias.grad))   # the eager retry starts from no gradient
        return "retried"

    assert fallback.run(step) == "retried"
    assert seen == [(None, None)] and "forced" in fallback.failed
