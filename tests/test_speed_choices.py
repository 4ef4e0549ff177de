"""The engine's speed and memory choices: memory auto/fast/lean, lean's knobs, batched samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.data.types import IGNORE_INDEX, TokenizedExample
from engine.model import Hardware
from engine.plan import LEAN_TOKENS_PER_MICROBATCH
from engine.train import speed


def cfg_for(model: str, **training):
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"},
                             "training": {"max_seq_length": 2048, **training}})


class FakeData:
    """What _plan reads: the training examples' lengths."""

    def __init__(self, lengths):
        self.train = [TokenizedExample(input_ids=[1] * n, labels=[IGNORE_INDEX] + [1] * (n - 1), source=f"x:{i}",
                                       full_length=n, trained_tokens=n - 1, trained_tokens_full=n - 1)
                      for i, n in enumerate(lengths)]
        self.validation = []


def gpu(memory_gib: float) -> Hardware:
    return Hardware("cuda", "test GPU", True, (9, 0), 1, memory_gib)


def plan_on(cfg, hw, lengths=(450,) * 64):
    from engine.estimate import read_model_config
    from engine.plan import Machine, plan_run

    return plan_run(cfg, Machine.for_hardware(hw), lengths=list(lengths), info=read_model_config(cfg.model))


def test_auto_keeps_the_fast_path_where_the_estimate_fits_and_goes_lean_where_it_does_not():
    from engine.train.run import _plan

    cfg = cfg_for("llama-2-7b")  # a preset: the estimate needs only its config numbers
    data = FakeData([450] * 64)  # 16 examples per step: ~7,200 tokens, one micro-batch on the fast path
    logs = []
    from engine.train import run
    original = run.log
    run.log = logs.append
    try:
        plan = _plan(cfg, data, gpu(80.0), 1)
        assert plan.memory == "fast" and plan.step_plan.micro_batches_per_step == 1
        assert plan.largest_microbatch_tokens == 16 * 450
        plan = _plan(cfg, data, gpu(6.0), 1)
        assert plan.memory == "lean"
        assert any("memory: lean" in line and "would not fit 6 GiB" in line for line in logs)
        plan = _plan(cfg_for("llama-2-7b", memory="fast"), data, gpu(6.0), 1)
        assert plan.memory == "fast"  # an explicit choice is kept, even where it will not fit
        assert _plan(cfg, data, Hardware("cpu", "cpu", False, None, 0), 1).memory == "fast"
    finally:
        run.log = original


def test_lean_caps_the_micro_batch_and_keeps_optimizer_states_in_8_bits():
    from engine.plan import Machine, optimizer_for, token_budget_for

    cfg = cfg_for("llama-2-7b", micro_batch_size=16, gradient_accumulation_steps=4)
    cuda, cpu = Machine("cuda", "GPU", 80.0), Machine("cpu", "cpu")
    assert token_budget_for(cfg, cuda, "fast")[0] == 64 * 2048
    assert token_budget_for(cfg, cuda, "lean")[0] == LEAN_TOKENS_PER_MICROBATCH
    long_rows = cfg_for("llama-2-7b", max_seq_length=16384)
    assert token_budget_for(long_rows, cuda, "lean")[0] == 16384  # one whole example always fits
    assert optimizer_for("paged_adamw_32bit", cuda, "lean", False)[0] == "paged_adamw_8bit"
    assert optimizer_for("paged_adamw_32bit", cuda, "fast", False)[0] == "adamw_torch_fused"
    assert optimizer_for("paged_adamw_32bit", cpu, "lean", False)[0] == "adamw_torch"


def test_sharded_parameters_get_torchs_adamw():
    # bitsandbytes' update ops have no DTensor rule (NotImplementedError in the first FSDP step on H200 x2);
    # tests/test_fsdp_shards.py shows torch's AdamW stepping the shards like one process.
    from engine.plan import Machine, optimizer_for

    cuda = Machine("cuda", "GPU", 80.0)
    for memory in ("fast", "lean"):
        name, line = optimizer_for("paged_adamw_32bit", cuda, memory, True)
        assert name == "adamw_torch" and "cannot update sharded parameters" in line
    assert optimizer_for("paged_adamw_32bit", cuda, "fast", False)[0] == "adamw_torch_fused"  # one process


def test_offloading_is_a_gpu_feature_and_says_so_on_the_cpu():
    from engine.plan import Machine, offload_for

    assert offload_for(Machine("cpu", "cpu"), "lean") == (False, "activations: kept on the device (offloading "
                                                                   "needs a GPU)")
    assert offload_for(Machine("cuda", "GPU", 80.0), "fast")[0] is False
    assert offload_for(Machine("cuda", "GPU", 80.0), "lean")[0] is True
    assert speed.activation_offload(object(), False).__class__.__name__ == "nullcontext"


def test_batched_greedy_samples_equal_one_prompt_at_a_time(demo_model_dir):
    """Left padding with its mask must not change a greedy answer: the batch is only a speed-up."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.samples import from_text, generate, generate_greedy_batch

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()
    prompts = [from_text(tok, t).ids for t in ("What is the opposite of hot?", "Name a colour.",
                                                 "Translate 'cat' into French, please, with a short example.")]
    assert len({len(p) for p in prompts}) == 3  # different lengths: the batch is padded
    batched = generate_greedy_batch(model, tok, prompts, max_new_tokens=12)
    alone = [generate(model, tok, p, max_new_tokens=12) for p in prompts]
    assert batched == alone and all(batched)


def test_the_oom_hint_names_what_changes_the_size_of_the_path_the_run_took(tmp_path):
    from engine.train.run import oom_hint

    fast = oom_hint(cfg_for("llama-2-7b"), "fast", tmp_path)
    assert fast.startswith("CUDA out of memory: training.memory: lean")
    assert "micro_batch_size" not in fast  # a fast micro-batch is a whole optimizer step whatever it says
    assert f"Edit {tmp_path / 'config.yaml'}" in fast and f"lorapilot train --resume {tmp_path}" in fast
    lean = oom_hint(cfg_for("llama-2-7b"), "lean", tmp_path)
    assert "memory: lean" not in lean and "paged_adamw_8bit" not in lean and "max_seq_length 2048 -> 1024" in lean
    padded = oom_hint(cfg_for("llama-2-7b", packing=False), None, tmp_path)
    assert "micro_batch_size 4 -> 2" in padded and "training.memory: lean" in padded
    # a plan that kept the rows padded (a model whose layers carry state across a packed row, engine.plan.packing_for)
    # though the config packs: its micro-batch is micro_batch_size examples, which halving shrinks
    kept_padded = oom_hint(cfg_for("llama-2-7b"), "fast", tmp_path, packed=False)
    assert "micro_batch_size 4 -> 2" in kept_padded and "tokens per micro-batch" not in kept_padded


@pytest.mark.parametrize("length", [64, 32])
def test_the_oom_hint_never_suggests_a_change_that_changes_nothing(tmp_path, length):
    """It read "max_seq_length 64 -> 64" (and "32 -> 64", longer rows); with no lever left it says so."""
    from engine.train.run import oom_hint

    padded = oom_hint(cfg_for("llama-2-7b", max_seq_length=length, packing=False), None, tmp_path)
    assert "max_seq_length" not in padded and "micro_batch_size 4 -> 2" in padded
    cfg = cfg_for("llama-2-7b", max_seq_length=length, memory="lean")
    assert cfg.quantization == "nf4" and cfg.training.gradient_checkpointing and cfg.training.packing
    lean = oom_hint(cfg, "lean", tmp_path)
    assert lean == ("CUDA out of memory with the smallest settings lorapilot suggests: this model needs a GPU with "
                    f"more memory (lorapilot estimate {tmp_path / 'config.yaml'} --gpu NAME says which fits)")
    assert "max_seq_length 128 -> 64" in oom_hint(cfg_for("llama-2-7b", max_seq_length=128), "lean", tmp_path)


def test_lean_stretches_its_cap_to_the_fullest_step_only_when_that_is_close(monkeypatch):
    """LEVERS.lean_stretch: one step a little over lean's cap would split every step in two (the accumulation
    count is fixed); within LEAN_STRETCH of the cap the budget becomes that step, and the estimate's largest
    micro-batch says so."""
    from engine.plan import LEAN_STRETCH

    cfg = cfg_for("llama-2-7b", memory="lean", max_steps=8)
    close, far = [600] * 128, [700] * 128  # 16 examples a step: 9,600 tokens (within 1.25 x 8,192), 11,200
    assert 16 * 600 <= LEAN_TOKENS_PER_MICROBATCH * LEAN_STRETCH < 16 * 700
    off = plan_on(cfg, gpu(80.0), close)
    assert off.step_plan.micro_batches_per_step == 2 and off.token_budget == LEAN_TOKENS_PER_MICROBATCH
    monkeypatch.setattr(speed.LEVERS, "lean_stretch", True)
    on = plan_on(cfg, gpu(80.0), close)
    assert on.step_plan.micro_batches_per_step == 1
    assert on.token_budget == on.largest_microbatch_tokens == 16 * 600  # what the estimate reads
    assert any("one micro-batch per step" in line for line in on.lines)
    assert plan_on(cfg, gpu(80.0), far).step_plan.micro_batches_per_step == 2  # too far over: the cap holds
    assert plan_on(cfg_for("llama-2-7b", max_steps=8), gpu(80.0), close).token_budget == 16 * 2048  # fast: as is


def test_the_fast_path_runs_the_paged_32_bit_default_as_fused_adamw_but_a_checkpoint_keeps_its_own(tmp_path):
    """On the GPU's fast path paged_adamw_32bit runs as torch's fused AdamW (measured: bitsandbytes' per-parameter
    syncs stall the host-bound step). A resumed run keeps the optimizer its checkpoint's states belong to: a
    checkpoint recorded before this rule (no optimizer in its record) holds bitsandbytes' states."""
    import json

    from engine.config import Config
    from engine.plan import Machine, Resumed, optimizer_for
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import checkpoint_optimizer, run_record

    cuda, cpu = Machine("cuda", "GPU", 80.0), Machine("cpu", "cpu")
    name, line = optimizer_for("paged_adamw_32bit", cuda, "fast", False)
    assert name == "adamw_torch_fused" and "no per-parameter syncs" in line
    assert optimizer_for("paged_adamw_32bit", cuda, "lean", False)[0] == "paged_adamw_8bit"
    assert optimizer_for("paged_adamw_32bit", cpu, "fast", False)[0] == "adamw_torch"
    assert optimizer_for("adamw_8bit", cuda, "fast", False)[0] == "adamw_8bit"  # the user's choice stands

    cfg = Config(model="m")
    cfg.dataset.path = str(tmp_path / "d.jsonl")
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    record = run_record(cfg, "adamw_torch_fused")
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(record))
    assert checkpoint_optimizer(ckpt) == "adamw_torch_fused"
    assert optimizer_for("paged_adamw_32bit", cuda, "fast", False, Resumed(4, checkpoint_optimizer(ckpt)))[0] == \
        "adamw_torch_fused"
    del record["optimizer"]  # a checkpoint from before the record said
    (ckpt / CHECKPOINT_RUN_FILE).write_text(json.dumps(record))
    assert checkpoint_optimizer(ckpt) == ""
    name, line = optimizer_for("paged_adamw_32bit", cuda, "fast", False, Resumed(4, checkpoint_optimizer(ckpt)))
    assert name == "paged_adamw_32bit" and "the checkpoint's" in line
    # torch's own AdamW states (a run begun on the CPU) load into the fused AdamW: no reason to go back to paging
    assert optimizer_for("paged_adamw_32bit", cuda, "fast", False, Resumed(4, "adamw_torch"))[0] == "adamw_torch_fused"


def test_fused_adamw_takes_the_steps_bitsandbytes_paged_adamw_takes():
    """The swap changes the kernels, not the training: both optimizers as the Trainer builds them from its own
    arguments (betas, eps, learning rate; decoupled weight decay in the parameter group) take the same 20 steps."""
    import torch
    from transformers import Trainer, TrainingArguments

    after = {}
    for name in ("paged_adamw_32bit", "adamw_torch_fused"):
        args = TrainingArguments(output_dir="unused", optim=name, learning_rate=2e-4, use_cpu=True, report_to=[])
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 300))
        optimizer = cls([{"params": [p], "weight_decay": 0.01}], **kwargs)
        gen = torch.Generator().manual_seed(1)
        for _ in range(20):
            p.grad = torch.randn(p.shape, generator=gen)
            optimizer.step()
        after[name] = p.detach()
    torch.manual_seed(0)
    start = torch.randn(64, 300)
    moved = (after["adamw_torch_fused"] - start).abs().max().item()
    assert moved > 1e-3  # 20 steps of lr 2e-4 moved the weights
    assert (after["adamw_torch_fused"] - after["paged_adamw_32bit"]).abs().max().item() < 1e-3 * moved


def test_a_resumed_run_s_plan_reads_its_checkpoint_s_step_and_optimizer(tmp_path, monkeypatch):
    """The seam: plan_here, resuming, asks the checkpoint the run continues from its step and which optimizer its
    states belong to."""
    from engine.plan import Resumed
    from engine.train import run

    seen = []

    def plan_and_stop(cfg, data, hw, n, resumed=None):
        seen.append(resumed)
        raise RuntimeError("stop here")
    monkeypatch.setattr(run, "_plan", plan_and_stop)
    monkeypatch.setattr("engine.train.resume_check.checkpoint_optimizer", lambda c: "saved:" + Path(c).name)
    inputs = run.Inputs(hw=None, dtype_name="fp32", n_ranks=1, tokenizer=None, data=None)  # type: ignore[arg-type]
    for ckpt in (None, str(tmp_path / "checkpoints" / "checkpoint-40")):
        with pytest.raises(RuntimeError, match="stop here"):
            run.plan_here(None, inputs, tmp_path, ckpt=ckpt)  # type: ignore[arg-type]
    assert seen == [None, Resumed(step=40, optimizer="saved:checkpoint-40")]


def test_compiled_layers_keep_only_liger_s_fused_loss(demo_model_dir):
    """dynamo cannot trace Liger's in-layer autograd Functions (it raised in LigerRMSNorm on an H200): where the plan
    compiles the layers, Liger patches the loss alone, and the layers stay transformers' own."""
    from transformers.models.llama import modeling_llama

    from engine.model import load_base_model

    before = (modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP, modeling_llama.apply_rotary_pos_emb)
    model, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    logs = []
    # as the plan chose it (RunPlan.compile_layers); Liger's patching needs no GPU
    assert speed.apply_liger(model, True, logs.append, compiled=True)
    assert "fused linear cross-entropy" in logs[-1] and "left to the compiled layers" in logs[-1]
    assert model.forward.__func__.__module__.startswith("liger_kernel")
    layer = model.model.layers[0]
    for module in (layer.input_layernorm, layer.post_attention_layernorm, layer.mlp):
        assert not type(module).__name__.startswith("Liger")
        assert not getattr(module.forward, "__func__", module.forward).__module__.startswith("liger_kernel")
    # nothing patched for models loaded later in this process
    assert (modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP, modeling_llama.apply_rotary_pos_emb) == before


def test_the_oom_hint_says_which_of_its_changes_a_resume_from_a_checkpoint_follows(tmp_path):
    """After a checkpoint the hint said "edit config.yaml and continue from the last checkpoint" of changes that the
    resume then refuses (training.memory, micro_batch_size, max_seq_length, optimizer: the checkpoint's batch plan and
    optimizer states depend on them): those start a new run from the edited config."""
    from test_run_safety import _checkpoint

    from engine.train.run import oom_hint

    _checkpoint(tmp_path, 8)
    hint = oom_hint(cfg_for("llama-2-7b", gradient_checkpointing=False), "fast", tmp_path)
    assert hint.startswith("CUDA out of memory: training.memory: lean")
    assert (f"Edit {tmp_path / 'config.yaml'}: training.gradient_checkpointing alone resumes from checkpoint-8 "
            f"(lorapilot train --resume {tmp_path}); the others change what the checkpoint was trained with, so "
            f"start a new run with them: lorapilot train {tmp_path / 'config.yaml'}") in hint
    assert "training.memory: lean with training.gradient_checkpointing: true (" in hint   # lean alone is refused
    refused = oom_hint(cfg_for("llama-2-7b"), "fast", tmp_path)
    assert refused.endswith(f"Edit {tmp_path / 'config.yaml'} and start a new run with it: lorapilot train "
                            f"{tmp_path / 'config.yaml'} (a resume from checkpoint-8 refuses these changes: the "
                            "checkpoint was trained with the old values)")
