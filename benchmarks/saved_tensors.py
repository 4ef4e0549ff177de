"""The estimate's per-layer activation rules against what a decoder layer saves and peaks at, on this machine.

    python benchmarks/saved_tensors.py --arch llama2-7b [--layers 4] [--tokens 4096,8192] [--out DIR]
    python benchmarks/saved_tensors.py --tiny [--cases 0,1,2] [--out DIR]   (the demo's tiny Llama, its 4 layers)

tests/test_estimate_saved_tensors.py pins engine/estimate/memory.py's layer_activation_bytes and
recomputed_layer_bytes to the bytes autograd saves, on the CPU, where the GPU's path can only be emulated. This runs
the same count on a GPU, on a random-weight model of a real architecture (benchmarks/throughput.py's ARCHS) cut to a
few decoder layers, built by the trainer's own build_model (engine.train.run) from the plan of this machine: NF4,
the plan's attention (varlen flash on an H100/H200), its Liger kernels and bf16 stream; compiled layers off.
Each case (LoRA dropout 0.05, 0, mask-free 0.05) is fed rows of --tokens packed as the trainer packs them (the
Collator, the boundaries PlannedTrainer adds for the plan's attention) under the autocast the Trainer puts around
the forward, and measured three ways, per decoder layer:
  saved       the distinct storages (views share one) autograd saves in a forward without checkpointing, the
              parameters and what the layer is handed besides its input (rotary tables, masks, boundaries) left out
  recomputed  the same in a training step with the engine's checkpointing, as the layer's recomputation saves them
              in backward (torch's checkpoint recomputation hook), less the layer's inputs, which checkpointing keeps
  backward    torch.cuda.max_memory_allocated from the start of the layer's recomputation to the next layer's (its
              input's gradient needs the whole layer's backward first), minus what was allocated at that start, plus
              the gradient that arrived (allocated before the start, and one of the two hidden-width gradients the
              estimate's working memory counts). GPU only; on the CPU the pairing is checked, nothing read
Per token: the difference between the two lengths, so that the adapters' weight casts (as many bytes at any length)
drop out; the backward peak at the longer length, beside the estimate's backward phase for one layer at that length
(its "backward working memory" plus its dequantisation buffer). The LoRA gradients a layer's backward allocates
(the estimate counts them apart, a few MiB) are in the measured peak.
Also printed per case: whether o_proj's input is a storage the attention kernel saved (the estimate's
_attention_output_is_o_input: on the CPU's SDPA and varlen flash it is, measured on an H100), and the whole
training step's peak above the weights, and the dropout's cost: the step's peak above dropout 0's, measured and
estimated (an H200 measured 0.94 GiB on Llama-2-7B's 32 layers at 8,786 tokens where the estimate said ~0.5; with
checkpointing the dropout's tensors should live in one recomputed layer at a time, at any layer count).
Meant to take under a minute on an H200 for Llama-2-7B's 4 layers (not timed yet: three builds, 15 passes).
Prints a markdown table; with --out also writes it and every number as JSON into that directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import ARCHS, _gpu_name, _versions, make_examples, save_random_model  # noqa: E402

GIB = 1024 ** 3


@dataclass(frozen=True)
class Case:
    name: str
    dropout: float
    mask_free: bool     # engine.train.mask_free_dropout: forced, as the plan chooses it for compiled layers only


CASES = (Case("dropout 0.05", 0.05, False), Case("dropout 0", 0.0, False), Case("mask-free dropout 0.05", 0.05, True))


# ------------------------------------------------------------------------------------------ model, plan, rows
def model_dir(arch: str, layers: int, work: Path) -> Path:
    """The demo's tiny Llama (tiny), else random weights of the architecture cut to `layers` decoder layers."""
    if arch == "tiny":
        from engine.demo.model import ensure_demo_model
        return ensure_demo_model()
    out = work / "models" / f"{arch}-{layers}layers"
    if not (out / "config.json").exists():   # written whole, then renamed: a run stopped mid-save leaves no half
        import shutil

        part = out.with_name(out.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        save_random_model(dict(ARCHS[arch], num_hidden_layers=layers), part).rename(out)
    return out


def config(model: Path, case: Case):
    """A user's config: the model, LoRA's defaults but the case's dropout, eager layers in the fast memory mode."""
    from engine.config import config_from_dict

    return config_from_dict({"model": str(model), "dataset": {"path": "x.jsonl"}, "quantization": "nf4",
                             "lora": {"dropout": case.dropout},
                             "training": {"compile": False, "memory": "fast", "gradient_checkpointing": True}})


def build(cfg, case: Case, lengths: list[int]):
    """The peft model build_model makes from this machine's plan for these example lengths, and the plan."""
    from engine.estimate import read_model_config
    from engine.model import detect_hardware
    from engine.plan import Machine, plan_run
    from engine.train.run import Inputs, build_model

    hw = detect_hardware()
    plan = plan_run(cfg, Machine.for_hardware(hw), lengths=lengths, info=read_model_config(cfg.model))
    plan = replace(plan, mask_free_dropout=case.mask_free)
    inputs = Inputs(hw=hw, dtype_name=plan.precision, n_ranks=1, tokenizer=None, data=None)  # type: ignore[arg-type]
    model = build_model(cfg, inputs, plan).model
    model.train()
    return model, plan


def examples(vocab: int, tokens: int) -> list:
    """Exactly `tokens` tokens of the synthetic examples (throughput.make_examples: lengths lognormal, median ~350),
    the last one cut to fit, its answer starting halfway at the latest (so that a row of one example trains)."""
    from engine.data.types import IGNORE_INDEX

    chosen, left = [], tokens
    for e in make_examples(tokens // 50 + 1, vocab, seed=tokens):
        n = min(left, len(e.input_ids))
        prompt = min(e.labels.count(IGNORE_INDEX), n // 2)
        chosen.append(replace(e, input_ids=e.input_ids[:n], labels=[IGNORE_INDEX] * prompt + e.input_ids[prompt:n]))
        left -= n
        if not left:
            break
    return chosen


def packed_row(model, chosen: list, packing: bool) -> dict:
    """One micro-batch of these examples packed by the trainer's Collator, with what PlannedTrainer adds for the
    model's attention (its block mask or the examples' boundaries), on the model's device."""
    from engine.data.packing import Collator
    from engine.train.trainer import packed_attention, packed_attention_inputs

    batch = Collator(pad_id=0, pack=True)([chosen])
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    return packed_attention_inputs(batch, **packed_attention(model, packing))


def autocast(device: str, precision: str):
    """What the Trainer puts around the forward (accelerate: autocast on the training device, none in fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def decoder_layers(model) -> list:
    return list(model.base_model.model.model.layers)


def _tensors(values) -> list:
    """The tensors among a call's arguments (tuples such as the rotary tables, and a flex BlockMask's, opened)."""
    import torch

    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            out += _tensors(v)
        elif hasattr(v, "as_tuple"):
            out += _tensors(v.as_tuple())
    return out


def _storage(t) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


# ------------------------------------------------------------------------------------------ the measurements
@dataclass
class ForwardCount:
    saved: list[int]        # per decoder layer, bytes of the storages it saves (no checkpointing)
    o_input_saved: bool     # o_proj's input (in every layer) is a storage saved inside the attention before it


def forward_saved(model, batch: dict, device: str, precision: str) -> ForwardCount:
    """One forward without checkpointing, every saved tensor counted once per storage in the layer saving it."""
    import torch

    layers = decoder_layers(model)
    apart = {_storage(p)[0] for p in model.parameters()}
    frames: list[dict[int, int]] = [{} for _ in layers]
    attention_saved: list[set[int]] = [set() for _ in layers]
    o_inputs: list[int] = []
    now: dict[str, Any] = {"layer": None, "attention": False}
    held = []    # every saved tensor alive to the end, so that no address is reused by another while counting

    def pack(t):
        if now["layer"] is not None:
            ptr, n = _storage(t)
            frames[now["layer"]][ptr] = n
            if now["attention"]:
                attention_saved[now["layer"]].add(ptr)
            held.append(t)
        return t

    def enter(i):
        def hook(module, args, kwargs):
            now["layer"] = i
            apart.update(_storage(t)[0] for t in _tensors(kwargs.values()))   # handed in: rotary tables, masks
        return hook

    def leave(module, args, output):
        now["layer"] = None

    def attention_starts(module, args, kwargs):
        now["attention"] = True

    def o_proj_starts(module, args):
        now["attention"] = False
        o_inputs.append(_storage(args[0])[0])

    hooks = []
    for i, layer in enumerate(layers):
        hooks += [layer.register_forward_pre_hook(enter(i), with_kwargs=True), layer.register_forward_hook(leave),
                  layer.self_attn.register_forward_pre_hook(attention_starts, with_kwargs=True),
                  layer.self_attn.o_proj.register_forward_pre_hook(o_proj_starts)]
    checkpointing = [layer.gradient_checkpointing for layer in layers]
    try:
        for layer in layers:
            layer.gradient_checkpointing = False
        with autocast(device, precision), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(**batch)
        del out
    finally:
        for layer, on in zip(layers, checkpointing):
            layer.gradient_checkpointing = on
        for h in hooks:
            h.remove()
    saved = [sum(n for ptr, n in f.items() if ptr not in apart) for f in frames]
    return ForwardCount(saved, all(o in s for o, s in zip(o_inputs, attention_saved)))


@dataclass
class StepCount:
    recomputed: list[int]       # per decoder layer, bytes its recomputation saves, less its inputs
    backward_peak: list[int]    # per decoder layer: peak above the start of its backward, plus the arriving gradient
    step_peak: int              # the whole step's peak allocated, less what was allocated before it
    forward_peak: int           # the same until the first recomputation: the forward's and the loss's


@contextlib.contextmanager
def recorded_recomputations(on_start: Callable[[], None]):
    """torch's checkpoint recomputation, each one's saved storages recorded (address -> bytes) into the list this
    yields, in backward's order; on_start is called as each begins. The one place that uses torch's private
    _recomputation_hook: tests/test_estimate_saved_tensors.py records with it too. Only what the recomputation keeps
    for backward is recorded: a tensor saved for a node the forward's graph has already freed (a branch whose result
    nothing used, such as the final recurrent state Qwen3.5's linear attention computes and drops) is freed at once,
    and its address may go to the next one."""
    import torch.utils.checkpoint as checkpoint

    frames: list[dict[int, int]] = []
    recomputation = checkpoint._recomputation_hook

    class Recorded(recomputation):   # type: ignore[misc, valid-type]
        def __init__(self, target_frame_ref, gid):
            super().__init__(target_frame_ref, gid)
            on_start()
            inner = self.pack_hook   # type: ignore[has-type]
            storages: dict[int, int] = {}
            frames.append(storages)

            def pack(t):
                frame, ptr_n = target_frame_ref(), _storage(t)
                index = frame.recomp_counter[gid]
                if index < len(frame.weak_holders) and frame.weak_holders[index]() is not None:   # kept for backward
                    storages[ptr_n[0]] = ptr_n[1]
                return inner(t)
            self.pack_hook = pack

    checkpoint._recomputation_hook = Recorded        # type: ignore[misc]
    try:
        yield frames
    finally:
        checkpoint._recomputation_hook = recomputation   # type: ignore[misc]


def live_bytes():
    """A torch dispatch mode (`with live_bytes() as live:`) that counts the bytes of the storages the ops inside it
    return while any tensor of them is alive: .live now, .peak the most since entering or reset_peak(). The CPU has no
    max_memory_allocated; this is its peak of tensors (what a GPU's allocator would report, less its rounding). What
    was allocated before entering is not counted: take differences. tests/test_estimate_mask_free_dropout.py reads
    it."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.tensors: dict[int, list[int]] = {}     # storage address -> [tensors of it alive, its bytes]
            self.live = self.peak = 0

        def reset_peak(self) -> None:
            self.peak = self.live

        def _freed(self, ptr: int) -> None:
            entry = self.tensors[ptr]
            entry[0] -= 1
            if entry[0] == 0:
                self.live -= entry[1]
                del self.tensors[ptr]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.untyped_storage().data_ptr() == 0:
                    continue
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in self.tensors:
                    self.tensors[ptr] = [0, storage.nbytes()]
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                self.tensors[ptr][0] += 1
                weakref.finalize(t, self._freed, ptr)    # torch keeps a tensor's Python object while autograd holds it
            return out

    return LiveBytes()


def training_step(model, batch: dict, device: str, precision: str) -> StepCount:
    """One training step as the Trainer runs it (forward under autocast with the engine's checkpointing, backward),
    each layer's recomputation and backward peak recorded. A layer's backward runs from its recomputation's start to
    the next layer's (its input's gradient needs all of it first), the last one's to the end of the backward."""
    import torch

    cuda = device == "cuda"
    layers = decoder_layers(model)
    held: list = []            # each layer's inputs, alive (checkpointing holds them): their storages are not reused
    arriving: list[int] = []   # bytes of the gradient of each layer's output, in backward's order
    starts: list[int] = []     # allocated as each layer's recomputation begins
    maxima: list[int] = []     # the peak allocated since the previous reset, read before each reset

    def inputs(module, args, kwargs):
        held.extend(_tensors((*args, *kwargs.values())))

    def outputs(module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        if out.requires_grad and torch.is_grad_enabled() and not recomputing:
            out.register_hook(lambda g: arriving.append(g.untyped_storage().nbytes()))

    def start():
        maxima.append(torch.cuda.max_memory_allocated() if cuda else 0)
        starts.append(torch.cuda.memory_allocated() if cuda else 0)
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    hooks = [h for layer in layers for h in (layer.register_forward_pre_hook(inputs, with_kwargs=True),
                                              layer.register_forward_hook(outputs))]
    recomputing = False     # the layers' forward hooks run again in their recomputation: the output hooked once
    before = 0
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    try:
        with recorded_recomputations(start) as frames:
            with autocast(device, precision):
                loss = model(**batch).loss
            recomputing = True
            loss.backward()
    finally:
        for h in hooks:
            h.remove()
    assert len(frames) == len(layers), "no recomputation recorded: torch's checkpoint internals changed"
    apart = {_storage(t)[0] for t in (*held, *model.parameters())}
    recomputed = [sum(n for ptr, n in f.items() if ptr not in apart) for f in frames][::-1]
    if cuda:
        torch.cuda.synchronize()
    maxima.append(torch.cuda.max_memory_allocated() if cuda else 0)
    model.zero_grad(set_to_none=True)   # as the Trainer's next step finds them
    # maxima[0] is the forward's and the loss's; maxima[j + 1] ends the backward of the layer starts[j] began.
    # Counted on the CPU too (no allocator to read there: nothing is kept), so that a tiny run checks the pairing.
    layer_peaks = [p - s + g for p, s, g in zip(maxima[1:], starts, arriving, strict=True)][::-1]
    return StepCount(recomputed, layer_peaks if cuda else [], max(maxima) - before, maxima[0] - before)


# ------------------------------------------------------------------------------------------ one case
def estimate_terms(cfg, plan, tokens: int, several: bool = True) -> dict:
    """The estimate's terms for this plan: per token per layer, and one layer's backward phase at `tokens`.
    several False: the measured rows hold one example each, where a packed row has no block-diagonal mask (the
    CPU's SDPA then keeps no mask nor full-width k/v: the estimate's packed-row terms do not apply)."""
    from engine.estimate import read_model_config
    from engine.estimate.memory import (layer_activation_bytes, memory, recomputed_layer_bytes, shape_for_plan,
                                        _attention_output_is_o_input)

    info = read_model_config(cfg.model)
    shape = shape_for_plan(cfg, info.arch, plan, tokens=tokens)
    shape = replace(shape, packed=shape.packed and several)
    parts = {c.name: c.gib * GIB for c in memory(info.arch, info.params, shape).components}
    working, dequant = parts["backward working memory"], parts.get("dequantisation buffer", 0.0)
    return {"saved": layer_activation_bytes(info.arch, shape), "recomputed": recomputed_layer_bytes(info.arch, shape),
            "backward": working + dequant, "backward_working": working, "dequant": dequant,
            "o_input_saved": _attention_output_is_o_input(shape)}


def run_case(model_path: Path, case: Case, tokens: tuple[int, int], vocab: int) -> dict:
    import torch

    cfg = config(model_path, case)
    torch.manual_seed(0)
    chosen = [examples(vocab, t) for t in tokens]
    model, plan = build(cfg, case, lengths=[len(e.input_ids) for row in chosen for e in row])
    device = plan.device
    rows = [packed_row(model, row, cfg.training.packing) for row in chosen]
    if device == "cuda":      # warm-up: kernels, cuBLAS workspaces, the allocator's first segments
        training_step(model, rows[0], device, plan.precision)
    counts = [forward_saved(model, row, device, plan.precision) for row in rows]
    steps = [training_step(model, row, device, plan.precision) for row in rows]
    (t1, t2), est = tokens, estimate_terms(cfg, plan, tokens[1], several=all(len(row) > 1 for row in chosen))
    per_token = t2 - t1
    res = {"case": case.name, "dropout": case.dropout, "mask_free": case.mask_free, "tokens": list(tokens),
           "device": device, "precision": plan.precision, "attention": plan.attention, "liger": plan.liger,
           "fused_loss": plan.fused_loss, "mask_free_dropout": plan.mask_free_dropout,
           "layers": len(decoder_layers(model)),
           "saved": [(b - a) / per_token for a, b in zip(counts[0].saved, counts[1].saved)],
           "recomputed": [(b - a) / per_token for a, b in zip(steps[0].recomputed, steps[1].recomputed)],
           "backward_peak": steps[1].backward_peak, "step_peak": [s.step_peak for s in steps],
           "forward_peak": [s.forward_peak for s in steps],
           "o_input_saved": [c.o_input_saved for c in counts],
           "estimate": est,
           "estimate_peak_gib": memory_peak_gib(cfg, plan, tokens[1])}
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return res


def memory_peak_gib(cfg, plan, tokens: int) -> float:
    """The estimate's peak allocated for this plan (its few layers) at `tokens`, less its weights and adapters'
    states (the step's measured peak is taken above what the built model holds)."""
    from engine.estimate import read_model_config
    from engine.estimate.memory import memory, shape_for_plan

    info = read_model_config(cfg.model)
    mem = memory(info.arch, info.params, shape_for_plan(cfg, info.arch, plan, tokens=tokens))
    static = {"base weights", "unquantised weights", "LoRA adapters", "optimizer states"}
    return sum(c.gib for c in mem.components if c.in_peak and c.name not in static)


# ------------------------------------------------------------------------------------------ the table
def _ratio(measured: float, estimate: float) -> str:
    return f"{measured / estimate:.3f}" if estimate else "-"


def table(results: list[dict], header: str) -> str:
    """One row per case and term: estimate, measured (the layers' mean, their range when they differ), ratio."""
    lines = [header, "",
             "| case | term | estimate | measured | measured / estimate |", "|---|---|---|---|---|"]
    for r in results:
        est = r["estimate"]
        backward = (f"backward peak (MiB/layer at {r['tokens'][1]:,} tokens; estimate: working memory "
                    f"{est['backward_working'] / 2 ** 20:,.1f} + dequantisation buffer {est['dequant'] / 2 ** 20:,.1f})")
        for term, label, scale in (("saved", "saved (B/token/layer)", 1),
                                   ("recomputed", "recomputed (B/token/layer)", 1), ("backward", backward, 2 ** 20)):
            values = r["backward_peak" if term == "backward" else term]
            if not values:
                lines.append(f"| {r['case']} | {label} | {est[term] / scale:,.1f} | - (no GPU) | - |")
                continue
            mean = sum(values) / len(values)
            spread = f" ({min(values) / scale:,.1f}-{max(values) / scale:,.1f})" if max(values) != min(values) else ""
            lines.append(f"| {r['case']} | {label} | {est[term] / scale:,.1f} | {mean / scale:,.1f}{spread} "
                         f"| {_ratio(mean, est[term])} |")
        measured_o = "yes" if all(r["o_input_saved"]) else "no"
        lines.append(f"| {r['case']} | o_proj's input is the attention's saved output | "
                     f"{'yes' if est['o_input_saved'] else 'no'} | {measured_o} | - |")
        if r["device"] == "cuda":
            lines.append(f"| {r['case']} | step peak above the weights (GiB, {r['tokens'][1]:,} tokens; the forward "
                         f"and loss {r['forward_peak'][1] / GIB:.3f}) | "
                         f"{r['estimate_peak_gib']:.3f} | {r['step_peak'][1] / GIB:.3f} | "
                         f"{_ratio(r['step_peak'][1] / GIB, r['estimate_peak_gib'])} |")
    return "\n".join(lines + _dropout_costs(results)) + "\n"


def _dropout_costs(results: list[dict]) -> list[str]:
    """The step's peak with LoRA dropout (saved masks, or mask-free) above its peak without, measured and estimated:
    with checkpointing the dropout's tensors live in the one layer recomputed at a time, at any layer count."""
    by = {(r["dropout"], r["mask_free"]): r for r in results if r["device"] == "cuda"}
    base = by.get((0.0, False))
    if base is None:
        return []
    lines = ["", "| dropout's cost (step peak above dropout 0's, GiB) | estimate | measured |", "|---|---|---|"]
    for r in results:
        if r is not base and r in by.values():
            lines.append(f"| {r['case']} | {r['estimate_peak_gib'] - base['estimate_peak_gib']:.3f} | "
                         f"{(r['step_peak'][1] - base['step_peak'][1]) / GIB:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="llama2-7b", choices=sorted(a for a in ARCHS if a != "tiny"))
    ap.add_argument("--tiny", action="store_true", help="the demo's tiny Llama (48 and 80 tokens unless --tokens)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", help="two lengths, comma-separated (default 4096,8192)")
    ap.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))),
                    help="indices into " + "; ".join(f"{i}: {c.name}" for i, c in enumerate(CASES)))
    ap.add_argument("--work", type=Path, default=Path("/tmp/lorapilot-bench/saved_tensors"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    arch = "tiny" if a.tiny else a.arch
    t1, t2 = (int(x) for x in (a.tokens or ("48,80" if a.tiny else "4096,8192")).split(","))
    path = model_dir(arch, a.layers, a.work)
    vocab = json.loads((path / "config.json").read_text())["vocab_size"]
    began = time.time()
    results = []
    for i in (int(x) for x in a.cases.split(",")):
        results.append(run_case(path, CASES[i], (t1, t2), vocab))
        print(f"{CASES[i].name}: {time.time() - began:.0f} s", flush=True)
    n = results[0]["layers"]
    header = (f"{arch} ({n} decoder layer{'s' if n != 1 else ''}), {results[0]['attention']}, {results[0]['precision']}"
              f"{', Liger' if results[0]['liger'] else ''}; {t1:,} and {t2:,} tokens; {_gpu_name()}; {_versions()}; "
              f"{time.strftime('%Y-%m-%d')}")
    text = table(results, header)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"saved_tensors-{arch}.md").write_text(text)
        (a.out / f"saved_tensors-{arch}.json").write_text(json.dumps(
            {"arch": arch, "gpu": _gpu_name(), "versions": _versions(), "date": time.strftime("%Y-%m-%d"),
             "seconds": round(time.time() - began, 1), "cases": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
