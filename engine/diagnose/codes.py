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
)

# Findings that may stop a run (training.stop_on); the others are advice only.
STOPPABLE = ("nan_loss", "loss_explosion", "loss_flat", "overfitting", "loss_near_zero", "grad_norm_spike",
             "gpu_memory_high")

SEVERITIES = ("info", "warning", "error")
