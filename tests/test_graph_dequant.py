"""NF4 weights dequantised inside the compiled layers (engine.train.graph_dequant): bitsandbytes' numbers bit for
bit, the same losses and gradients as the eager layers, and no 16-bit weight kept for the backward."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = pytest.importorskip("bitsandbytes.functional")


def _reference(packed, state):
    """bitsandbytes' own dequantise of the same packed weights, read as one flat row: its CPU kernel decodes a
    [rows, cols] weight in blocks of each row, wrong where a row is not a whole number of blocks (the blocks run
    across rows, as its quantiser and its CUDA kernel have them)."""
    import copy

    flat = copy.copy(state)
    flat.shape = torch.Size([state.shape[0] * state.shape[1]])
    return F.dequantize_4bit(packed, flat).reshape(state.shape)


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(192, 256), (128, 352), (100, 64)])
def test_dequantised_weights_are_bitsandbytes_bit_for_bit(nested, dtype, shape):
    from engine.train.graph_dequant import dequantize_nf4

    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(dtype) * 0.05
    packed, state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=nested)
    ours = dequantize_nf4(packed, state, dtype)
    assert ours.dtype == dtype and ours.shape == shape
    assert torch.equal(ours, _reference(packed, state))
    assert (ours.float() - weight.float()).abs().mean() < 0.2 * weight.float().abs().mean()  # NF4's rounding


def test_the_demo_models_4bit_weights_dequantise_on_the_cpu_as_on_a_gpu(demo_model_dir):
    """The demo trains on the CPU through bitsandbytes' CPU dequantise, which garbles a weight whose rows are not
    whole 64-weight blocks (the demo's MLP was 352 wide until v4). Every 4-bit weight the demo loads must decode as
    the blocks run across rows (the quantiser's and the CUDA kernel's reading)."""
    import bitsandbytes as bnb

    from engine.model import load_base_model

    model, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 7 * model.config.num_hidden_layers
    for lin in layers:
        state = lin.weight.quant_state
        assert torch.equal(F.dequantize_4bit(lin.weight.data, state), _reference(lin.weight.data, state)), lin


def _linear4bit(rows=192, cols=256):
    import bitsandbytes as bnb

    lin = bnb.nn.Linear4bit(cols, rows, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    data = torch.randn(rows, cols, generator=torch.Generator().manual_seed(1)) * 0.05
    lin.weight = bnb.nn.Params4bit(data, requires_grad=False, quant_type="nf4", compress_statistics=True)
    return lin.to("cpu")  # quantises


def _saved_by_compiled_forward(module, x) -> list[tuple]:
    shapes: list[tuple] = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="aot_eager", dynamic=True)  # AOTAutograd's min-cut partitioner
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = compiled(x)
    y.sum().backward()
    return shapes


def test_the_backward_recomputes_the_dequantised_weight_rather_than_saving_it(monkeypatch):
    import engine.train.graph_dequant as graph_dequant

    lin = _linear4bit()
    model = torch.nn.Sequential(lin, torch.nn.GELU())
    assert graph_dequant.dequantise_in_graph([model]) == 1
    x = torch.randn(5, 256, requires_grad=True)
    saved = _saved_by_compiled_forward(model, x)
    assert saved and (192, 256) not in saved  # the packed weight and its scales only
    assert x.grad is not None
    # what the checkpoint prevents: the partitioner keeps the 16-bit weight for the backward's matmul
    monkeypatch.setattr(graph_dequant, "RECOMPUTE_WEIGHT", False)
    assert (192, 256) in _saved_by_compiled_forward(model, torch.randn(5, 256, requires_grad=True))


def test_called_eagerly_a_swapped_projection_is_bitsandbytes_own():
    from engine.train.graph_dequant import dequantise_in_graph, swapped

    lin = _linear4bit()
    x = torch.randn(3, 256)
    before = lin(x)
    dequantise_in_graph([lin])
    assert swapped(lin)
    assert torch.equal(lin(x), before)
    assert dequantise_in_graph([lin]) == 0  # once


@pytest.fixture(scope="module")
def whole_block_model_dir(tmp_path_factory):
    """A tiny Llama whose every projection is a whole number of 64-weight blocks per row, where bitsandbytes'
    eager CPU path dequantises right (see _reference)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("whole-blocks")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["qwen2", "gemma2"])
def test_other_families_compiled_with_the_weights_in_the_graph_compute_what_eager_does(tmp_path, model_type):
    """The families beyond Llama whose projections differ: Qwen2's q/k/v carry a bias (the swapped forward adds it),
    Gemma-2 soft-caps its attention and logits and scales its norms by 1 + w. Every projection swapped."""
    from test_compiled_layers import _loss_and_grads
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=256, hidden_size=128, intermediate_size=384,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                  max_position_embeddings=256)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # initialised to zero: a forward that dropped them would compute the same
        for name, p in model.named_parameters():
            if name.endswith("proj.bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path)
    eager_losses, eager_grads, _, _ = _loss_and_grads(tmp_path, compiled=False)
    losses, grads, logs, model = _loss_and_grads(tmp_path, compiled=True, graph_dequant=True)
    assert "14 NF4 weights dequantised in the graph" in logs[0]
    if model_type == "qwen2":
        assert model.model.model.layers[0].self_attn.q_proj.base_layer.bias is not None
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compiled_layers_with_the_weights_dequantised_in_the_graph_compute_what_eager_does(whole_block_model_dir):
    from test_compiled_layers import _loss_and_grads

    eager_losses, eager_grads, _, _ = _loss_and_grads(whole_block_model_dir, compiled=False)
    graphs: list = []
    losses, grads, logs, model = _loss_and_grads(whole_block_model_dir, compiled=True, graphs=graphs,
                                                 graph_dequant=True)
    assert "14 NF4 weights dequantised in the graph" in logs[0]
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-6)
    code = "\n".join(g.code for g in graphs)
    assert "tag_activation_checkpoint" in code and "gemm_4bit" not in code and "dequantize_4bit" not in code
