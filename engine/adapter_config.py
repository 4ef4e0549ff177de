"""The adapter a run saved, as peft will load it: only the kind lorapilot trains (LoRA on a causal LM, its targets).

A run directory may come from anyone, and peft does what its adapter_config.json says (peft 0.21's source):
`peft_type` picks the tuner (X-LoRA loads the adapters its `adapters` name, from the hub too; prompt tuning may
load a tokenizer), `task_type` the model class, `auto_mapping` names a class AutoPeftModel imports, `megatron_core`
a module the LoRA tuner imports, `init_lora_weights` other than true/false (pissa, olora, corda, eva, loftq)
rewrites the base weights while the adapter loads, `modules_to_save` and `trainable_token_indices` replace whole
modules or token embeddings, `layer_replication` copies layers, `rank_pattern`/`alpha_pattern` and `use_rslora`
rescale the adapter. And every tensor of adapter_model.safetensors that is no LoRA weight is handed on by peft to
the model's own load_state_dict: it overwrites the base weight of that name. A folder whose adapter says any of
this is refused by name, before anything loads; what the trainer wrote passes, whatever the peft version (a key
a newer peft adds is fine while it is off: null, false or empty).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.json_file import READ_ERRORS, read_json, read_table
from engine.rundir import finite, safetensors_names

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

# Keys lorapilot's LoraConfig sets, or peft fills in on its own, and what each may hold (checked below); every other
# key must be off. fan_in_fan_out: peft sets it for GPT-2's Conv1D layers; rank_pattern, alpha_pattern and
# target_parameters: peft's transformers-5 conversion of a mixture's fused experts (their scale kept, checked).
_SET_KEYS = frozenset({
    "peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "init_lora_weights",
    "base_model_name_or_path", "inference_mode", "peft_version", "fan_in_fan_out", "megatron_core",
    "qalora_group_size", "rank_pattern", "alpha_pattern", "target_parameters",
})
# The suffixes of the tensors a LoRA adapter saves (linear layers, embeddings); peft loads nothing else as LoRA.
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B")
PEFT_PREFIX = "base_model.model."


def lora_module(key: str) -> str | None:
    """The module a LoRA tensor of a saved adapter belongs to (base_model.model.model.layers.0.mlp.up_proj.lora_A.weight
    -> model.layers.0.mlp.up_proj); None for a key that is no LoRA tensor."""
    suffix = next((s for s in LORA_SUFFIXES if key.endswith(s)), None)
    if suffix is None or not key.startswith(PEFT_PREFIX):
        return None
    return key[len(PEFT_PREFIX):-len(suffix)]
# What a few of the keys that must be off would have peft do (any other: lorapilot trains no adapter with it).
_OFF_KEYS = {
    "auto_mapping": "names a class for peft to import",
    "modules_to_save": "would replace whole modules of the base with copies saved beside the adapter",
    "trainable_token_indices": "would replace token embeddings of the base",
    "layer_replication": "would copy layers of the base",
}


def _off(value: Any) -> bool:
    """null, false, empty, or a table of such (runtime_config: {"ephemeral_gpu_offload": false})."""
    if value is None or value is False or value in ({}, [], ""):
        return True
    return isinstance(value, dict) and all(_off(v) for v in value.values())


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _set_key_problem(key: str, value: Any, cfg: dict) -> str | None:
    """What is wrong with one of the keys lorapilot sets, or None."""
    if key == "peft_type":
        return None if value == "LORA" else "is not LORA, the only adapter lorapilot trains"
    if key == "task_type":
        return None if value == "CAUSAL_LM" else "is not CAUSAL_LM, the only model lorapilot trains"
    if key == "r":
        return None if isinstance(value, int) and finite(value) and value > 0 else "is no rank"
    if key == "lora_alpha":
        return None if finite(value) and value > 0 else "is no positive number"
    if key == "lora_dropout":
        return None if finite(value) and 0 <= value < 1 else "is no dropout (0 to 1)"
    if key == "target_modules":
        # [] where peft moved every target to a mixture's fused experts (target_parameters)
        fused = value == [] and _names(cfg.get("target_parameters"))
        return None if _names(value) or value == "all-linear" or fused else "is not a list of module names"
    if key == "bias":
        return None if value == "none" else "is not none: lorapilot trains no biases"
    if key == "init_lora_weights":
        return None if isinstance(value, bool) else "is not true or false: peft would change the base weights to it"
    if key in ("base_model_name_or_path", "peft_version"):
        return None if value is None or isinstance(value, str) else "is not text"
    if key in ("inference_mode", "fan_in_fan_out"):
        return None if isinstance(value, bool) else "is not true or false"
    if key == "megatron_core":
        return None if value in (None, "megatron.core") else "names a module peft would import"
    if key == "qalora_group_size":
        return None if isinstance(value, int) and not isinstance(value, bool) else "is not a whole number"
    if key == "target_parameters":
        return None if value is None or value == [] or _names(value) else "is not a list of parameter names"
    return _patterns_problem(key, value, cfg)


def _patterns_problem(key: str, value: Any, cfg: dict) -> str | None:
    """rank_pattern and alpha_pattern: empty, or (a mixture's fused experts) each pattern's alpha/r that of the
    whole adapter: another would scale those modules' adapter unlike the trained one."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and finite(v) and v > 0 for k, v in value.items()):
        return "is not a table of module patterns and numbers"
    if key == "rank_pattern" or not value:
        return None
    ranks = cfg["rank_pattern"] if isinstance(cfg.get("rank_pattern"), dict) else {}
    r, alpha = cfg.get("r"), cfg.get("lora_alpha")
    for pattern, a in value.items():
        rank = ranks.get(pattern)
        if not (finite(rank) and finite(r) and finite(alpha) and r and math.isclose(a / rank, alpha / r)):
            return f"scales {pattern} unlike the rest of the adapter (lora_alpha / r)"
    return None


def _weights_problem(ad: Path, cfg: dict) -> str | None:
    try:
        names = safetensors_names(ad / WEIGHTS_FILE)
    except (OSError, ValueError):
        return None   # missing or not whole: files_problem's to say
    targets = cfg.get("target_modules")
    for name in names:
        module = lora_module(name)
        if module is None:
            return (f"{ad / WEIGHTS_FILE}: holds {name}, which is no LoRA weight; peft would load it over the base "
                    "model's own")
        # A mixture's fused experts (target_parameters) are named by parameter, not module: not matched here.
        if isinstance(targets, list) and not cfg.get("target_parameters") and not any(
                module == t or module.endswith("." + t) for t in targets):
            return (f"{ad / CONFIG_FILE}: target_modules does not name {module.rsplit('.', 1)[-1]}, which the adapter "
                    f"has weights for ({name}); peft would leave them out")
    return None


def read_adapter_config(adapter: str | Path) -> dict | None:
    """An adapter's adapter_config.json, or None where it is missing, garbled (files_problem's to say) or holds no
    table (adapter_config_problem's). The one reader: the check, chat and export's facts, the vLLM check."""
    return read_table(Path(adapter) / CONFIG_FILE)


def adapter_config_problem(adapter: str | Path) -> str | None:
    """What makes an adapter's adapter_config.json (with its weights' names) other than the LoRA adapter a
    lorapilot trainer saves ("<file>: <key> <what>"), or None. Files missing or garbled are files_problem's."""
    from engine.rundir import safe_text

    ad = Path(adapter)
    path = ad / CONFIG_FILE
    try:
        cfg = read_json(path)
    except READ_ERRORS:
        return None   # missing or garbled: files_problem's to say
    if not isinstance(cfg, dict):
        return f"{path}: not a table of settings"
    for key in ("peft_type", "task_type"):
        if key not in cfg:
            return f"{path}: {key} is missing"
    for key, value in cfg.items():
        problem = _set_key_problem(key, value, cfg) if key in _SET_KEYS else (
            None if _off(value) else _OFF_KEYS.get(key, "is set, and lorapilot trains no adapter with it"))
        if problem:
            return safe_text(f"{path}: {key} {json.dumps(value)[:80]} {problem}", one_line=True)
    problem = _weights_problem(ad, cfg)
    return safe_text(problem, one_line=True) if problem else None
