"""The seam between the trainer's real data path and variable-length flash attention (engine.train.varlen_attention).

tests/test_varlen_attention.py checks the kernel's glue on hand-made rows. Here the trainer runs for real, in this
process (engine.train.run.train: load, plan, build, run, finish), on the demo: its locally trained tokenizer and
ChatML template, its JSONL, QLoRA on the tiny Llama, the CPU. The plan is made to choose varlen attention as it does
on an Ampere GPU (attention_for, the one place that chooses it), and torch's CUDA-only kernel is the reference of
test_varlen_attention. Two benchmark levers make the packer's edge cases certain: several micro-batches a step (a
token budget) and a padding example at the end of each packed row (pad_multiple). The data (34 examples, a fifth held
out) leaves a last, partial step.

What is checked: every micro-batch the trainer fed (training and evaluation) carries the boundaries of the examples
the collator packed into it, padding example included, and the kernel received exactly those; each trains what SDPA
with the block-diagonal mask from position_ids (the CPU's and, before varlen, the flex path's mask) trains; the
samples written during training are plain SDPA's for the same adapter; a whole run's records equal an SDPA run's.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DEMO_CONFIG
from test_varlen_attention import reference_varlen

PAD_MULTIPLE = 64
TOKENS_PER_MICROBATCH = 160     # the demo's examples are 25-45 tokens: 3-5 of them a micro-batch, 2-3 a step
IGNORE = -100


def seam_config(**training):
    from engine.config import config_from_dict

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["dataset"].update(max_examples=34, validation_split=0.2)
    raw["training"].update(dict(max_steps=-1, num_epochs=1, micro_batch_size=4, gradient_accumulation_steps=2,
                                logging_steps=1, eval_steps=2, save_steps=100, sample_max_new_tokens=8), **training)
    return config_from_dict(raw)


@dataclass
class Seen:
    """What one run did at the seam."""
    run_dir: Path
    packed: list = field(default_factory=list)   # (examples, batch): what the collator built
    fed: list = field(default_factory=list)      # (training?, batch, model inputs, attention): what the trainer fed
    kernel: list = field(default_factory=list)   # the boundaries each kernel call received
    trainer: Any = None

    def examples_of(self, batch) -> list:
        import torch

        found = [ex for ex, b in self.packed if torch.equal(b["input_ids"], batch["input_ids"])]
        assert found, "a micro-batch the collator did not build"
        return found[0]


class Switch:
    varlen = True   # the plan chooses varlen attention for packed rows (as on an Ampere GPU), else the CPU's plan


@pytest.fixture(scope="module")
def seam(tmp_path_factory, demo_model_dir):
    """The patches (this module's tests only) and a runner of the real trainer; yields run(name) -> Seen."""
    import torch.nn.attention.varlen as public

    from engine import plan as plan_module
    from engine.data.packing import Collator
    from engine.train import run, speed
    from engine.train import varlen_attention as va
    from engine.train.signals import StopFlag
    from engine.train.trainer import PlannedTrainer

    current: list[Seen] = []
    planned_attention = plan_module.attention_for
    collate = Collator.__call__
    loss_inputs = PlannedTrainer.loss_inputs

    def attention_for(machine, packing, precision, softcap=False, window=None):
        if Switch.varlen and packing:
            return va.ATTENTION, "attention: variable-length flash attention (a test forced it on the CPU)"
        return planned_attention(machine, packing, precision, softcap, window)

    @functools.wraps(reference_varlen)     # its signature: register() reads the kernel's keywords from it
    def kernel(query, key, value, cu_seq_q, *args, **kwargs):
        if current:
            current[-1].kernel.append(cu_seq_q.tolist())
        return reference_varlen(query, key, value, cu_seq_q, *args, **kwargs)

    def recording_collate(self, items):
        batch = collate(self, items)
        if not current:
            return batch
        examples = [e for it in items for e in (it if isinstance(it, list) else [it])]
        current[-1].packed.append((examples, batch))
        return batch

    def recording_loss_inputs(self, model, inputs):
        out = loss_inputs(self, model, inputs)
        if not current:
            return out
        current[-1].trainer = self
        current[-1].fed.append((model.training, inputs, out, model.config._attn_implementation))
        return out

    def train(name: str, **training) -> Seen:
        seen = Seen(run_dir=tmp_path_factory.mktemp(name) / "run")
        seen.run_dir.mkdir()
        current.append(seen)     # recorded while it trains; the tests' own calls after it are not
        try:
            assert run.train(seam_config(**training), seen.run_dir, resume=False, stop=StopFlag(seen.run_dir)) == 0
        finally:
            current.clear()
        return seen

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(public, "varlen_attn", kernel)
        mp.setattr(plan_module, "attention_for", attention_for)
        mp.setattr(speed.LEVERS, "pad_multiple", PAD_MULTIPLE)
        mp.setattr(speed.LEVERS, "tokens_per_microbatch", TOKENS_PER_MICROBATCH)
        mp.setattr(Collator, "__call__", recording_collate)
        mp.setattr(PlannedTrainer, "loss_inputs", recording_loss_inputs)
        yield train
        Switch.varlen = True


@pytest.fixture(scope="module")
def varlen_run(seam) -> Seen:
    Switch.varlen = True
    return seam("varlen")


def records(run_dir: Path, kind: str) -> list[dict]:
    from engine.rundir import read_metrics

    return [r for r in read_metrics(run_dir) if r["kind"] == kind]


def test_every_micro_batch_the_trainer_fed_has_the_boundaries_of_the_examples_it_packed(varlen_run):
    from engine.train.varlen_attention import ATTENTION

    seen = varlen_run
    trainer = seen.trainer
    assert json.loads((seen.run_dir / "status.json").read_text())["plan"]["attention"] == ATTENTION
    assert trainer.varlen and trainer.model.config._attn_implementation == ATTENTION
    training = [f for f in seen.fed if f[0]]
    evaluation = [f for f in seen.fed if not f[0]]
    # Each planned micro-batch fed once, in the plan's order; the evaluations at steps 2 and 4 (the last) each fed
    # every validation example.
    planned = [trainer.planned[k] for k in range(len(trainer.planned))]
    assert [seen.examples_of(batch) for _, batch, _, _ in training] == planned
    n_val = len(trainer.eval_dataset)
    assert trainer.state.global_step == 4 and len(records(seen.run_dir, "eval")) == 2
    assert sum(len(seen.examples_of(b)) for _, b, _, _ in evaluation) == 2 * n_val
    # The packer's edge cases are here: several micro-batches a step, a last step with fewer examples.
    assert trainer.args.gradient_accumulation_steps > 1 and len(trainer.planned.examples) % 8

    fed_boundaries = []
    pads = 0
    for _, batch, inputs, attention in seen.fed:
        assert attention == ATTENTION     # the samples' switch to SDPA came back before the next micro-batch
        lengths = [len(e.input_ids) for e in seen.examples_of(batch)]
        pad = -sum(lengths) % PAD_MULTIPLE
        pads += pad > 0
        segments = lengths + ([pad] if pad else [])
        cu = [sum(segments[:k]) for k in range(len(segments) + 1)]
        assert inputs["cu_seq_lens_q"].tolist() == cu and inputs["cu_seq_lens_k"].tolist() == cu
        assert inputs["max_length_q"] == inputs["max_length_k"] == max(segments)
        assert tuple(inputs["attention_mask"].shape) == (1, 1, 0, 0)
        labels = batch["labels"][0].tolist()
        assert all(labels[s] == IGNORE for s in cu[:-1])    # no example's first label is read across a boundary
        if pad:
            assert set(labels[cu[-2]:]) == {IGNORE}          # the padding example trains nothing
        assert len(labels) == cu[-1]
        fed_boundaries.append(cu)
    assert pads, "no micro-batch had a padding example"
    # The kernel got those boundaries and no others, in every layer (4), forward and recomputed (checkpointing).
    assert seen.kernel and {tuple(c) for c in seen.kernel} == {tuple(c) for c in fed_boundaries}
    layers = trainer.model.config.num_hidden_layers
    assert len(seen.kernel) == layers * (2 * len(training) + len(evaluation))


def _loss_and_grads(trainer, inputs: dict, *, varlen: bool):
    """compute_loss as the trainer calls it (its loss_inputs hook included), through varlen or plain SDPA."""
    import torch

    from engine.train.varlen_attention import ATTENTION

    model = trainer.model
    trainer.varlen = varlen
    model.set_attn_implementation(ATTENTION if varlen else "sdpa")
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)   # LoRA dropout: the same masks both ways
    try:
        if model.training:
            loss = trainer.compute_loss(model, inputs, num_items_in_batch=None)
            loss.backward()
        else:
            with torch.no_grad():
                loss = trainer.compute_loss(model, inputs)
    finally:
        trainer.varlen = True
        model.set_attn_implementation(ATTENTION)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_each_micro_batch_trains_what_sdpa_with_the_block_diagonal_mask_trains(varlen_run):
    """Loss and LoRA gradients of the trainer's real micro-batches, varlen against SDPA's packed-row mask: the first
    step's first micro-batch and the last, partial step's last one (each with its padding example), and an
    evaluation batch. The model is the trained one: its adapters' B are no longer 0, so every gradient moves."""
    import torch

    trainer = varlen_run.trainer
    training = [batch for is_training, batch, _, _ in varlen_run.fed if is_training]
    evaluation = [batch for is_training, batch, _, _ in varlen_run.fed if not is_training]
    model = trainer.model
    model.train()
    for batch in (training[0], training[-1]):
        loss_v, grads_v = _loss_and_grads(trainer, batch, varlen=True)
        loss_s, grads_s = _loss_and_grads(trainer, batch, varlen=False)
        torch.testing.assert_close(loss_v, loss_s, atol=1e-5, rtol=1e-5)
        assert grads_s.keys() == grads_v.keys() and all("lora_" in n for n in grads_s) and len(grads_s) > 8
        for name, g in grads_s.items():
            assert g.abs().sum() > 0, name
            torch.testing.assert_close(grads_v[name], g, atol=1e-5, rtol=1e-4, msg=name)
    model.eval()
    try:
        for batch in evaluation[-1:]:
            torch.testing.assert_close(_loss_and_grads(trainer, batch, varlen=True)[0],
                                       _loss_and_grads(trainer, batch, varlen=False)[0], atol=1e-5, rtol=1e-5)
    finally:
        model.zero_grad(set_to_none=True)


def test_the_samples_written_during_training_are_plain_sdpas_for_the_same_adapter(varlen_run):
    """The last evaluation's samples came from the final adapter: the same tokens from the saved adapter on a base
    model loaded with plain SDPA."""
    from peft import PeftModel

    from engine.model import load_base_model, load_tokenizer
    from engine.samples import sample_all

    seen = varlen_run
    samples = records(seen.run_dir, "sample")
    last = [s for s in samples if s["step"] == 4]
    assert {s["step"] for s in samples} == {2, 4} and last
    callback = next(c for c in seen.trainer.callback_handler.callbacks if hasattr(c, "sample_prompts"))
    assert [s["prompt"] for s in last] == [p.text for p in callback.sample_prompts]

    cfg = seam_config()
    base, _ = load_base_model(cfg.model, cfg.quantization, cfg.training.precision, attn_implementation="sdpa")
    tuned = PeftModel.from_pretrained(base, seen.run_dir / "adapter")
    assert tuned.config._attn_implementation == "sdpa"
    plain = sample_all(tuned, load_tokenizer(cfg.model), callback.sample_prompts, cfg.training.sample_max_new_tokens)
    assert [s["output"] for s in last] == [p["output"] for p in plain]
    assert any(s["output"] for s in last)


@pytest.mark.slow
def test_a_varlen_run_writes_the_records_of_an_sdpa_run(seam, varlen_run):
    """The whole run again with the CPU's own plan (SDPA, the block-diagonal mask from position_ids): the same
    micro-batches, and losses, gradient norms and evaluation losses within float tolerance."""
    Switch.varlen = False
    try:
        sdpa = seam("sdpa")
    finally:
        Switch.varlen = True
    assert json.loads((sdpa.run_dir / "status.json").read_text())["plan"]["attention"] == "sdpa"
    assert not sdpa.trainer.varlen and not sdpa.kernel
    assert [b["input_ids"].tolist() for _, b, _, _ in sdpa.fed] == [b["input_ids"].tolist()
                                                                    for _, b, _, _ in varlen_run.fed]
    for kind, keys in (("train", ("loss", "grad_norm", "learning_rate")), ("eval", ("eval_loss",))):
        want, got = records(sdpa.run_dir, kind), records(varlen_run.run_dir, kind)
        assert [r["step"] for r in got] == [r["step"] for r in want] and want
        for w, g in zip(want, got):
            for key in keys:
                assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-6), (kind, g["step"], key)
