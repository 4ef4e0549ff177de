"""An adapter trained on a multimodal checkpoint's text decoder, named as the checkpoint that serves it names its
modules.

lorapilot trains a DECODER_ALONE checkpoint (engine.estimate.multimodal: Qwen3.5, Llama 4, ...) as its text decoder
alone: transformers' causal-LM class, whose modules are `model.layers.N...`, and peft saves the adapter under those
names. The checkpoint served with the adapter (`vllm serve BASE --lora-modules ...`) is the whole multimodal model,
which names the same modules as its own architecture does: `model.language_model.layers.N...` (Qwen3.5),
`language_model.model.layers.N...` (Llama 4). vLLM finds an adapter's weights for a module by name (after its own
checkpoint-to-vLLM renaming, written for the checkpoint's names) and leaves a module it finds none for unadapted,
without a word; peft, given target_modules by suffix as it saves them for any real-sized model, adapts the
checkpoint's modules with zero weights and only warns of the missing ones. Either way the served model answered as
the base (measured on tiny Qwen3.5-MoE and dots3 checkpoints: logits identical to the base's).

So the vLLM export renames: each adapted module is found in the checkpoint's architecture, built on the meta
device from its config.json (no weight is read), where the trained decoder sits in it (the one module of the
decoder's class), and checked there to be the same kind of layer with the adapter's shapes. target_modules becomes
that exact list, so peft adapts those modules and no tower's namesake. A module not found so refuses the export.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UserError

PREFIX = "base_model.model."   # how peft names an adapter's weights: PREFIX + module + ".lora_A.weight", ...


def base_config(base: str) -> dict | None:
    """The base model's config.json (a local folder's, else the hub cache's); None where it cannot be read here."""
    from engine.errors import ModelError
    from engine.estimate.model_config import hub_config, read_config_json

    try:
        local = Path(base) / "config.json"
        return read_config_json(local) if local.is_file() else hub_config(base)
    except ModelError:
        return None


def _module(key: str, where: Path) -> tuple[str, str]:
    """(module, rest) of an adapter weight's name: ('model.layers.0.self_attn.q_proj', 'lora_A.weight')."""
    at = key.find(".lora_")
    if not key.startswith(PREFIX) or at < 0:
        raise UserError(f"{where}: holds {key!r}, not a LoRA weight as peft names them: cannot be renamed for the "
                        "checkpoint it is served on")
    return key[len(PREFIX):at], key[at + 1:]


def served_names(base: str, modules: list[str]) -> dict[str, str]:
    """{module as trained: the same module as the checkpoint `base` names it}, for a DECODER_ALONE checkpoint's
    trained decoder; UserError naming a module the checkpoint's architecture has no counterpart for."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from engine.model import cache_only_for

    config = AutoConfig.from_pretrained(base, local_files_only=cache_only_for(base))
    arch = next(iter(config.architectures or []), None)
    cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):   # shapes only: no memory, no weight read
        full = cls(config) if cls is not None else AutoModelForImageTextToText.from_config(config)
        text = AutoModelForCausalLM.from_config(config)
    arch = type(full).__name__
    inside = dict(full.named_modules())
    # where the trained decoder sits in the checkpoint's model: the one module of its class (Llama 4's causal LM
    # whole, Qwen3.5's decoder without its output head); a part of it found nowhere (lm_head) keeps its name
    placed: dict[str, str] = {}
    for part, module in [("", text), *text.named_children()]:
        at = [name for name, m in inside.items() if type(m) is type(module)]
        if len(at) == 1:
            placed[part] = at[0]
            if not part:
                break
    renamed, ours = {}, dict(text.named_modules())
    for name in modules:
        first, _, rest = name.partition(".")
        if "" in placed:
            new = f"{placed['']}.{name}"
        else:
            new = f"{placed[first]}.{rest}" if first in placed and rest else name
        mine, theirs = ours.get(name), inside.get(new)
        same = (mine is not None and theirs is not None and type(mine) is type(theirs)
                and getattr(mine, "weight", None) is not None and getattr(theirs, "weight", None) is not None
                and mine.weight.shape == theirs.weight.shape)
        if not same:
            raise UserError(f"the adapter adapts {name}, which {arch} (the checkpoint it would be served on: {base}) "
                            "has no counterpart of: the served model would run without that part of the adapter",
                            fix="serve the merged model instead (`lorapilot export RUN --merged DIR`)")
        renamed[name] = new
    return renamed


def rename_for_checkpoint(adapter: Path, base: str) -> str | None:
    """Renames the adapter in `adapter` (an export's copy: adapter_model.safetensors and adapter_config.json's
    target_modules) to the names of the checkpoint `base` it is served on, where that is a DECODER_ALONE multimodal
    checkpoint; returns what was done, in words, or None (a text model: its names are the trained ones)."""
    from engine.estimate.multimodal import decoder_alone

    config = base_config(base)
    if config is None or not decoder_alone(config):
        return None
    from safetensors.torch import load_file, save_file

    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    parts = {key: _module(key, weights) for key in tensors}
    renamed = served_names(base, sorted({module for module, _ in parts.values()}))
    save_file({f"{PREFIX}{renamed[module]}.{rest}": tensors[key] for key, (module, rest) in parts.items()},
              str(weights), metadata={"format": "pt"})
    from engine.adapter_config import CONFIG_FILE, read_adapter_config

    path = adapter / CONFIG_FILE
    cfg = read_adapter_config(adapter)
    assert cfg is not None, f"{path}: run_facts checked the adapter this is a copy of"
    cfg["target_modules"] = sorted(renamed.values())
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    first = min(renamed)
    return (f"the adapter trained the text decoder of a multimodal checkpoint ({config.get('model_type')}) alone; "
            f"its weights are renamed here as the checkpoint names those modules ({first} is {renamed[first]}), "
            "so that vLLM applies them to the decoder it serves")
