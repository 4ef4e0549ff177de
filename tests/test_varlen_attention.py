"""Packed rows through variable-length flash attention (engine.train.varlen_attention, LEVERS.varlen_attention).

torch's varlen kernel is CUDA-only: on the CPU `torch.nn.attention.varlen.varlen_attn` is replaced by a reference
with its public contract (token-major (L, H, D) tensors, cumulative offsets, the causal window, GQA, the scale) that
attends each example alone with SDPA. Everything around the kernel is lorapilot's and runs for real: the boundaries
from position_ids, the inputs the trainer adds, the layout transforms, the registration with transformers, the
SDPA path for rows without boundaries (generation). The kernel itself is measured on the GPU
(benchmarks/user_path.py's varlen sides: losses and adapters beside flex attention's).
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch

from engine.train import varlen_attention as va


def row(lengths):
    return torch.cat([torch.arange(n) for n in lengths])[None]


def reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                     window_size=(-1, -1), enable_gqa=False, **_):
    """The public contract of torch.nn.attention.varlen.varlen_attn, computed per example with SDPA: causal, within
    a sliding window of (W, 0) where given (a token sees itself and the W before it)."""
    assert torch.equal(cu_seq_q, cu_seq_k) and cu_seq_q.dtype == torch.int32 and max_q == max_k
    left, right = window_size
    assert right == 0 and left >= -1, "training attention must be causal"
    assert enable_gqa or key.shape[1] == query.shape[1]
    lengths = (cu_seq_q[1:] - cu_seq_q[:-1]).tolist()
    assert max(lengths) == max_q
    out = []
    for s, e in zip(cu_seq_q[:-1].tolist(), cu_seq_q[1:].tolist()):
        q, k, v = (t[s:e].transpose(0, 1) for t in (query, key, value))
        back = torch.arange(e - s)[:, None] - torch.arange(e - s)[None, :]     # query's position - key's
        mask = (back >= 0) & ((back <= left) if left >= 0 else True)
        out.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                                                    enable_gqa=enable_gqa).transpose(0, 1))
    return torch.cat(out)


@pytest.fixture
def cpu_kernel(monkeypatch):
    import torch.nn.attention.varlen as public

    # The reference takes this torch's own keyword set (window_size, enable_gqa, scale): the glue's choices among
    # them (causal window, GQA without repeating heads) are what the reference checks.
    assert {"window_size", "enable_gqa", "scale"} <= set(inspect.signature(public.varlen_attn).parameters)
    monkeypatch.setattr(public, "varlen_attn", reference_varlen)


def test_boundaries_are_the_examples_offsets_and_the_longest():
    cu, longest = va.boundaries(row([3, 2, 4]))
    assert cu.tolist() == [0, 3, 5, 9] and cu.dtype == torch.int32 and longest == 4
    cu, longest = va.boundaries(row([7]))
    assert cu.tolist() == [0, 7] and longest == 7
    with pytest.raises(ValueError, match="start with an example"):
        va.boundaries(torch.tensor([[1, 2, 0, 1]]))


def test_the_trainer_adds_the_boundaries_and_a_placeholder_mask_to_a_packed_row():
    from engine.train.trainer import PlannedTrainer

    inputs = {"input_ids": torch.zeros(1, 9, dtype=torch.long), "position_ids": row([3, 2, 4])}
    trainer = SimpleNamespace(fused_loss=False, own_block_mask=False, varlen=True)
    model = SimpleNamespace(training=True)
    got = PlannedTrainer.loss_inputs(trainer, model, inputs)
    assert got["cu_seq_lens_q"].tolist() == [0, 3, 5, 9] and got["max_length_q"] == 4
    assert got["cu_seq_lens_k"] is got["cu_seq_lens_q"] and got["max_length_k"] == 4
    assert got["attention_mask"].shape == (1, 1, 0, 0)      # 4-D: transformers builds no L x L mask
    off = PlannedTrainer.loss_inputs(SimpleNamespace(fused_loss=False, own_block_mask=False, varlen=False), model,
                                     inputs)
    assert off == inputs


def _model(kv_heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=kv_heads, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_a_packed_row_gives_each_example_its_logits_alone(cpu_kernel, kv_heads):
    """Through the model, as in training (no cache): each example's logits are the ones it gets on its own."""
    model = _model(kv_heads)
    lengths = [150, 90, 200, 33]
    pos = row(lengths)
    ids = torch.randint(1, 97, pos.shape)
    va.register()
    with torch.no_grad():
        model.config._attn_implementation = va.ATTENTION
        got = model(**va.varlen_inputs({"input_ids": ids, "position_ids": pos}), use_cache=False).logits
        model.config._attn_implementation = "sdpa"
        start = 0
        for n in lengths:
            alone = model(input_ids=ids[:, start:start + n], use_cache=False).logits
            torch.testing.assert_close(got[:, start:start + n], alone, atol=1e-4, rtol=1e-4)
            start += n


def test_a_row_without_boundaries_goes_through_sdpa_with_its_mask(cpu_kernel):
    """Generation (the samples) has no boundaries and may pad: the same tokens as the SDPA model, padding and all."""
    model = _model(2)
    prompts = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])      # the first left-padded
    mask = (prompts != 0).long()
    va.register()
    outs = {}
    for impl in ("sdpa", va.ATTENTION):
        model.config._attn_implementation = impl
        with torch.no_grad():
            outs[impl] = model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                        pad_token_id=0)
    assert torch.equal(outs["sdpa"], outs[va.ATTENTION])


def test_it_trains_the_adapters_as_sdpa_does_on_the_same_packed_row(cpu_kernel):
    """Loss and LoRA gradients through varlen equal SDPA's with transformers' packed-row mask from position_ids."""
    from peft import LoraConfig, get_peft_model

    va.register()
    pos = row([20, 12, 31])
    ids = torch.randint(1, 97, pos.shape)
    result = {}
    for impl in ("sdpa", va.ATTENTION):
        model = get_peft_model(_model(2), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                                     init_lora_weights=False))   # B not 0: every gradient moves
        model.train()
        model.config._attn_implementation = impl
        inputs = {"input_ids": ids, "position_ids": pos}
        out = model(**(va.varlen_inputs(inputs) if impl == va.ATTENTION else inputs), labels=ids, use_cache=False)
        out.loss.backward()
        result[impl] = (out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if "lora_" in n})
    (loss_s, grads_s), (loss_v, grads_v) = result["sdpa"], result[va.ATTENTION]
    torch.testing.assert_close(loss_v, loss_s, atol=1e-5, rtol=1e-5)
    assert grads_s.keys() == grads_v.keys() and len(grads_s) == 8
    for name, g in grads_s.items():
        assert g.abs().sum() > 0
        torch.testing.assert_close(grads_v[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_the_plan_takes_it_for_packed_16_bit_rows_on_a_gpu_that_runs_it(monkeypatch):
    from engine.config import config_from_dict
    from engine.plan import Machine, attention_for
    from engine.train import speed

    gpu = Machine("cuda", "GPU", 80.0, varlen=True)
    name, line = attention_for(gpu, True, "bf16")
    assert name == va.ATTENTION and "variable-length flash attention" in line
    assert attention_for(gpu, True, "fp16")[0] == va.ATTENTION
    assert attention_for(gpu, True, "fp32")[0] == "flex_attention"     # flash kernels take 16-bit inputs only
    assert attention_for(gpu, False, "bf16")[0] == "sdpa"               # padded rows: no boundaries to give
    assert attention_for(Machine.for_gpu(None), True, "fp32")[0] == "sdpa"   # the kernel is CUDA's
    monkeypatch.setattr(speed.LEVERS, "varlen_attention", False)
    assert attention_for(gpu, True, "bf16")[0] == "flex_attention"
    assert config_from_dict({"model": "x", "dataset": {"path": "d.jsonl"}})   # the config has no say in it


# Attention that is more than causal: sliding windows (Mistral's and Phi-3's every layer, Gemma-2's and Gemma-3's
# every other or five of six), Gemma-2's soft-capped logits. Tiny models, the window shorter than an example.
_WINDOWED = {"mistral": {"sliding_window": 8}, "gemma3_text": {"sliding_window": 8, "head_dim": 8},
             "phi3": {"sliding_window": 8}}


def _tiny(model_type: str, **extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=97, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                                  **extra)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():   # scores of a few units, as a trained model's: soft-capping and windows change the output
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name or "qkv_proj" in name:
                p.mul_(20)
    return model


@pytest.mark.parametrize("model_type", _WINDOWED)
def test_sliding_window_layers_keep_their_window_in_a_packed_row(cpu_kernel, model_type):
    """The varlen kernel ran every layer fully causal: a sliding-window layer saw past its window in any example
    longer than it (Gemma-3's 512 or 1,024 tokens; Mistral's and Phi-3's 4,096 and 2,047), training another
    attention than the model's, silently. Each example's logits now are the ones it gets alone (eager attention)."""
    model = _tiny(model_type, **_WINDOWED[model_type])
    lengths = [12, 20, 5]
    pos = row(lengths)
    ids = torch.randint(1, 97, pos.shape)
    va.register()
    with torch.no_grad():
        alone = [model(input_ids=part, use_cache=False).logits for part in ids.split(lengths, dim=1)]
        model.config._attn_implementation = va.ATTENTION
        got = model(**va.varlen_inputs({"input_ids": ids, "position_ids": pos}), use_cache=False).logits
    torch.testing.assert_close(got, torch.cat(alone, 1), atol=1e-4, rtol=1e-4)


def test_soft_capped_attention_is_refused_by_the_kernel_and_the_plan_goes_around_it():
    """Gemma-2 soft-caps its attention logits (50 * tanh(s / 50)); the varlen kernel has no such term and computed
    plain softmax attention, silently. The plan takes flex attention for it (transformers' flex applies the cap), and
    the kernel refuses soft-capping should a plan without the model's shapes reach it."""
    from engine.estimate import read_model_config
    from engine.plan import Machine, attention_for

    gemma2 = read_model_config("gemma-2-2b").arch
    assert gemma2.attention_softcap and not read_model_config("llama-3.2-1b").arch.attention_softcap
    gpu = Machine("cuda", "GPU", 80.0, varlen=True)
    assert attention_for(gpu, True, "bf16", softcap=gemma2.attention_softcap)[0] == "flex_attention"
    q = torch.zeros(1, 4, 6, 8)
    boundaries = va.varlen_inputs({"position_ids": row([6])})
    del boundaries["attention_mask"], boundaries["position_ids"]
    with pytest.raises(ValueError, match="soft-capping"):
        va.varlen_attention_forward(None, q, q, q, None, softcap=50.0, **boundaries)


def test_the_own_block_mask_is_left_to_transformers_where_a_window_is_shorter_than_an_example(monkeypatch):
    """flex attention's own block mask (engine.train.block_mask) is one causal mask for every layer: with it a
    sliding-window layer saw past its window, silently. Where the window is shorter than an example may be
    (max_seq_length), transformers builds the masks, each layer type its own; a window longer than any example, or
    one the model does not use (Qwen2's layer_types), keeps the own mask."""
    from engine.train import speed
    from engine.train.trainer import packed_attention

    monkeypatch.setattr(speed.LEVERS, "own_block_mask", True)

    def own_mask(max_seq_length, **config):
        model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flex_attention", **config))
        return packed_attention(model, True, max_seq_length)["own_block_mask"]

    assert own_mask(2048)                                                          # Llama: no window
    assert not own_mask(2048, sliding_window=512, layer_types=["sliding_attention", "full_attention"])  # Gemma-3
    assert not own_mask(4096, sliding_window=2047)                                 # Phi-3-mini-4k
    assert own_mask(4096, sliding_window=4096)                                     # Mistral-7B-v0.1 at 4,096
    assert own_mask(2048, sliding_window=4096, layer_types=["full_attention"])     # Qwen2: not used


def traceable_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                        window_size=(-1, -1), enable_gqa=False, **_):
    """The same contract without a host loop, as one masked SDPA: dynamo traces it whole, like the real custom op."""
    n = query.shape[0]
    doc = torch.searchsorted(cu_seq_q[1:].contiguous(), torch.arange(n, device=query.device), right=True)
    causal = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
    mask = (doc[:, None] == doc[None, :]) & causal
    q, k, v = (t.transpose(0, 1)[None] for t in (query, key, value))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], scale=scale,
                                                           enable_gqa=enable_gqa)
    return out[0].transpose(0, 1)


def lora_model_on_varlen():
    """The 2-layer GQA llama with LoRA on q and v (nonzero), its attention the varlen path, in training mode."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(2), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                                 init_lora_weights=False))
    model.config._attn_implementation = va.ATTENTION
    return model.train()


def test_compiled_layers_trace_it_in_one_graph_and_compute_what_eager_does(monkeypatch):
    """The plan compiles the layers of long runs: the attention function must not break their graph (dynamo would
    split each layer, silently slower), and must give eager's numbers for each new packed length."""
    import torch.nn.attention.varlen as public

    from engine.train.compiled_layers import compile_decoder_layers

    monkeypatch.setattr(public, "varlen_attn", traceable_reference)
    va.register()

    def run(compiled: bool, graphs: list):
        model = lora_model_on_varlen()
        if compiled:
            from torch._dynamo.backends.registry import lookup_backend

            aot_eager = lookup_backend("aot_eager")

            def backend(gm, example_inputs):
                graphs.append(gm)
                return aot_eager(gm, example_inputs)
            torch._dynamo.reset()
            compile_decoder_layers(model, lambda _line: None, backend=backend)
        losses = []
        for lengths in ([20, 12, 31], [40, 9, 17, 30]):       # two packed lengths and example counts
            pos = row(lengths)
            ids = torch.randint(1, 97, pos.shape, generator=torch.Generator().manual_seed(len(lengths)))
            out = model(**va.varlen_inputs({"input_ids": ids, "position_ids": pos}), labels=ids, use_cache=False)
            out.loss.backward()
            losses.append(out.loss.item())
        return losses, {n: p.grad for n, p in model.named_parameters() if "lora_" in n}

    eager_losses, eager_grads = run(False, [])
    torch._dynamo.utils.counters.clear()
    graphs: list = []
    losses, grads = run(True, graphs)
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    assert graphs and len(graphs) <= 4                       # one graph family for both layers and both lengths
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for name, g in eager_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_a_model_loads_with_it_through_the_trainers_load_path(tmp_path, cpu_kernel):
    """The seam the kernel tests skip: from_pretrained with attn_implementation=ATTENTION, as build_model asks.
    A name transformers takes for a hub flash kernel fails here before any step runs."""
    from engine.model import load_base_model

    _model(2).save_pretrained(tmp_path / "tiny")
    model, _ = load_base_model(str(tmp_path / "tiny"), "none", "fp32", attn_implementation=va.ATTENTION)
    assert model.config._attn_implementation == va.ATTENTION
    pos = row([5, 7])
    ids = torch.randint(1, 97, pos.shape)
    with torch.no_grad():
        got = model(**va.varlen_inputs({"input_ids": ids, "position_ids": pos}), use_cache=False).logits
        alone = model(input_ids=ids[:, 5:], use_cache=False).logits
    torch.testing.assert_close(got[:, 5:], alone, atol=1e-4, rtol=1e-4)


def test_which_gpus_run_it():
    """Flash kernels need Ampere or newer (the cards that do bf16): a T4 or V100 packs through flex attention."""
    from engine.estimate.gpus import get_gpu
    from engine.model import Hardware
    from engine.plan import Machine, attention_for

    assert Machine.for_gpu(get_gpu("h100-80")).varlen
    assert not Machine.for_gpu(get_gpu("t4")).varlen
    assert attention_for(Machine.for_gpu(get_gpu("t4")), True, "fp16")[0] == "flex_attention"
    turing = Hardware("cuda", "Tesla T4", bf16=False, capability=(7, 5), count=1, memory_gib=15.0)
    assert not Machine.for_hardware(turing).varlen


@pytest.mark.parametrize(("version", "runs"), [("2.8.0+cu128", False), ("2.9.0", True), ("2.13.0+cpu", True),
                                               ("3.0.0a0", True)])
def test_the_estimate_and_the_trainer_read_the_kernel_from_the_same_torch(monkeypatch, request, version, runs):
    """A torch without varlen_attn (before 2.9) packs through flex attention, and the estimate plans what the
    trainer will run: both Machines ask the installed torch's version, neither imports torch for it."""
    import importlib.metadata

    from engine.estimate.gpus import get_gpu
    from engine.model import Hardware
    from engine.plan import Machine, attention_for

    from engine.train.speed import torch_version

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version if name == "torch" else real(name))
    torch_version.cache_clear()                 # read once a process: this test swaps the torch
    request.addfinalizer(torch_version.cache_clear)
    ampere = Hardware("cuda", "NVIDIA A100", bf16=True, capability=(8, 0), count=1, memory_gib=80.0)
    for machine in (Machine.for_gpu(get_gpu("a100-80")), Machine.for_hardware(ampere)):
        assert machine.varlen is runs
        assert attention_for(machine, True, "bf16")[0] == (va.ATTENTION if runs else "flex_attention")


@pytest.mark.parametrize(("version", "windowed"), [("2.11.0+cu130", False), ("2.12.0", True), ("2.13.0+cpu", True)])
def test_a_sliding_window_packs_through_flex_where_this_torch_varlen_has_none(monkeypatch, request, version, windowed):
    """torch 2.9-2.11's varlen_attn takes no window: a sliding-window model (Mistral v0.1, Phi-3-mini-4k, Gemma-3)
    whose rows may outgrow its window was planned onto it and failed at its first forward with the kernel's
    ValueError. The plan packs it through flex attention there; a window no row can outgrow changes nothing."""
    import importlib.metadata

    from engine.config import Config
    from engine.estimate.gpus import get_gpu
    from engine.estimate.model_config import ModelInfo
    from engine.estimate.params import architecture, count_params
    from engine.plan import Machine, plan_run
    from engine.train.speed import torch_version

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version if name == "torch" else real(name))
    torch_version.cache_clear()
    request.addfinalizer(torch_version.cache_clear)
    machine = Machine.for_gpu(get_gpu("a100-80"))
    assert machine.varlen and machine.varlen_window is windowed
    mistral = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "sliding_window": 4096}
    for max_seq, window_matters in ((8192, True), (4096, False)):
        cfg = Config(model="m")
        cfg.training.max_seq_length = max_seq
        arch = architecture(mistral)
        plan = plan_run(cfg, machine, info=ModelInfo("m", mistral, "local", arch, count_params(arch)))
        assert plan.attention == (va.ATTENTION if windowed or not window_matters else "flex_attention"), (max_seq,
                                                                                                          plan.attention)
