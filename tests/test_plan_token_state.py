"""Packed examples on a model whose layers carry state across tokens outside attention (Qwen3.5's gated delta net).

Packing keeps a row's examples apart in softmax attention only (positions restart, each example's own causal
triangle). Qwen3.5's linear-attention layers run a causal convolution and a chunked recurrence over the whole row:
transformers' PyTorch path passes the examples' boundaries to torch_chunk_gated_delta_rule, which ignores them, so an
example packed after another trained on its neighbour's state, with no error. The plan trains such a model on padded
micro-batches (engine.plan.packing_for); here the plan's own micro-batches, collated as the trainer collates them,
give each example of a tiny random-weight Qwen3.5 the loss it has alone.
"""

from __future__ import annotations

import pytest

from engine.config import config_from_dict
from engine.data.types import TokenizedExample
from engine.estimate.params import token_state_layers
from tests.test_estimate_linear_attention import TINY

LENGTHS = [40, 24, 56, 32]     # four examples: one optimizer step of micro-batches of two


def _cfg(model: str, packing: bool | None = None):
    training = {"micro_batch_size": 2, "gradient_accumulation_steps": 2, "max_seq_length": 64, "max_steps": 1}
    if packing is not None:
        training["packing"] = packing
    return config_from_dict({"model": model, "dataset": {"path": "x.jsonl"}, "quantization": "none",
                             "training": training})


def _examples() -> list[TokenizedExample]:
    import random

    rng = random.Random(0)
    out = []
    for k, n in enumerate(LENGTHS):
        ids = [rng.randrange(1, TINY["vocab_size"]) for _ in range(n)]
        labels = [-100] * (n // 2) + ids[n // 2:]     # the second half trained, as an answer after its prompt
        out.append(TokenizedExample(input_ids=ids, labels=labels, source=f"x.jsonl:{k + 1}", full_length=n,
                                    trained_tokens=n - n // 2, trained_tokens_full=n - n // 2))
    return out


@pytest.fixture(scope="module")
def qwen3_5(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("qwen3_5")
    model = Qwen3_5ForCausalLM(Qwen3_5TextConfig(**TINY))
    model.save_pretrained(out)
    return str(out), model.eval()


def _cpu_plan(cfg, examples):
    from engine.estimate import read_model_config
    from engine.model import Hardware
    from engine.plan import Machine, plan_run

    machine = Machine.for_hardware(Hardware("cpu", "cpu", False, None, 0))
    return plan_run(cfg, machine, lengths=[len(e.input_ids) for e in examples], info=read_model_config(cfg.model))


def _loss(logits, labels) -> float:
    """Mean cross-entropy of one example's trained tokens (labels not shifted: the model shifts them)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100).item()


def _losses_as_trained(model, plan, examples) -> dict[int, float]:
    """Each example's loss in the micro-batch the plan puts it in, collated as the trainer collates it."""
    import torch

    from engine.data.packing import Collator, PlannedMicroBatches

    collator = Collator(pad_id=0, pack=plan.packing)
    out = {}
    batches = PlannedMicroBatches(examples, plan.step_plan)
    for k in range(len(batches)):
        mb = batches[k]
        batch = collator([mb])
        with torch.no_grad():
            logits = model(**{key: v for key, v in batch.items() if key != "labels"}).logits
        start = 0
        for row, e in enumerate(mb):
            n = len(e.input_ids)
            if plan.packing:
                piece, start = logits[0, start:start + n], start + n
            else:
                piece = logits[row, :n]
            out[examples.index(e)] = _loss(piece, torch.tensor(e.labels))
    return out


def _losses_alone(model, examples) -> dict[int, float]:
    import torch

    with torch.no_grad():
        return {k: _loss(model(input_ids=torch.tensor([e.input_ids])).logits[0], torch.tensor(e.labels))
                for k, e in enumerate(examples)}


@pytest.mark.parametrize("packing", [None, True], ids=["default", "packing-true"])
def test_each_example_of_the_plans_micro_batches_has_its_loss_alone(qwen3_5, packing):
    """The default (packing on) and an explicit training.packing: true alike: packed rows on this model train each
    example on its neighbour's state (0.01-0.3 apart in loss before the plan padded them)."""
    model_dir, model = qwen3_5
    examples = _examples()
    plan = _cpu_plan(_cfg(model_dir, packing), examples)
    trained, alone = _losses_as_trained(model, plan, examples), _losses_alone(model, examples)
    assert trained.keys() == alone.keys() == set(range(len(examples)))
    assert [trained[k] for k in sorted(alone)] == pytest.approx([alone[k] for k in sorted(alone)], abs=1e-5)
    assert not plan.packing and plan.token_budget is None and plan.micro_batches_per_step == 2
    assert plan.packing_off == "linear_attention layers carry state across a packed row's examples"
    assert sum("padded, not packed" in line for line in plan.lines) == 1


def test_packed_rows_would_leak_on_this_model(qwen3_5):
    """Why the plan pads: the same micro-batches packed (as the plan packed them for every model) give an example
    after another a loss it does not have alone. Should transformers' path come to honour the boundaries, this fails
    and packing can come back for these models."""
    from dataclasses import replace

    model_dir, model = qwen3_5
    examples = _examples()
    plan = _cpu_plan(_cfg(model_dir), examples)
    packed = replace(plan, packing=True)
    trained, alone = _losses_as_trained(model, packed, examples), _losses_alone(model, examples)
    firsts = {mb[0] for mb in packed.step_plan.flat(0)}
    assert all(trained[k] == pytest.approx(alone[k], abs=1e-5) for k in firsts)   # nothing before it in its row
    assert any(trained[k] != pytest.approx(alone[k], abs=1e-3) for k in alone.keys() - firsts)


def test_the_estimate_reads_the_trainers_plan(qwen3_5):
    """`lorapilot estimate` and the wizard plan the padded micro-batches the trainer runs, and say why."""
    from engine.data import PreparedData
    from engine.estimate import read_model_config
    from engine.estimate.command import plan_words
    from engine.estimate.estimator import compute
    from engine.model import Hardware
    from engine.train.run import _plan

    model_dir, _ = qwen3_5
    cfg, examples = _cfg(model_dir), _examples()
    trainer = _plan(cfg, PreparedData(train=examples, validation=[]), Hardware("cpu", "cpu", False, None, 0), 1)
    est = compute(cfg, read_model_config(model_dir), None, lengths=[len(e.input_ids) for e in examples])
    assert est.plan is not None and not est.plan.packing
    assert est.plan.to_dict() == trainer.to_dict() and est.plan.lines == trainer.lines
    assert "padded (not packed: linear_attention layers carry state" in plan_words(est.plan)


@pytest.mark.parametrize(("config", "kinds"), [
    ({"model_type": "qwen3_5_text", "layer_types": ["linear_attention", "full_attention"]}, "linear_attention"),
    ({"model_type": "qwen3_5", "text_config": {"model_type": "qwen3_5_text"}}, "linear_attention"),
    ({"model_type": "qwen3_next"}, "linear_attention"),
    ({"model_type": "lfm2_moe"}, "conv"),
    ({"model_type": "lfm2", "layer_types": ["conv", "full_attention", "conv"]}, "conv"),
    ({"model_type": "jamba"}, "mamba"),
    ({"model_type": "jamba", "layer_types": ["mamba", "attention", "mamba"]}, "mamba"),
    ({"model_type": "granitemoehybrid", "layer_types": ["mamba", "attention"]}, "mamba"),
    ({"model_type": "granitemoehybrid", "layer_types": ["attention", "attention"]}, ""),
    ({"model_type": "gemma2", "layer_types": ["sliding_attention", "full_attention"]}, ""),
    ({"model_type": "llama"}, ""),
    ({"model_type": "qwen2"}, ""),
])
def test_layer_kinds_that_carry_state_across_tokens(config, kinds):
    assert token_state_layers(config) == kinds


def test_a_model_whose_shapes_the_estimate_cannot_read_is_still_padded(tmp_path):
    """Mamba's config.json has no attention heads: no estimate, but the trainer's plan still pads its rows."""
    import json

    from engine.data import PreparedData
    from engine.model import Hardware
    from engine.train.run import _plan

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 64,
                                                      "num_hidden_layers": 2, "vocab_size": 512}))
    examples = _examples()
    plan = _plan(_cfg(str(tmp_path)), PreparedData(train=examples, validation=[]),
                 Hardware("cpu", "cpu", False, None, 0), 1)
    assert not plan.packing and plan.packing_off == "mamba layers carry state across a packed row's examples"


def test_softmax_decoders_still_pack():
    """Llama and the other softmax-attention families: the plan packs as before, with no line about it."""
    from engine.estimate import read_model_config
    from engine.plan import Machine, plan_run

    cfg = _cfg("meta-llama/Llama-2-7b-hf")
    plan = plan_run(cfg, Machine.for_gpu(None), lengths=LENGTHS, info=read_model_config(cfg.model))
    assert plan.packing and plan.packing_off is None and plan.token_budget
    assert not any("not packed" in line for line in plan.lines)


def test_the_trainer_collates_as_the_plan_says(tmp_path):
    """The trainer's collator and attention follow the plan's packing, not training.packing: a plan that pads (as for
    Qwen3.5) gets padded rows, with packing left on in the config."""
    import dataclasses

    import yaml

    from engine.train import run
    from engine.train.signals import StopFlag
    from tests.conftest import DEMO_CONFIG

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"].update(max_steps=1, packing=True, sample_max_new_tokens=0)
    cfg = config_from_dict(raw)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    inputs = run.load(cfg, run_dir, resume=False, data=None, tokenizer=None)
    planned = run.plan_here(cfg, inputs, run_dir)
    assert planned.packing     # the demo is a Llama: packed
    padded = dataclasses.replace(planned, packing=False, token_budget=None)
    built = run.build_model(cfg, inputs, padded)
    assembled = run.build_trainer(cfg, run_dir, inputs, padded, built, resume=False, stop=StopFlag(run_dir),
                                  callbacks=())
    assert assembled.trainer.data_collator.pack is False
