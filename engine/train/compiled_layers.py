"""For the host-bound 4-bit step: each decoder layer compiled by torch.compile, where the run's plan says so.

A 4-bit step launches thousands of small kernels per micro-batch (dequantise, LoRA's two matmuls, dropout,
scale, add, for each of 7 projections per layer, three times: forward, recompute, backward); on the H100 the
host's cost per launch bounds the step, not the GPU's FLOPs (benchmarks/results/profile-h100-2026-11-23.md).
Compiling a layer fuses the element-wise work and replaces Python dispatch with generated code. A decoder layer
with bitsandbytes 4-bit weights and peft adapters traces into one graph (bitsandbytes registers its ops with
torch.library). On the user's path it trains 1.14-1.19x faster per step for ~70 s of compiling before step 1, so the
plan compiles long runs only (engine.plan.compile_for, training.compile).

A compile that fails (dynamo cannot trace something, inductor or Triton cannot build a kernel; at the first step or
at a later recompile for a new shape) must never fail the run: CompileFallback turns the layers back to eager,
says so in train.log and metrics.jsonl, and trains the same micro-batch again eagerly.

Dynamic shapes: packed micro-batches change length every step, and a static compile would recompile each time.
The checkpointing wrapper stays outside: the compiled layer runs in forward and again in the recompute.

LEVERS.checkpoint_in_graph (in the first layers only, engine.plan.checkpoint_in_graph_layers_for) puts the activation
checkpoint inside the compiled region instead: dynamo makes torch's checkpoint a higher-order op, and AOTAutograd's
partitioner saves the region's inputs (and each mask-free dropout's one-element seed) and recomputes in the backward
graph only what the backward reads, fused with it. The recompute then skips the layer's output: down_proj's 4-bit matmul (~7 % of a step's base matmul
work on Llama-2-7B) and its lora_B (lora_A's output is still recomputed, for lora_B's weight gradient), and one
compiled graph launch per layer.
"""

from __future__ import annotations

import contextlib
import gc
import traceback
import types
from typing import Any, Callable


def decoder_layers(model) -> list:
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


# torch.compile's backend for the layers: inductor (Triton kernels on the GPU). Tests on the CPU point it at a
# counting aot_eager backend: inductor's C++ code generation takes minutes on 2 cores.
BACKEND: Any = "inductor"


def compile_decoder_layers(model, log: Callable[[str], None], *, backend: Any = None, mode: str = "default",
                           trim_guards: bool = False, cpp_wrapper: bool = False, graph_dequant: bool = False,
                           checkpoint_in_graph: int = 0) -> int:
    """Compiles every decoder layer's forward, inside its activation checkpoint; returns how many layers.

    Each layer's class is swapped for a subclass whose forward is the torch.compile'd forward of its class (one
    compiled function per class, so the layers share their graphs). Not nn.Module.compile: that compiles the
    module's whole call, and since transformers 5.25 checkpoints inside forward (modeling_layers), the checkpoint
    would be inside the compiled region, where dynamo skips the whole layer without a word (a graph break it cannot
    resume from). Through a subclass transformers' own checkpointing wraps the compiled forward in every version.

    mode "reduce-overhead": inductor replays each compiled graph as a CUDA graph (one per input length: pair it
    with LEVERS.pad_multiple so lengths repeat). "max-autotune-no-cudagraphs": Triton matmul templates, into which
    inductor can fuse a prologue such as graph_dequant's NF4 dequantise. trim_guards: dynamo checks only guards_that_can_change.
    cpp_wrapper: inductor's generated wrapper in C++ (its launches cost less host time). graph_dequant: the NF4
    projections' weights dequantised by torch ops inside the compiled graph (engine.train.graph_dequant).
    checkpoint_in_graph: in the first this many layers, a training call compiles the layer inside torch's checkpoint
    (_checkpointed), in place of transformers' checkpoint around the compiled forward (the module docstring says
    why; engine.plan.checkpoint_in_graph_layers_for says which layers)."""
    import torch

    backend = BACKEND if backend is None else backend
    layers = decoder_layers(model)
    if mode == "reduce-overhead":
        # The layers share one compiled graph with each layer's weights as its static inputs: cudagraph trees record
        # a graph per layer and length (forward, recompute, backward), far past the default 128 re-records.
        cfg = torch._inductor.config.triton
        cfg.cudagraph_unexpected_rerecord_limit = max(cfg.cudagraph_unexpected_rerecord_limit, 4096)
    options: dict[str, Any] = {}
    if trim_guards:
        options["guard_filter_fn"] = guards_that_can_change
    if cpp_wrapper and backend == "inductor":
        options["cpp_wrapper"] = True
    if options and mode == "reduce-overhead":
        options["triton.cudagraphs"] = True  # torch.compile takes a mode or options, not both
    if options and mode == "max-autotune-no-cudagraphs":
        options["max_autotune"] = True
    compiled: dict[tuple[type, bool], type] = {}
    forwards: dict[type, Any] = {}   # each layer class's compiled forward, shared by its two compiled classes
    for index, layer in enumerate(layers):
        eager: Any = _eager_class(layer) or type(layer)
        in_graph = index < checkpoint_in_graph
        if (eager, in_graph) not in compiled:
            how_to = dict(backend=backend, dynamic=True, mode=None if mode == "default" or options else mode,
                          options=options or None)
            if eager not in forwards:
                forwards[eager] = torch.compile(_unchecked(eager.forward), **how_to)
            forward = forwards[eager]
            cls = compiled[eager, in_graph] = type(eager.__name__, (eager,), {
                "forward": forward, "__module__": eager.__module__, "__qualname__": eager.__qualname__,
                _EAGER: eager, _CODE: (_unchecked(eager.forward).__code__,)})
            if in_graph:
                # Its checkpointed forward is another code object than the others' forward: no recompile.
                checkpointed = _checkpointed(_unchecked(eager.forward), eager.__name__)
                # Set after the class exists: transformers wrapped the forward given to type() in its checkpoint
                # (GradientCheckpointingLayer.__init_subclass__); this one replaces it, wrapper and all.
                setattr(cls, "forward", _in_graph_or_not(torch.compile(checkpointed, fullgraph=True, **how_to), forward))
                setattr(cls, _CODE, (checkpointed.__code__, *cls.__dict__[_CODE]))
        layer.__class__ = compiled[eager, in_graph]
    dequantised = 0
    if graph_dequant:
        from engine.train.graph_dequant import dequantise_in_graph

        dequantised = dequantise_in_graph(layers)
    how = ("" if mode == "default" else f", mode {mode}") + (", trimmed guards" if trim_guards else "") + (
        f", activation checkpoint inside the graph of the first {min(checkpoint_in_graph, len(layers))}"
        if checkpoint_in_graph > 0 else "") + (
        ", C++ wrapper" if "cpp_wrapper" in options else "") + (
        f", {dequantised} NF4 weights dequantised in the graph" if dequantised else "")
    name = backend if isinstance(backend, str) else "a custom backend"
    log(f"kernels: {len(layers)} decoder layers compiled (torch.compile {name}, dynamic shapes{how})")
    return len(layers)


# What may change between two calls of a compiled layer during a run, and must send dynamo to another graph rather
# than replay this one: the tensors (shapes, dtypes, strides, requires_grad), grad mode and the other global state,
# dynamic-shape relations, aliasing between inputs, and the flags that switch dropout or the adapters off.
# Everything else dynamo guards (hook dicts, types, constants, closures: ~1,100 guards on a LoRA'd Llama layer) is
# fixed once the model is built.
_GUARD_TYPES_KEPT = {"TENSOR_MATCH", "GRAD_MODE", "GLOBAL_STATE", "DETERMINISTIC_ALGORITHMS", "TORCH_FUNCTION_STATE",
                     "DEFAULT_DEVICE", "AUTOGRAD_SAVED_TENSORS_HOOKS", "SHAPE_ENV", "DUPLICATE_INPUT"}
_FLAGS_KEPT = ("training", "disable_adapters", "merged_adapters", "active_adapter")


def guards_that_can_change(entries) -> list[bool]:
    """torch.compile's guard_filter_fn: keeps the guards on what can change within a run (above), drops the rest."""
    return [e.guard_type in _GUARD_TYPES_KEPT or e.name.rstrip("'] ").endswith(_FLAGS_KEPT) for e in entries]


def _unchecked(forward):
    """The layer's forward without transformers' checkpointing wrapper (5.25+ wraps each layer class's forward in
    forward_with_checkpointing): the subclass gets the wrapper back around the compiled forward. Compiling through
    the wrapper would trace the checkpoint too: dynamo does not see that the subclass's wrapper is the outer one."""
    if getattr(getattr(forward, "__code__", None), "co_name", "") == "forward_with_checkpointing":
        return forward.__wrapped__
    return forward


def _checkpointed(forward, name: str):
    """forward(self, *args, **kwargs) inside torch's non-reentrant activation checkpoint, to be compiled whole: one
    graph (fullgraph: a graph break is a compile failure, which CompileFallback answers, not a silent eager layer).

    Each mask-free dropout's seed (engine.train.mask_free_dropout: torch.randint in the region) is saved, not drawn
    again: a random op the partitioner recomputes it runs again from a saved generator state (one state and two more
    ops for each seed), and inductor could no longer draw it inside its own kernels. The layer's other random op,
    attention (which takes a dropout probability, 0 here), is recomputed so, from its saved state.

    Dynamo refuses side effects inside a checkpoint unless told that the recompute need not replay them: the layer's
    attention runs in the kernels package's wrapper (use_kernelized_func), which sets and resets a context variable
    around it, and a compiled backward replays no Python anyway (_in_graph_or_not sets that flag while tracing).

    Its own code object for each layer class (dynamo caches graphs per code object, and trimmed guards no longer
    check which forward the closure holds)."""
    import torch

    def checkpointed(self, *args, **kwargs):
        return torch.utils.checkpoint.checkpoint(forward, self, *args, use_reentrant=False, context_fn=_saving_seeds,
                                                 **kwargs)

    code = checkpointed.__code__.replace(co_name=f"{name}_checkpointed")
    return types.FunctionType(code, checkpointed.__globals__, code.co_name, None, checkpointed.__closure__)


def _saving_seeds():
    """The checkpoint's selective policy: every op recomputed where the backward needs it, but torch.randint saved."""
    import torch
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    def policy(ctx, op, *args, **kwargs):
        if getattr(op, "overloadpacket", None) is torch.ops.aten.randint:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE
    return create_selective_checkpoint_contexts(policy)


def _in_graph_or_not(checkpointed, forward):
    """The layer's forward: where transformers would checkpoint it (the same test as its forward_with_checkpointing),
    the compiled checkpointed forward; elsewhere (evaluation, no grad) the compiled forward alone. The mask-free
    dropout and graph_dequant then add no checkpoint of their own (engine.train.layer_checkpoint says why)."""
    import torch

    from engine.train import layer_checkpoint

    def layer_forward(self, *args, **kwargs):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            with torch._dynamo.config.patch(skip_fwd_side_effects_in_bwd_under_checkpoint=True), \
                    layer_checkpoint.tracing():
                return checkpointed(self, *args, **kwargs)
        return forward(self, *args, **kwargs)
    return layer_forward


_EAGER = "_lorapilot_eager_class"  # on a compiled layer's class: the class it was made from
_CODE = "_lorapilot_code"  # and the code objects it compiled (dynamo keeps its graphs on them)


def _eager_class(layer) -> type | None:
    return type(layer).__dict__.get(_EAGER)


def is_compiled(layer) -> bool:
    return _eager_class(layer) is not None


def traced_any(model) -> bool:
    """Whether dynamo compiled the compiled layers' forward at least once (it keeps a cache entry on the code it
    compiled). It skips a frame it cannot trace without an error: after a step, no entry means the layers ran
    eagerly all along."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    classes = {type(m) for m in decoder_layers(model) if is_compiled(m)}
    return any(_debug_get_cache_entry_list(code) for cls in classes for code in cls.__dict__[_CODE])


@contextlib.contextmanager
def eager_decoding(model):
    """Samples decode token by token with a KV cache: through compiled layers that would compile a new graph
    family for a one-token input and a cache object, for a few hundred calls. Decoding runs them eagerly.

    Only these layers: a global stance (torch.compiler.set_stance) would also turn off the samples' own
    compiled decode step (engine.fast_decode).
    """
    saved = [(m, type(m)) for m in decoder_layers(model) if is_compiled(m)]
    for layer, cls in saved:
        layer.__class__ = cls.__dict__[_EAGER]
    try:
        yield
    finally:
        for layer, cls in saved:
            layer.__class__ = cls


def uncompile_decoder_layers(model) -> int:
    """Back to the eager forward for every compiled layer."""
    layers = [m for m in decoder_layers(model) if is_compiled(m)]
    for layer in layers:
        layer.__class__ = type(layer).__dict__[_EAGER]
    return len(layers)


# Where a compile failure comes from: dynamo's tracing, AOTAutograd (its backward graph is compiled lazily, at the
# first backward), inductor's code generation, Triton's kernel compiler.
_COMPILER_MODULES = ("torch/_dynamo/", "torch/_functorch/", "torch/_inductor/", "triton/")


def is_compile_failure(exc: BaseException) -> bool:
    """Whether the exception came out of the compiler rather than the model's own arithmetic.

    An out-of-memory is not one: the OOM advice applies, and the eager layers would not fit either.
    """
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return False
    if isinstance(exc, torch._dynamo.exc.TorchDynamoException):  # BackendCompilerFailed, InternalTorchDynamoError...
        return True
    inductor_error = getattr(getattr(torch._inductor, "exc", None), "InductorError", None)
    if inductor_error is not None and isinstance(exc, inductor_error):
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    return any(m in f.filename.replace("\\", "/") for f in frames for m in _COMPILER_MODULES)


def _why(exc: BaseException) -> str:
    """The compiler's wrapper and the error inside it, one line: "BackendCompilerFailed: RuntimeError: ..."."""
    root = exc
    for _ in range(8):  # dynamo keeps the backend's error in inner_exception, others chain it as the cause
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None or inner is root:
            break
        root = inner
    lines = [x.strip() for x in str(root).splitlines() if x.strip()]
    inner = f"{type(root).__name__}: {lines[0] if lines else ''}"
    return (inner if root is exc else f"{type(exc).__name__}: {inner}")[:300]


class CompileFallback:
    """Runs each training micro-batch; when the compiled layers fail to compile, goes back to eager and retries it.

    The retry is exact when the failed attempt's gradients can be undone: a forward-time failure leaves none, and
    a backward-time one (AOTAutograd compiles the backward at its first use) may leave the later layers' adapter
    gradients, accumulated before the first layers' own compiled class (LEVERS.checkpoint_in_graph) reached its
    backward. Where no gradient existed before the micro-batch (the first of its step, after zero_grad), clearing
    them all undoes it; where some had accumulated from earlier micro-batches and changed, it cannot be undone and
    the error is raised. Checked, not assumed.

    on_fallback(message) records the event (metrics.jsonl); restore(model) puts back what compiling replaced
    (Liger's in-layer kernels).
    """

    def __init__(self, model, log: Callable[[str], None], on_fallback: Callable[[str], object] | None = None,
                 restore: Callable[[object], None] | None = None):
        self.model = model
        self.log = log
        self.on_fallback = on_fallback
        self.restore = restore
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.failed: str | None = None  # why the layers went back to eager
        self.checked = False  # whether a step has shown that dynamo really compiled the layers

    def _grads(self) -> list:
        return [None if p.grad is None else (id(p.grad), p.grad._version) for p in self.params]

    def run(self, step: Callable[[], object]):
        if self.failed is not None:
            return step()
        before = self._grads()
        try:
            result = step()
        except Exception as exc:
            if not is_compile_failure(exc):
                raise
            if self._grads() != before:
                if any(g is not None for g in before):
                    raise RuntimeError("the compiled decoder layers failed after part of this micro-batch's "
                                       "gradient was accumulated; it cannot be retried exactly") from exc
                for p in self.params:   # none before it: cleared, the failed attempt's part is undone
                    p.grad = None
            why = _why(exc)
            # The traceback keeps every frame of the failed attempt alive, and in their locals its activations and
            # autograd graph (1.5 GiB of layer outputs on a 7B model): the retry must not run beside them, so it
            # runs after this block, with the frames cleared (in case something still holds the exception).
            traceback.clear_frames(exc.__traceback__)
        else:
            if not self.checked:
                self.checked = True
                if not traced_any(self.model):
                    self._fall_back("dynamo skipped the layers' forward", "torch.compile compiled none of the {n} "
                                    "decoder layers ({why}, a graph break it cannot resume from); they run eagerly")
            return result
        # Autograd graphs can sit in reference cycles, which only the collector frees. No torch.cuda.empty_cache():
        # the caching allocator hands the freed blocks to the retry, and frees its cached blocks itself before it
        # would run out of memory; emptying it would only give the memory back to the driver.
        gc.collect()
        self._fall_back(why, "torch.compile failed ({why}); {n} decoder layers run eagerly from here on, "
                             "and this micro-batch was trained again eagerly")
        return step()

    def _fall_back(self, why: str, message: str) -> None:
        self.failed = why
        n = uncompile_decoder_layers(self.model)
        if self.restore is not None:
            try:
                self.restore(self.model)
            except Exception as e:  # noqa: BLE001 - logged; the eager layers train without those kernels too
                self.log(f"kernels: could not restore Liger's in-layer kernels after the fallback ({e})")
        message = message.format(why=why, n=n)
        self.log(f"kernels: {message}")
        if self.on_fallback is not None:
            self.on_fallback(message)


def restore_liger_in_layers(model) -> None:
    """Liger's RMSNorm, RoPE and SwiGLU, which compiling left to inductor (engine.train.speed.apply_liger), back on
    the eager layers: without them the fallback would train slower than the default path."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    _apply_liger_kernel_to_instance(model=base, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
