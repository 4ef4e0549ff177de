"""The SwiGLU and RMSNorm Functions of LEVERS.checkpoint_in_graph (engine.train.input_saving_ops): the values and
gradients autograd gives through the modules' own forwards, inputs saved only, installed on the families written as
Llama's and on no other."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.train import input_saving_ops as ops  # noqa: E402
from engine.train import layer_checkpoint  # noqa: E402


def _grads(fn, *inputs):
    """fn's output and the gradients of those inputs that take one, each input's .grad cleared after."""
    out = fn(*inputs)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype))
    grads = [t.grad for t in inputs if t.requires_grad]
    for t in inputs:
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_mul_is_autograds(dtype):
    gen = torch.Generator().manual_seed(1)
    gate, up = (torch.randn(3, 5, 24, generator=gen).to(dtype).requires_grad_() for _ in range(2))
    want = _grads(lambda g, u: torch.nn.functional.silu(g) * u, gate, up)
    got = _grads(ops.SiluMul.apply, gate, up)
    assert torch.equal(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weight_grad", [False, True])
def test_rms_norm_is_llamas(dtype, weight_grad):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(24, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.normal_(1, 0.1, generator=torch.Generator().manual_seed(2))
    norm.weight.requires_grad_(weight_grad)
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(3)).to(dtype).requires_grad_()
    want = _grads(lambda t, w: norm(t), x, norm.weight)
    got = _grads(lambda t, w: ops.RMSNorm.apply(t, w, norm.variance_epsilon), x, norm.weight)
    assert torch.equal(got[0], want[0])
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, **tol)


def test_installed_on_llama_shaped_modules_only_and_used_inside_the_lever_alone():
    from transformers import GemmaConfig, LlamaConfig
    from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    small = dict(hidden_size=24, intermediate_size=48, num_attention_heads=2, num_key_value_heads=2, head_dim=12)
    llama = LlamaDecoderLayer(LlamaConfig(**small), 0)
    gemma = GemmaDecoderLayer(GemmaConfig(**small, hidden_act="silu"), 0)   # its norm is (1 + weight) x ...
    assert ops.install([llama]) == 3          # the MLP and the two norms
    assert ops.install([llama]) == 0          # once
    assert ops.install([gemma]) == 1          # the MLP only
    x = torch.randn(2, 4, 24)
    eager = llama.mlp.__class__.__mro__[1].forward(llama.mlp, x)
    assert torch.equal(llama.mlp(x), eager)
    with layer_checkpoint.tracing():
        inside = llama.mlp(x.requires_grad_())
    assert "SiluMulBackward" in _backward_names(inside) and "SiluMulBackward" not in _backward_names(llama.mlp(x))
    torch.testing.assert_close(inside, eager)


def _backward_names(t) -> set[str]:
    names, seen, todo = set(), set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and id(fn) not in seen:
            seen.add(id(fn))
            names.add(fn.name())
            todo += [f for f, _ in fn.next_functions]
    return names
