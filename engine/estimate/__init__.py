"""The VRAM, steps, time and learning-rate estimate, from config.json alone.

Pure Python: nothing here imports torch (not even transitively), so the
wizard can recompute on every keystroke. Public API:

    read_model_config(model) -> ModelInfo
    estimate(cfg, model_info, gpu, *, n_examples, num_gpus=1, lengths=None, val_lengths=None, machine=None,
             tokens_per_microbatch=None, fused_loss=None, price_per_hour=None) -> Estimate   (of engine.plan's plan)
    auto_fit(cfg, model_info, gpu, ...) -> FitResult
    max_tokens_per_microbatch(cfg, model_info, gpu, *, fused_loss=False) -> int
    list_gpus() / get_gpu(name) / detect_gpu() -> GpuSpec
    list_model_presets() / list_recipes() / load_recipe(name)
"""

from engine.estimate.dataset_size import count_examples, training_examples
from engine.estimate.estimator import FIT_FRACTION, Estimate, estimate, with_changes
from engine.estimate.fit import Change, FitResult, auto_fit, max_tokens_per_microbatch
from engine.estimate.gpus import GpuSpec, detect_gpu, get_gpu, list_gpus, match_nvml_name
from engine.estimate.memory import Component
from engine.estimate.model_config import ModelInfo, model_info_from_config, read_model_config
from engine.estimate.presets import list_model_presets, list_recipes, load_recipe

__all__ = [
    "FIT_FRACTION", "Change", "Component", "Estimate", "FitResult", "GpuSpec", "ModelInfo", "auto_fit",
    "count_examples", "detect_gpu", "estimate", "get_gpu", "list_gpus", "list_model_presets", "list_recipes",
    "load_recipe", "match_nvml_name", "max_tokens_per_microbatch", "model_info_from_config",
    "read_model_config", "training_examples", "with_changes",
]
