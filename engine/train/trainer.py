"""The Trainer lorapilot trains with: transformers' Trainer, fed the plan's micro-batches in the plan's order.

It imports transformers at import time: only the trainer process imports it (engine.train.run, inside its build
phase), never the app or the estimate (tests/test_import_hygiene.py).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

from transformers import Trainer

from engine.data.packing import Collator, PlannedMicroBatches, PlanSampler

if TYPE_CHECKING:
    import torch
    from torch import nn

    from engine.train.compiled_layers import CompileFallback


class PlannedTrainer(Trainer):
    """transformers' Trainer with five changes, each a hook below:

    - the sampler walks the plan's micro-batches in order (one dataset item is one planned micro-batch);
    - each training step tells the collator its micro-batch is trained now (tokens/s counts trained tokens, not
      the ones the loader prefetched), runs inside the activation-offload context, and through the compiled
      layers' fallback when the decoder layers are compiled;
    - the loss's inputs: evaluation through Liger's fused loss too (`fused_loss`), and a packed row's block mask
      built from its example boundaries (`own_block_mask`), or the boundaries themselves for variable-length
      flash attention (`varlen`);
    - sharded (FSDP), the first training step logs how much of the model this rank holds;
    - evaluation runs compiled decoder layers eagerly;
    - a checkpoint is saved only after `before_save` (the run directory still where it was: see _save_checkpoint).
    """

    def __init__(self, *, train_dataset: PlannedMicroBatches, collator: Collator,
                 fallback: CompileFallback | None = None,
                 offload: contextlib.AbstractContextManager | None = None,
                 sharded: bool = False, fused_loss: bool = False, own_block_mask: bool = False,
                 varlen: bool = False, log_line: Callable[[str], None] = print,
                 before_save: Callable[[], None] | None = None, **kwargs: Any) -> None:
        # Set before Trainer.__init__, which may already call into the hooks' helpers.
        self.planned = train_dataset
        self.collator = collator
        self.fallback = fallback
        self.offload = offload if offload is not None else contextlib.nullcontext()
        self.sharded = sharded
        self.fused_loss = fused_loss
        self.own_block_mask = own_block_mask
        self.varlen = varlen
        self.log_line = log_line  # not `log`: that is Trainer's method for metrics
        self.shard_reported = False
        self.before_save = before_save
        super().__init__(train_dataset=train_dataset, data_collator=collator, **kwargs)

    # A torch Sampler by its protocol (__iter__, __len__), not by class: engine.data stays free of torch imports.
    def _get_train_sampler(self, train_dataset: Any = None) -> PlanSampler:  # type: ignore[override]
        """The plan's order: the plan already shuffled and grouped the examples into micro-batches."""
        return PlanSampler(self.planned)

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        """One micro-batch: counted as trained once (retried or not), then trained, through the compile fallback
        when the layers are compiled (a compile failure retrains this micro-batch eagerly)."""
        self.collator.consume()  # the loader prefetches ahead: this is the micro-batch trained now

        def step() -> torch.Tensor:
            with self.offload:
                return super(PlannedTrainer, self).training_step(model, inputs, num_items_in_batch)

        if self.fallback is None:
            return step()
        return self.fallback.run(step)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The check before a save, then transformers' save. The step's own check (the callback's on_step_end) comes
        before the evaluation at that step, which may take minutes: a run directory moved meanwhile was made again
        by the save (transformers creates the checkpoint's folder by path), and the run went on split in two."""
        if self.before_save is not None:
            self.before_save()
        super()._save_checkpoint(model, trial)

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluation with the decoder layers eager, when the plan compiled them. Under no_grad dynamo would compile a
        second graph family for the layers (its minute again, and their cache entries), and a compile failure there
        would fail the run: CompileFallback covers training micro-batches only. Evaluation is a forward pass every
        eval_steps, so eager costs little; the layers are compiled again for the next training step."""
        from engine.train.compiled_layers import eager_decoding

        with eager_decoding(self.model):
            return super().evaluation_loop(*args, **kwargs)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        if self.sharded and not self.shard_reported and self.state.global_step == 0 and model.training:
            from engine.train.distributed import shard_report

            self.shard_reported = True
            held, whole = shard_report(model)
            self.log_line(f"fsdp: rank 0 holds {held:,} of the model's {whole:,} parameter elements")
        return super().compute_loss(model, self.loss_inputs(model, inputs), return_outputs, num_items_in_batch)

    def loss_inputs(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        """The model's inputs for the loss: the batch, plus what the speed levers add."""
        if not model.training and self.fused_loss:
            # Evaluation through Liger's fused loss too, as transformers does with use_liger_kernel: unfused,
            # its fp32 logits would make evaluation the run's peak (152k-vocabulary models).
            inputs = dict(inputs, skip_logits=True)
        return packed_attention_inputs(inputs, own_block_mask=self.own_block_mask, varlen=self.varlen)


def packed_attention(model: Any, packing: bool, longest: int | None = None) -> dict[str, bool]:
    """What a packed row's inputs need for the model's attention (PlannedTrainer's own_block_mask and varlen): flex
    attention's block mask built from the examples' boundaries (LEVERS.own_block_mask), or the boundaries themselves
    for variable-length flash attention. The own block mask is one causal mask for every layer: where the model has
    sliding-window layers whose window an example may outgrow (longest: its tokens at most, max_seq_length; None:
    any), transformers builds the masks, each layer type its own (the own mask let those layers see past their
    window, silently)."""
    from engine.train.speed import LEVERS
    from engine.train.varlen_attention import ATTENTION

    attention = model.config._attn_implementation
    window = sliding_window(model.config)
    windowed = window is not None and (longest is None or window < longest)
    return {"own_block_mask": LEVERS.own_block_mask and packing and attention == "flex_attention" and not windowed,
            "varlen": packing and attention == ATTENTION}


def sliding_window(config: Any) -> int | None:
    """A loaded model's sliding window, by the estimate's rule (engine.estimate.params.sliding_window)."""
    from engine.estimate.params import sliding_window as window_of

    return window_of({key: getattr(config, key, None) for key in ("sliding_window", "layer_types")})


def packed_attention_inputs(inputs: dict[str, Any], *, own_block_mask: bool, varlen: bool) -> dict[str, Any]:
    """A packed row's model inputs with what its attention reads (packed_attention's choice); other rows as they are."""
    if own_block_mask and "position_ids" in inputs and "attention_mask" not in inputs:
        from engine.train.block_mask import packed_block_mask

        inputs = dict(inputs, attention_mask=packed_block_mask(inputs["position_ids"]))
    if varlen and "position_ids" in inputs and "attention_mask" not in inputs:
        from engine.train.varlen_attention import varlen_inputs

        inputs = varlen_inputs(inputs)
    return inputs
