"""The trainer's own hooks (engine.train.trainer.PlannedTrainer), each on its own: the demo model on the CPU, a few
hand-made examples, one step at most. The whole trainer runs in tests/test_engine_e2e.py."""

from __future__ import annotations

import pytest


def _examples(n: int):
    from engine.data.types import TokenizedExample

    out = []
    for k in range(n):
        ids = [5 + (3 * k + j) % 60 for j in range(10 + k)]  # lengths 10, 11, ...: micro-batches differ in size
        out.append(TokenizedExample(input_ids=ids, labels=ids, source=f"hand:{k}", full_length=len(ids),
                                    trained_tokens=len(ids) - 1, trained_tokens_full=len(ids) - 1))
    return out


@pytest.fixture(scope="module")
def model(demo_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(demo_model_dir))


def _trainer(model, tmp_path, *, pack: bool = True, **hooks):
    from transformers import TrainingArguments

    from engine.data.packing import Collator, PlannedMicroBatches, plan_steps
    from engine.train.trainer import PlannedTrainer

    examples = _examples(8)
    plan = plan_steps([len(e) for e in examples], examples_per_step=4, num_epochs=2, seed=1,
                      token_budget=32 if pack else None, micro_batch_size=2)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1, max_steps=1, use_cpu=True,
                             report_to="none", disable_tqdm=True, remove_unused_columns=False)
    trainer = PlannedTrainer(model=model, args=args, train_dataset=PlannedMicroBatches(examples, plan),
                             collator=Collator(pad_id=0, pack=pack), **hooks)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which these tests skip
    return trainer, plan


def test_the_sampler_walks_the_plans_micro_batches_in_order_and_switches_epochs(model, tmp_path):
    trainer, plan = _trainer(model, tmp_path)
    sampler = trainer._get_train_sampler()
    assert list(sampler) == list(range(len(plan.flat(0))))
    # The loader's first batch is the plan's first micro-batch (transformers' own sampler would shuffle them).
    first = next(iter(trainer.get_train_dataloader()))
    assert first["input_ids"][0].tolist() == [t for e in trainer.planned[0] for t in e.input_ids]
    sampler.set_epoch(1)
    assert [len(mb) for mb in (trainer.planned[k] for k in range(len(sampler)))] == [len(mb) for mb in plan.flat(1)]
    assert [e.source for e in trainer.planned[0]] == [f"hand:{i}" for i in plan.flat(1)[0]]


def test_a_step_counts_its_micro_batch_once_and_a_compile_failure_trains_it_again_eagerly(model, tmp_path):
    import torch

    from engine.train.compiled_layers import CompileFallback

    class OffloadThatFailsToCompileOnce:
        """The activation-offload context each step runs in; its first entry fails as the compiler would."""
        entered = 0

        def __enter__(self):
            self.entered += 1
            if self.entered == 1:
                raise torch._dynamo.exc.TorchDynamoException("injected compile failure")

        def __exit__(self, *exc):
            return False

    events: list[str] = []
    offload = OffloadThatFailsToCompileOnce()
    fallback = CompileFallback(model, lambda line: None, on_fallback=events.append)
    trainer, _ = _trainer(model, tmp_path, offload=offload, fallback=fallback)
    micro_batch = trainer.planned[0]
    batch = trainer.collator([micro_batch])  # the loader collates ahead: queued, not counted yet
    assert trainer.collator.tokens_seen == 0
    loss = trainer.training_step(model, batch)
    assert torch.isfinite(loss)
    assert offload.entered == 2  # the failed attempt, then the eager retry
    assert trainer.collator.tokens_seen == sum(len(e.input_ids) for e in micro_batch)  # once, though run twice
    assert fallback.failed is not None and len(events) == 1 and "injected compile failure" in events[0]
    assert any(p.grad is not None for p in model.parameters())  # the retry really trained


def test_a_step_without_levers_runs_once(model, tmp_path):
    import torch

    trainer, _ = _trainer(model, tmp_path, pack=False)
    batch = trainer.collator([trainer.planned[0]])
    loss = trainer.training_step(model, batch)
    assert torch.isfinite(loss)
    assert trainer.collator.tokens_seen == sum(len(e.input_ids) for e in trainer.planned[0])
    trainer.collator.consume()  # nothing queued any more: the count stays
    assert trainer.collator.tokens_seen == sum(len(e.input_ids) for e in trainer.planned[0])


def test_evaluation_asks_for_the_fused_loss_only_when_the_plan_fused_it(model, tmp_path):
    fused, _ = _trainer(model, tmp_path, fused_loss=True)
    plain, _ = _trainer(model, tmp_path)
    batch = fused.collator([fused.planned[0]])
    model.eval()
    assert fused.loss_inputs(model, batch)["skip_logits"] is True
    assert "skip_logits" not in plain.loss_inputs(model, batch)
    model.train()
    assert "skip_logits" not in fused.loss_inputs(model, batch)  # training: Liger's patched forward decides


def test_a_packed_row_gets_its_block_mask_from_its_example_boundaries(model, tmp_path):
    from torch.nn.attention.flex_attention import BlockMask

    from engine.train.block_mask import document_ids

    own, _ = _trainer(model, tmp_path, own_block_mask=True)
    packed = own.collator([own.planned[0]])
    inputs = own.loss_inputs(model, packed)
    assert isinstance(inputs["attention_mask"], BlockMask)
    assert inputs["attention_mask"].seq_lengths == (packed["input_ids"].shape[1],) * 2
    assert int(document_ids(packed["position_ids"][0])[-1]) + 1 == len(own.planned[0])  # one document an example
    padded_trainer, _ = _trainer(model, tmp_path, pack=False, own_block_mask=True)
    padded = padded_trainer.collator([padded_trainer.planned[0]])
    assert padded_trainer.loss_inputs(model, padded)["attention_mask"] is padded["attention_mask"]  # left alone
    off, _ = _trainer(model, tmp_path)
    assert "attention_mask" not in off.loss_inputs(model, packed)


def test_sharded_the_first_training_loss_says_once_how_much_of_the_model_this_rank_holds(model, tmp_path):
    import torch

    lines: list[str] = []
    trainer, _ = _trainer(model, tmp_path, sharded=True, log_line=lines.append)
    batch = trainer.collator([trainer.planned[0]])
    model.eval()
    with torch.no_grad():
        trainer.compute_loss(model, batch)  # evaluation says nothing
    assert lines == []
    model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        trainer.compute_loss(model, batch)
    assert torch.isfinite(loss)
    whole = sum(p.numel() for p in model.parameters())
    assert lines == [f"fsdp: rank 0 holds {whole:,} of the model's {whole:,} parameter elements"]  # not sharded here
    unsharded, _ = _trainer(model, tmp_path, log_line=lines.append)
    with torch.no_grad():
        unsharded.compute_loss(model, batch)
    assert len(lines) == 1


@pytest.mark.parametrize("packing", [True, False])
def test_max_steps_past_num_epochs_trains_a_new_shuffle_each_epoch_and_the_plan_counts_it(demo_model_dir, tmp_path,
                                                                                         packing):
    """num_epochs 2 with max_steps three epochs' worth: the trainer repeated the last planned epoch's order while the
    estimate counted epoch 0 again. Now every epoch the run walks is its own shuffle from the seed, the plan holds
    them all, and the estimate's steps and tokens are the micro-batches the real Trainer trained."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from engine.config import config_from_dict
    from engine.data.packing import Collator, PlannedMicroBatches
    from engine.plan import Machine, _steps_run, microbatch_tokens, plan_run
    from engine.train.trainer import PlannedTrainer

    class Recording(Collator):
        """The real collator, noting each training micro-batch it collates (the loader's order is the trained one)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.trained: list[list[str]] = []

        def __call__(self, items):
            if items and isinstance(items[0], list):
                self.trained.append([e.source for it in items for e in it])
            return super().__call__(items)

    examples = _examples(8)
    lengths = [len(e) for e in examples]
    cfg = config_from_dict({"model": str(demo_model_dir), "dataset": {"path": "x.jsonl"}, "training": {
        "max_seq_length": 64, "micro_batch_size": 2, "gradient_accumulation_steps": 2, "num_epochs": 2,
        "max_steps": 6, "packing": packing, "seed": 3}})  # 4 examples a step, 2 steps an epoch: 3 epochs
    plan = plan_run(cfg, Machine.for_gpu(None), lengths=lengths)
    assert plan.steps_per_epoch == 2 and plan.max_steps == 6 and plan.step_plan is not None
    assert len(plan.step_plan.epochs) == 3
    orders = [[i for step in epoch for mb in step for i in mb] for epoch in plan.step_plan.epochs]
    assert len({tuple(o) for o in orders}) == 3  # each epoch its own shuffle, the third not a repeat

    model = AutoModelForCausalLM.from_pretrained(str(demo_model_dir))
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1, max_steps=plan.max_steps,
                             gradient_accumulation_steps=plan.micro_batches_per_step, use_cpu=True,
                             report_to="none", disable_tqdm=True, remove_unused_columns=False, save_strategy="no",
                             seed=cfg.training.seed)
    collator = Recording(pad_id=0, pack=packing)
    PlannedTrainer(model=model, args=args, train_dataset=PlannedMicroBatches(examples, plan.step_plan),
                   collator=collator).train()
    planned = [mb for step in _steps_run(plan.step_plan, plan.max_steps) for mb in step]
    assert collator.trained == [[f"hand:{i}" for i in mb] for mb in planned]
    assert plan.micro_batches == len(collator.trained)
    assert plan.train_tokens == sum(microbatch_tokens(mb, lengths, packing) for mb in planned)


def test_a_checkpoint_is_saved_only_after_the_run_directory_is_found_where_it_was(model, tmp_path):
    """The step's own place check comes before that step's evaluation: a run directory moved during the evaluation
    was made again by the checkpoint's save. The trainer checks again right before it saves."""
    from engine.rundir import RunDirMoved, RunPlace

    run = tmp_path / "run"
    run.mkdir()
    place = RunPlace(run)
    trainer, _ = _trainer(model, run / "checkpoints", before_save=place.check)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)   # what a save writes beside the weights
    trainer._save_checkpoint(trainer.model, None)          # in place: saved
    assert (run / "checkpoints" / "checkpoint-0").is_dir()
    run.rename(tmp_path / "moved")
    with pytest.raises(RunDirMoved):
        trainer._save_checkpoint(trainer.model, None)
    assert not run.exists()                                  # not made again where the run was
