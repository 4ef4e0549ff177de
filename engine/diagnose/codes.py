"""Finding codes shared by the trainer, the config validator and the UI."""

LIVE_CODES = (
    "nan_loss",
    "loss_explosion",
    "loss_flat",
    "overfitting",
    "loss_near_zero",
    "grad_norm_spike",
    "gpu_memory_high",
    "copies_training_data",
    "learning_curve",
    "no_progress",
)

# Findings that say where the run stands rather than that something happened: re-said at every evaluation,
# so the one shown (monitor, diagnose, model card) is the current one, at the latest evaluation's step, and is
# never counted as a repeat (the verdict at step 40 is not "the step-20 verdict, 3 times").
STATE_CODES = ("learning_curve",)

# Findings that may stop a run (training.stop_on); the others are advice only.
STOPPABLE = ("nan_loss", "loss_explosion", "loss_flat", "overfitting", "loss_near_zero", "grad_norm_spike",
             "gpu_memory_high")

SEVERITIES = ("info", "warning", "error")

# Pre-flight (data doctor) codes: checked before any model is loaded.
PREFLIGHT_CODES = (
    "no_examples",
    "no_target_tokens",
    "few_target_tokens",
    "responses_truncated",
    "prompt_too_long",
    "too_few_examples",
    "duplicate_examples",
    "slop_phrases",
    "system_prompt_left_out",
    "precision_unsupported",
    "memory_estimate_high",
    "gradient_checkpointing_off",
    "no_warmup",
    "no_grad_clipping",
    "eval_too_rare",
    "loss_chart_sparse",
    "no_checkpoint",
    "no_save_limit",
    "learning_rate_unusual",
    "lora_alpha_unusual",
    "many_epochs",
    "validation_too_small",
    "expert_dropout",
    "lora_target_missing",
)

# Short titles for lists and panels; the finding's message carries the detail.
TITLES = {
    "nan_loss": "Loss is NaN",
    "loss_explosion": "Loss exploding",
    "loss_flat": "Loss not moving",
    "overfitting": "Overfitting",
    "loss_near_zero": "Loss near zero",
    "grad_norm_spike": "Gradient spike",
    "gpu_memory_high": "GPU memory high",
    "copies_training_data": "Copies training data",
    "learning_curve": "Learning curve",
    "no_progress": "No progress",
    "no_examples": "No examples",
    "no_target_tokens": "Nothing to train on",
    "few_target_tokens": "Examples with few trained tokens",
    "responses_truncated": "Responses cut off",
    "prompt_too_long": "Prompts longer than max_seq_length",
    "too_few_examples": "Few examples",
    "duplicate_examples": "Duplicate examples",
    "slop_phrases": "Synthetic-data phrases",
    "system_prompt_left_out": "System prompt not trained",
    "precision_unsupported": "Precision not supported",
    "memory_estimate_high": "Estimated memory too high",
    "gradient_checkpointing_off": "Gradient checkpointing off",
    "expert_dropout": "LoRA dropout on a mixture's experts",
    "lora_target_missing": "LoRA target not in the model",
    "no_warmup": "No warmup",
    "no_grad_clipping": "Gradient clipping too loose",
    "eval_too_rare": "Eval too rare",
    "loss_chart_sparse": "Few points on the loss chart",
    "no_checkpoint": "No checkpoint before the end",
    "no_save_limit": "Many checkpoints kept",
    "learning_rate_unusual": "Learning rate outside its range",
    "lora_alpha_unusual": "LoRA alpha far from 2 x r",
    "many_epochs": "Many passes over the data",
    "validation_too_small": "Validation set too small",
}
