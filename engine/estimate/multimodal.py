"""Multimodal checkpoints (a vision or audio tower beside the text decoder): the one rule of what lorapilot does
with them, read from config.json alone.

lorapilot trains a text decoder alone. Where transformers' causal-LM class for the checkpoint is the decoder alone
(its config class is the text config) and the decoder saves as a model transformers loads back (Llama 4, Qwen3.5),
the tower is never loaded: the estimate counts the decoder the trainer loads, LoRA adapts only its layers, a merged
export is a text model. Accepted, and said in the estimate and train.log. Every other one is refused, naming the
architecture and what to train instead: transformers loads its tower with the decoder (Gemma 3 4B and larger, Gemma
3n: all-linear would adapt the tower's layers, which the estimate does not count), has no causal-LM class for it
(Qwen2-VL, Qwen2.5-VL, Mistral 3, Llava: the trainer could not load it), or saves the decoder as a model type it
cannot load back (Llama 3.2 Vision: a merged export nothing reloads). The estimate, the wizard, the launcher and the
trainer all ask tower_problem; none keeps a rule of its own.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.errors import ModelError

# config.json's keys that hold a tower of another modality (transformers' sub-configs of its multimodal models)
TOWER_KEYS = ("vision_config", "audio_config", "speech_config", "vq_config")

# The multimodal model types whose AutoModelForCausalLM class is the text decoder alone (its config class is the
# text config, so the checkpoint's tower is left out at load) and whose text model type AutoModelForCausalLM loads
# back (a merged export). Pinned against transformers by tests/test_multimodal.py. Not Llama 3.2 Vision (mllama):
# its decoder saves as mllama_text_model, which transformers does not load as a causal LM.
DECODER_ALONE = ("dots3_note", "llama4", "qwen3_5", "qwen3_5_moe", "qwen4_exp")
# Those whose decoder transformers loads alone but saves as a model type it does not load back
DECODER_NOT_RELOADED = ("emu3", "mllama")

# What to train instead, where the makers publish a text-only model of the family
_INSTEAD = {
    "gemma3": "Gemma 3 1B, the text-only size (google/gemma-3-1b-it or -pt); for 4B, 12B or 27B, a text-only copy "
              "of the language model (its config.json's model_type is gemma3_text)",
    "gemma3n": "a text-only Gemma (google/gemma-3-1b-it, google/gemma-2-9b-it)",
    "qwen2_vl": "a Qwen2.5 text model (Qwen/Qwen2.5-7B-Instruct)",
    "qwen2_5_vl": "a Qwen2.5 text model (Qwen/Qwen2.5-7B-Instruct)",
    "qwen3_vl": "a Qwen3 text model (Qwen/Qwen3-8B)",
    "mllama": "Llama 3.1 8B or Llama 3.2 1B or 3B, the text models (meta-llama/Llama-3.1-8B-Instruct)",
    "mistral3": "Mistral Small 3, its text-only release (mistralai/Mistral-Small-24B-Instruct-2501)",
}


_KINDS = {"vision_config": "vision", "audio_config": "audio", "speech_config": "speech", "vq_config": "image tokenizer"}


def _kinds(keys: list[str]) -> str:
    return " and ".join(_KINDS[k] for k in keys)


def towers(config: Mapping[str, Any]) -> list[str]:
    """The keys of config.json that hold another modality's tower (vision_config, audio_config, ...)."""
    return [key for key in TOWER_KEYS if isinstance(config.get(key), dict)]


def decoder_alone(config: Mapping[str, Any]) -> bool:
    """Whether the checkpoint has a tower that the trainer's load leaves out (DECODER_ALONE)."""
    return bool(towers(config)) and config.get("model_type") in DECODER_ALONE


def tower_problem(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """(problem, fix) where config.json's checkpoint carries a tower the trainer would load with the decoder (or
    that transformers cannot load as a causal language model); None for a text model or a DECODER_ALONE one."""
    found = towers(config)
    model_type = str(config.get("model_type") or "unknown")
    if not found or model_type in DECODER_ALONE:
        return None
    names = config.get("architectures")
    arch = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else model_type
    text = config.get("text_config")
    text_type = text.get("model_type") if isinstance(text, dict) else None
    why = ("transformers loads this one's decoder alone but saves it as a model it cannot load back (a merged export "
           "nothing reloads)" if model_type in DECODER_NOT_RELOADED else
           "transformers loads this one only with its tower (where LoRA's all-linear would adapt the tower's layers "
           "too)")
    problem = (f"{arch} ({model_type}) is a multimodal checkpoint, a {_kinds(found)} tower beside its text decoder "
               f"({', '.join(found)}): lorapilot trains a text decoder alone, and {why}")
    instead = _INSTEAD.get(model_type) or ("the text-only checkpoint of the language model it is built on"
                                           + (f" (text_config's model_type: {text_type})" if text_type else ""))
    return problem, f"use {instead}"


def decoder_alone_note(config: Mapping[str, Any]) -> str | None:
    """The line the plan and the estimate show for a DECODER_ALONE checkpoint: what is trained, what is left out."""
    if not decoder_alone(config):
        return None
    return (f"multimodal checkpoint ({config.get('model_type')}): its text decoder alone is loaded and trained; "
            f"the {_kinds(towers(config))} tower is left out")


def check_text_decoder(config: Mapping[str, Any], where: str) -> None:
    """tower_problem as the refusal every verb and the trainer's load raise (exit 2); `where` names the config."""
    found = tower_problem(config)
    if found:
        raise ModelError(f"{where}: {found[0]}", fix=found[1])
