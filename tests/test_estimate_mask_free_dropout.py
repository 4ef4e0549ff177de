"""What eager mask-free LoRA dropout adds to a layer's backward, against the estimate, on the CPU.

engine.train.mask_free_dropout's DroppedLoraA.backward makes the keep mask again from its seed (a chain of int64 hash
steps, EAGER_CHUNK_ELEMENTS at a time; int32 steps under the plan's mask_hash32) and keeps it beside the dropped copy of the input: on an H100 its layer's
backward peaked 27 % above the estimate's (benchmarks/results/user_path-s19-h100-2026-12-05.md). The CPU has no
max_memory_allocated: the bytes of live tensors are counted by a dispatch mode (benchmarks/saved_tensors.py's
live_bytes), as every op returns them and as they are freed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import engine.train.mask_free_dropout as mfd  # noqa: E402
import engine.train.speed as speed  # noqa: E402
from benchmarks.saved_tensors import live_bytes  # noqa: E402
from engine.estimate.memory import GIB, TrainingShape, mask_free_dropout_bytes, memory, shape_for_plan  # noqa: E402
from engine.estimate.params import Linear  # noqa: E402

P = 0.05
REPO = Path(__file__).resolve().parents[1]


def _backward_peak(tokens: int, d_in: int, dtype, mask_free: bool, hash32: bool = False) -> int:
    """Bytes above the start that one adapter's lora_A backward peaks at: mask-free, or without dropout."""
    x = torch.randn(1, tokens, d_in, dtype=dtype, requires_grad=True)
    # rank 1: the weight's gradient (r x d_in, not per token) falls at another moment of the two backwards
    w = torch.randn(1, d_in, dtype=dtype, requires_grad=True)
    with live_bytes() as live:
        if mask_free:
            out = mfd.DroppedLoraA.apply(x, w, torch.tensor([5]), mfd.drop_threshold(P), hash32)
        else:
            out = torch.nn.functional.linear(x, w)
        grad = torch.randn_like(out)
        live.reset_peak()
        start = live.live
        out.backward(grad)
    return live.peak - start


def _shape(tokens: int, d_in: int, precision: str, **kw) -> TrainingShape:
    return TrainingShape(quantization="nf4", precision=precision, targets=(Linear("down_proj", d_in, 64, feeds="down"),),
                         r=8, dropout=P, optimizer="adamw_torch", gradient_checkpointing=True, tokens=tokens,
                         fused_loss=False, mask_free_dropout=True, device="cpu", **kw)


CASES = [  # (tokens, d_in, precision, chunk, hash32)
    (100, 384, "fp32", None, False),        # the whole mask in one chunk: the int64 hash steps are the peak
    (128, 384, "bf16", None, False),
    (128, 384, "fp32", 100 * 384, False),   # in chunks, the earlier chunks' bools kept: still the hash
    (128, 384, "fp32", 20_000, False),
    (128, 384, "bf16", 4096, False),        # small chunks: the mask beside the dropped copy and the gradients
    (100, 384, "fp32", None, True),         # int32 words: half the bytes a step, one step fewer at once
    (128, 384, "bf16", None, True),
    (128, 384, "fp32", 100 * 384, True),
    (128, 384, "fp32", 20_000, True),
    (128, 384, "bf16", 4096, True),
]


def _in_a_fresh_interpreter(expr: str):
    """The JSON value of `expr` (over this module's names) computed in a new Python process. The bytes live at the
    backward's peak depend on when Python frees each temporary: after some other tests in the same process (a
    compile failure's fallback, tests/test_compiled_layers.py) one more int64 step stayed alive at the peak."""
    code = ("import json, torch; torch.set_num_threads(1); import tests.test_estimate_mask_free_dropout as m; "
            f"print(json.dumps(eval({expr!r}, vars(m))))")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _measure(cases) -> list[int]:
    """Each case's backward peak with mask-free dropout above the same backward's without dropout."""
    out = []
    for tokens, d_in, precision, chunk, hash32 in cases:
        mfd.EAGER_CHUNK_ELEMENTS = chunk or speed.MASK_FREE_EAGER_CHUNK_ELEMENTS
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        out.append(_backward_peak(tokens, d_in, dtype, True, hash32) - _backward_peak(tokens, d_in, dtype, False))
    return out


@pytest.fixture(scope="module")
def measured() -> dict:
    return dict(zip(CASES, _in_a_fresh_interpreter("_measure(CASES)"), strict=True))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_one_adapters_backward_peaks_what_the_estimate_adds(monkeypatch, measured, case):
    tokens, d_in, precision, chunk, hash32 = case
    if chunk:   # the GPU's regime (a 7B's inputs are many chunks) at the CPU's sizes
        monkeypatch.setattr(speed, "MASK_FREE_EAGER_CHUNK_ELEMENTS", chunk)
    shape = _shape(tokens, d_in, precision, mask_hash32=hash32)
    assert measured[case] == pytest.approx(mask_free_dropout_bytes(None, shape), rel=0.02)


def test_compiled_layers_and_no_dropout_add_nothing():
    shape = _shape(128, 384, "fp32")
    assert mask_free_dropout_bytes(None, shape) > 0
    assert mask_free_dropout_bytes(None, replace(shape, compile_layers=True)) == 0
    assert mask_free_dropout_bytes(None, replace(shape, mask_free_dropout=False)) == 0
    assert mask_free_dropout_bytes(None, replace(shape, dropout=0.0)) == 0
    assert mask_free_dropout_bytes(None, replace(shape, mask_hash32=True)) < mask_free_dropout_bytes(None, shape)


def test_a_training_step_with_mask_free_dropout_peaks_what_the_estimate_adds(demo_model_dir):
    """The demo's model, every projection adapted, fp32 with checkpointing, as the trainer builds it: a step's peak
    with eager mask-free dropout above the same step's without dropout, against the estimate's term (the two
    steps' peaks fall at different moments of the layer's backward: within 15 %)."""
    peaks, estimated = _in_a_fresh_interpreter(f"_step_peaks({str(demo_model_dir)!r})")
    assert peaks[1] - peaks[0] == pytest.approx(estimated[1] - estimated[0], rel=0.15)


def _step_peaks(model_dir: str) -> tuple[list, list]:
    """The measured and estimated peaks of a step without dropout and with eager mask-free dropout."""
    from tests.test_estimate_saved_tensors import ALL, _built, _cfg, _decoder

    from engine.estimate import read_model_config

    info = read_model_config(model_dir)
    tokens = 160
    peaks, estimated = [], []
    for dropout, mask_free in ((0.0, False), (P, True)):
        torch.manual_seed(0)
        cfg = _cfg(model_dir, "fp32", dropout, ALL)
        model, plan = _built(cfg, mask_free)
        ids = torch.randint(0, _decoder(model).config.vocab_size, (1, tokens))
        with live_bytes() as live:
            model(input_ids=ids, labels=ids).loss.backward()
        peaks.append(live.peak)
        shape = replace(shape_for_plan(cfg, info.arch, plan, tokens=tokens), packed=False, eval_tokens=0)
        estimated.append(memory(info.arch, info.params, shape).peak_allocated_gib * GIB)
    return peaks, estimated
