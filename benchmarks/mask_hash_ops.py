"""The mask-free dropout's hash in its two forms, int64 words and int32 words (LEVERS.mask_hash32), as inductor
generates them: the integer work per element of a dropped input, counted, and on a GPU checked and timed.

    python benchmarks/mask_hash_ops.py [--out FILE]           anywhere (no GPU needed): the counts
    python benchmarks/mask_hash_ops.py --gpu [--out FILE]     on a GPU: the counts, the masks checked, the kernels timed
    python benchmarks/mask_hash_ops.py --graphs [--layer demo|wide] [--gpu] [--out FILE]
                                                              how many masks each compiled graph (forward, backward)
                                                              hashes per element, and the SASS of each hashing kernel

The kernel: the compiled path's dropped input, x * keep_mask(seed) / (1 - p) (engine.train.mask_free_dropout._dropped,
p 0.05), which the compiled layer computes 3 times per adapter input (forward, the checkpoint's recompute, backward),
compiled with dynamic shapes as the decoder layers are. Per element of x, for each form:
  triton ops  lines of inductor's Triton kernel computing on an element's own value (its index, the hash, the compare,
              the float multiplies), integer ones apart; the seed's own hash is the same in every element (a thread
              computes it once). Without a GPU inductor's Triton backend is made to write the kernel for the CPU (its
              source only: nothing runs)
  sass        instructions in that kernel compiled for sm_90 (H100) by Triton's bundled ptxas (no GPU needed), at 4
              warps: per element at XBLOCK 1024 (8 elements a thread, what inductor launches for a large pointwise
              kernel; the seed's hash and the set-up shared by the thread's 8), and each element's own, the
              difference between XBLOCK 1024 and 512 over 4
With --gpu: each form's compiled mask against the eager int64 form's, bit for bit, for several seeds and shapes, one of
them past 2**31 elements (the int32 form's multiplies and index wrap in Triton's code: the GPU's side of
tests/test_mask_free_dropout.py's proof), and each kernel's time on x [8786, 11008] bf16 (Llama-2-7B's down_proj input
at the user path's largest micro-batch; median of CUDA-event timings), beside x * 1/(1 - p) without a mask.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

P = 0.05
FORMS = {"int64": False, "int32": True}
TIMED_SHAPE = (8786, 11008)


# ---------------------------------------------------------------------------------------- inductor's Triton source
@contextlib.contextmanager
def _triton_source_for_the_cpu():
    """inductor's Triton backend writing the CPU's kernels: the source is generated, then compiling it fails (no
    Triton CPU driver), after the source was recorded."""
    import logging
    import warnings

    import torch._inductor.config as config
    import torch.utils._triton as triton_utils

    saved = (config.cpu_backend, triton_utils.triton_hash_with_backend)
    config.cpu_backend = "triton"
    triton_utils.triton_hash_with_backend = lambda: "source-only"   # it asks the (absent) driver
    inductor = logging.getLogger("torch._inductor")
    level = inductor.level
    inductor.setLevel(logging.CRITICAL)   # the expected compile failure, logged with its stack
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        config.cpu_backend, triton_utils.triton_hash_with_backend = saved
        inductor.setLevel(level)


def triton_source(hash32: bool, device: str) -> str:
    """inductor's Triton kernel for the dropped input (the graph's one kernel, here and on an H100 alike)."""
    import torch
    from torch._inductor.codegen import triton as codegen

    from engine.train import mask_free_dropout as mfd

    threshold = mfd.drop_threshold(P)
    sources: list[str] = []
    generate = codegen.TritonKernel.codegen_kernel

    def recording(self, *args, **kwargs):
        sources.append(generate(self, *args, **kwargs))
        return sources[-1]

    x = torch.randn(300, 517, device=device)
    seed = torch.tensor([7], device=device)
    torch._dynamo.reset()
    codegen.TritonKernel.codegen_kernel = recording
    try:
        with _triton_source_for_the_cpu() if device == "cpu" else contextlib.nullcontext():
            fn = torch.compile(lambda x, s: mfd._dropped(x, s, threshold, hash32), backend="inductor", dynamic=True)
            with contextlib.suppress(Exception) if device == "cpu" else contextlib.nullcontext():
                fn(x, seed)
    finally:
        codegen.TritonKernel.codegen_kernel = generate
    multipliers = (str(mfd._HASH_MUL_I32[0]), str(mfd._HASH_MUL[0] >> 16))   # either form's, as the source writes it
    hashing = [src for src in sources if "tl.store" in src and any(m in src for m in multipliers)]
    assert hashing, f"no hashing kernel among {len(sources)}"
    return max(hashing, key=len)


def element_ops(source: str) -> dict[str, int]:
    """The kernel's lines computing on an element's own value: integer ones and all, by a small data flow over the
    source (an element's index and what reads it; a broadcast one-element load is the same in every element)."""
    body = source[source.index("@triton.jit"):]
    per_element = {"xindex"}
    floats: set[str] = set()
    ops = ints = 0
    for name, rhs in re.findall(r"^\s+(\w+) = (.+)$", body, re.M):
        if name in ("xoffset", "xmask"):
            continue
        reads = set(re.findall(r"\b[a-z]\w*\b", rhs))
        if not reads & per_element:
            continue
        per_element.add(name)
        if "tl.load(" in rhs:
            floats.add(name)   # x: the only full-size load
            continue
        is_float = bool(reads & floats) and ".to(tl.int" not in rhs or "tl.float" in rhs
        if is_float:
            floats.add(name)
        ops += 1
        ints += not is_float
    return {"ops": ops, "integer ops": ints}


def sass_per_element(source: str) -> tuple[float, float] | None:
    """Instructions per element in the kernel compiled for sm_90 by Triton's bundled ptxas, at XBLOCK 1024 and each
    element's own (see the module's docstring), or None without ptxas."""
    try:
        import triton
        from triton.backends.compiler import GPUTarget
    except ImportError:
        return None
    body = source[source.index("@triton.jit"):].replace("Placeholder.KERNEL_NAME", "kernel")
    signature = eval(re.search(r"'signature': (\{[^}]*\})", source).group(1))   # inductor's own dict literal
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask_kernel.py"   # triton.jit reads the function's source from its file
        path.write_text("import triton\nimport triton.language as tl\n\n" + body)
        spec = importlib.util.spec_from_file_location("mask_kernel", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        counts = []
        for block in (512, 1024):
            compiled = triton.compile(triton.compiler.ASTSource(fn=module.kernel, signature=signature,
                                                                constexprs={"XBLOCK": block}),
                                      target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
            counts.append(_sass_instructions(compiled.asm["cubin"], Path(tmp) / f"k{block}.cubin"))
    if None in counts:
        return None
    return counts[1] / 8, (counts[1] - counts[0]) / 4


def _sass_instructions(cubin: bytes, path: Path) -> int | None:
    import subprocess

    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        return None
    path.write_bytes(cubin)
    sass = subprocess.run([str(tool), "-sass", str(path)], capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"^\s+/\*[0-9a-f]{4}\*/\s+\S", sass, re.M))


# ------------------------------------------------------------------------- how many times a step hashes each mask
# A compiled layer runs its forward graph twice a step (the forward, then its activation checkpoint's recompute: the
# same graph) and its backward graph once. The backward uses each mask twice: grad_x = (grad @ W) * keep * scale, and
# dropped = x * keep * scale for lora_A's weight gradient; inductor hashes it once if both land in one kernel (or if
# it stores the mask), twice if each consumer's kernel inlines the hash. Counted in each graph's Triton kernels.
def compiled_graphs(step, device: str) -> list[tuple[str, list[str]]]:
    """The Triton kernels of each graph that step(backend) compiles with `backend`: [("forward" or "backward",
    [kernel source, ...]), ...] in the order compiled, caches off so that each graph is generated. Without a GPU each
    graph is written for the CPU as source only with the GPU's realize thresholds (inductor inlines a pointwise value
    into its users or stores it by these, and the CPU's are higher), then run by AOTAutograd's traced graph."""
    import copy

    import torch
    import torch._inductor.config as config
    from torch._functorch.aot_autograd import make_boxed_func
    from torch._inductor import compile_fx as cfx
    from torch._inductor.codegen import triton as codegen

    graphs: list[tuple[str, list[str]]] = []
    generate = codegen.TritonKernel.codegen_kernel

    def inner(gm, example_inputs, **kwargs):
        sources: list[str] = []
        graphs.append(("backward" if kwargs.get("is_backward") else "forward", sources))

        def recording(self, *args, **kw):
            sources.append(generate(self, *args, **kw))
            return sources[-1]

        codegen.TritonKernel.codegen_kernel = recording
        try:
            if device != "cpu":
                return cfx.compile_fx_inner(gm, example_inputs, **kwargs)
            gpu = config.patch(realize_opcount_threshold=config._realize_opcount_threshold_default,
                               realize_acc_reads_threshold=config._realize_acc_reads_threshold_default)
            with _triton_source_for_the_cpu(), gpu, contextlib.suppress(Exception):
                cfx.compile_fx_inner(copy.deepcopy(gm), example_inputs, **kwargs)
        finally:
            codegen.TritonKernel.codegen_kernel = generate
        return make_boxed_func(gm)

    torch._dynamo.reset()
    with config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        step(lambda gm, example_inputs: cfx.compile_fx(gm, example_inputs, inner_compile=inner))
    torch._dynamo.reset()
    return graphs


def hashes(source: str) -> int:
    """How many keep masks a Triton kernel hashes per element: its multiplies by the hash's last multiplier (the int64
    form's low half, the int32 form's word) of a value that depends on the element (its index, a load at it); the
    seed's own hash, the same in every element, left out."""
    from engine.train import mask_free_dropout as mfd

    last = {str(mfd._HASH_MUL[1] & 0xFFFF), str(mfd._HASH_MUL_I32[1])}
    body = source[source.index("@triton.jit"):]
    per_element = {"xindex", "r0_index", "rindex"}
    constants: set[str] = set()
    n = 0
    for name, rhs in re.findall(r"^\s+(\w+) = (.+)$", body, re.M):
        constant = re.fullmatch(r"tl\.full\(\[1(?:, 1)*\], (-?\d+), tl\.int(?:32|64)\)", rhs)
        if constant:
            if constant.group(1) in last:
                constants.add(name)
            continue
        if name in ("xoffset", "xmask") or not set(re.findall(r"\b[a-z]\w*\b", rhs)) & per_element:
            continue
        per_element.add(name)
        product = re.fullmatch(r"(\w+) \* (\w+)", rhs)
        n += bool(product and constants & set(product.groups()))
    return n


def lora_linear_step(hash32: bool, device: str):
    """One LoRA'd linear as the compiled layers run it (mask_free_dropout._forward: lora_A drops its input inside a
    checkpoint), the trainer's dtypes (bf16 input and frozen weight under bf16 autocast, fp32 adapters): step(backend)
    compiles it with dynamic shapes, runs it forward and backward."""
    import torch

    from engine.train import mask_free_dropout as mfd

    torch.manual_seed(0)
    base = torch.nn.Linear(517, 300, bias=False, device=device, dtype=torch.bfloat16).requires_grad_(False)
    lora_a = torch.nn.Linear(517, 16, bias=False, device=device)
    lora_b = torch.nn.Linear(16, 300, bias=False, device=device)
    mfd._swap(lora_a, P, hash32)

    def layer(x):
        return base(x) + lora_b(lora_a(x)) * 2.0

    def step(backend):
        x = torch.randn(1, 300, 517, device=device, dtype=torch.bfloat16, requires_grad=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            out = torch.compile(layer, backend=backend, dynamic=True)(x)
        out.float().sum().backward()
    return step


def decoder_layer_step(hash32: bool, device: str, model_dir: str | None = None):
    """A 4-bit llama (the demo's, engine.demo, by default), LoRA on every linear with dropout P, mask-free, its decoder
    layers compiled as the trainer compiles them (graph_dequant), bf16 stream under bf16 autocast: one packed
    micro-batch."""
    import torch

    from engine.config import config_from_dict
    from engine.demo.model import ensure_demo_model
    from engine.model import add_lora, load_base_model
    from engine.train import mask_free_dropout as mfd
    from engine.train import speed
    from engine.train.compiled_layers import compile_decoder_layers, uncompile_decoder_layers

    model_dir = model_dir or str(ensure_demo_model())
    cfg = config_from_dict({"model": model_dir, "dataset": {"path": "unused.jsonl"}, "lora": {"dropout": P}})
    torch.manual_seed(0)
    model, _ = load_base_model(model_dir, "nf4", "auto")
    model = add_lora(model, cfg, gradient_checkpointing=True)
    speed.keep_unquantised_16bit(model, lambda _: None)
    mfd.install(model, hash32=hash32)
    model.train()
    ids = torch.randint(5, 200, (1, 56), generator=torch.Generator().manual_seed(3)).to(model.device)
    positions = torch.cat([torch.arange(20), torch.arange(36)])[None].to(model.device)

    def step(backend):
        compile_decoder_layers(model, lambda _: None, backend=backend, graph_dequant=True)
        try:
            with torch.autocast(model.device.type, dtype=torch.bfloat16):
                loss = model(input_ids=ids, position_ids=positions, labels=ids).loss
            loss.backward()
        finally:
            uncompile_decoder_layers(model)
    return step


def wide_llama(folder: Path) -> str:
    """A one-layer llama at Llama-2-7B's widths (hidden 4096, MLP 11008, 32 heads; random bf16 weights, a 1,024-token
    vocabulary) saved in folder: the demo's 128-wide RMSNorm fits one block of a persistent reduction, 4096 loops."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=1, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=1024, max_position_embeddings=4096)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    return str(folder)


LAYERS = {"demo": "the demo's decoder layer", "wide": "a decoder layer at Llama-2-7B's widths"}


def graph_lines(device: str, layers: list[str]) -> list[str]:
    """Markdown: the masks each compiled graph hashes per element, for both forms, and the sm_90 SASS of each kernel
    that hashes (the LoRA'd linear's; per element at XBLOCK 1024, and each element's own)."""
    cases = [("one LoRA'd linear", lora_linear_step, None)] + [(LAYERS[name], decoder_layer_step, name)
                                                              for name in layers]
    lines = ["| compiled | form | forward graph: kernels hashing, masks hashed | backward graph: kernels hashing, "
             "masks hashed | masks hashed a step (forward, recompute, backward) |", "|---|---|---|---|---|"]
    sass = ["", "| form | the LoRA'd linear's kernel that hashes | masks it hashes | its stores | sm_90 SASS an "
            "element (XBLOCK 1024) | of its own |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for what, make, layer in cases:
            for form, hash32 in FORMS.items():
                if layer is None:
                    step = make(hash32, device)
                else:
                    model_dir = None
                    if layer == "wide":
                        model_dir = str(Path(tmp) / "wide")
                        if not Path(model_dir).exists():
                            wide_llama(Path(model_dir))
                    step = make(hash32, device, model_dir)
                graphs = compiled_graphs(step, device)
                counts = {kind: [hashes(src) for src in sources] for kind, sources in graphs}
                cells = [f"{sum(1 for c in counts.get(kind, []) if c)}, {sum(counts.get(kind, []))}"
                         for kind in ("forward", "backward")]
                total = 2 * sum(counts.get("forward", [])) + sum(counts.get("backward", []))
                lines.append(f"| {what} | {form} | {cells[0]} | {cells[1]} | {total} |")
                if layer is not None:
                    continue
                for kind, sources in graphs:
                    for i, src in enumerate(sources):
                        if hashes(src):
                            per = sass_per_element(src)
                            sass.append(f"| {form} | {kind} {i} | {hashes(src)} | {src.count('tl.store(')} | "
                                        + ("n/a | n/a |" if per is None else f"{per[0]:g} | {per[1]:g} |"))
    return lines + sass


# ------------------------------------------------------------------------------------------------------ on a GPU
CHECKED_SHAPES = ((3, 517), (8786, 4096), TIMED_SHAPE, (2 ** 31 // 11008 + 3, 11008))   # the last: past 2**31


def check_masks(device: str, shapes=CHECKED_SHAPES) -> list[str]:
    """Each form's compiled keep mask against the eager int64 form's: the shapes and seeds for which they differ
    (none expected; past 2**31 elements the int32 form's index wraps)."""
    import torch

    from engine.train import mask_free_dropout as mfd

    threshold = mfd.drop_threshold(P)
    wrong = []
    for form, hash32 in FORMS.items():
        torch._dynamo.reset()
        compiled = torch.compile(lambda s, shape: mfd.keep_mask(s, shape, threshold, s.device, hash32),
                                 backend="inductor", dynamic=True)
        for shape in shapes:
            for seed in (0, 1, 12345, 2 ** 31 - 1):
                s = torch.tensor([seed], device=device)
                if not torch.equal(compiled(s, shape), mfd.keep_mask(s, shape, threshold, s.device)):
                    wrong.append(f"{form} {shape} seed {seed}")
                if device == "cuda":
                    torch.cuda.empty_cache()
    return wrong


def time_kernels(device: str, repeats: int = 50) -> dict[str, float]:
    """Microseconds per call (median) of each form's compiled dropped input, and of x * scale without a mask."""
    import torch

    from engine.train import mask_free_dropout as mfd

    threshold = mfd.drop_threshold(P)
    x = torch.randn(TIMED_SHAPE, device=device, dtype=torch.bfloat16)
    seed = torch.tensor([12345], device=device)
    cases = {form: (lambda x, s, h=hash32: mfd._dropped(x, s, threshold, h)) for form, hash32 in FORMS.items()}
    cases["no mask"] = lambda x, s: x * mfd.keep_scale(threshold)
    out = {}
    for name, fn in cases.items():
        torch._dynamo.reset()
        compiled = torch.compile(fn, backend="inductor", dynamic=True)
        for _ in range(3):
            compiled(x, seed)
        times = []
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            compiled(x, seed)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) * 1000)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="also check the masks and time the kernels on CUDA")
    ap.add_argument("--graphs", action="store_true", help="instead: the masks each compiled graph hashes, and the "
                    "SASS of the backward's kernels")
    ap.add_argument("--layer", action="append", choices=sorted(LAYERS), default=[],
                    help="with --graphs: count a compiled decoder layer's graphs too (demo: the demo model's; wide: "
                         "one at Llama-2-7B's widths)")
    ap.add_argument("--out", help="write the markdown here too")
    args = ap.parse_args(argv)
    import torch

    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        print("--gpu: no CUDA device", file=sys.stderr)
        return 2
    from benchmarks.throughput import write_out

    if args.graphs:
        written = "inductor's CUDA code" if args.gpu else (
            "written for the CPU with the GPU's realize thresholds, source only")
        write_out("\n".join([f"# The keep masks hashed per element in each compiled graph (torch {torch.__version__}, "
                             f"p {P}; Triton kernels {written})", ""] + graph_lines(device, args.layer)) + "\n",
                  args.out)
        return 0
    lines = [f"# The mask-free dropout's hash per element of x (torch {torch.__version__}, p {P})", "",
             "| form | Triton ops an element | of them integer | sm_90 SASS an element (XBLOCK 1024) | "
             "of its own |", "|---|---|---|---|---|"]
    for form, hash32 in FORMS.items():
        source = triton_source(hash32, device)
        counts = element_ops(source)
        sass = sass_per_element(source)
        lines.append(f"| {form} | {counts['ops']} | {counts['integer ops']} | "
                     + (" n/a | n/a |" if sass is None else f"{sass[0]:g} | {sass[1]:g} |"))
    if args.gpu:
        wrong = check_masks(device)
        lines += ["", f"Compiled masks against the eager int64 form's: {'all equal' if not wrong else 'DIFFER: '}"
                  + ", ".join(wrong)]
        times = time_kernels(device)
        lines += ["", f"Kernel time on x {list(TIMED_SHAPE)} bf16 ({torch.cuda.get_device_name()}), median us: "
                  + ", ".join(f"{name} {us:.1f}" for name, us in times.items())]
    write_out("\n".join(lines) + "\n", args.out)
    return 1 if args.gpu and wrong else 0


if __name__ == "__main__":
    sys.exit(main())
