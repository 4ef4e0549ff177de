"""The learning-rate hint: engine.learning_rate's verdict, and the guide's batch-scaling rule with its inputs."""

from __future__ import annotations

import math

from engine.learning_rate import lr_verdict

# When a model's pretraining recipe is not in its preset, the guide's Llama/Mistral figures.
ASSUMED_PRETRAIN_LR = 3e-4
ASSUMED_PRETRAIN_BATCH_TOKENS = 4_000_000


def lr_hint(learning_rate: float, model: str, supervised_tokens_per_step: int | None, pretraining: dict) -> dict:
    """What the configured learning rate looks like: the verdict every surface shows, and the scaling rule.

    The rule base_lr * sqrt(supervised_tokens_per_step / pretrained_batch_tokens)
    comes from full fine-tuning; adapters usually want far more, so the verdict
    is the primary advice and the rule is shown as a reference.
    """
    verdict = lr_verdict(learning_rate, model)
    base_lr = pretraining.get("learning_rate")
    batch = pretraining.get("batch_tokens")
    published = base_lr is not None and batch is not None
    base_lr = base_lr if base_lr is not None else ASSUMED_PRETRAIN_LR
    batch = batch if batch is not None else ASSUMED_PRETRAIN_BATCH_TOKENS
    scaled = None
    if supervised_tokens_per_step:
        scaled = base_lr * math.sqrt(supervised_tokens_per_step / batch)
    text = verdict.message
    if scaled is not None:
        # In words, not the formula: what the number is, where it comes from, and why it is not the advice.
        source = "its published pretraining" if published else "a typical pretraining (Llama, Mistral)"
        text += (f"; for comparison, full fine-tuning (every weight) would start near {scaled:.1e}: {source} "
                 f"rate {base_lr:.1e}, scaled down because a step here trains {supervised_tokens_per_step:,} "
                 f"tokens, not {batch:,}. LoRA trains a few small added weights and usually wants a higher "
                 "rate: a reference, not the advice")
    return {"learning_rate": learning_rate, "range": list(verdict.range), "default": verdict.typical,
            "level": verdict.level, "message": verdict.message, "scaled_lr": scaled, "base_lr": base_lr,
            "pretrained_batch_tokens": batch, "pretraining_published": published,
            "supervised_tokens_per_step": supervised_tokens_per_step,
            "formula": "base_lr * sqrt(supervised_tokens_per_step / pretrained_batch_tokens)", "text": text}
