"""Where a model's config.json comes from: a local directory, a preset, or the hub.

Only config.json is read, never weights, so this answers in milliseconds for a
directory or a preset. A hub id that is not a preset is fetched once (short
timeout) and kept in Hugging Face's cache; offline, the cached copy is used,
and without one the error says what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ModelError, quote
from engine.hub import HUB_TIMEOUT_S, hub_reachable
from engine.settings import hub_cache_dir
from engine.estimate.multimodal import check_text_decoder
from engine.estimate.params import Architecture, ParamCounts, architecture, count_params
from engine.estimate.presets import find_model_preset, near_model_preset

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_hub_cache: dict[str, dict] = {}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    config: dict
    source: str                 # "local" | "hub" | "preset"
    arch: Architecture
    params: ParamCounts
    pretraining: dict = field(default_factory=dict)   # learning_rate, batch_tokens when published

    @property
    def architecture(self) -> str:
        return self.arch.model_type

    @property
    def param_count(self) -> int:
        return self.params.total

    @property
    def dtype(self) -> str | None:
        """The checkpoint's dtype as config.json names it (transformers 5 writes `dtype`, earlier `torch_dtype`;
        multimodal wrappers may keep it in text_config), None where it names none."""
        for section in (self.config, self.config.get("text_config")):
            if isinstance(section, dict):
                value = section.get("dtype") or section.get("torch_dtype")
                if isinstance(value, str):
                    return value
        return None

    @property
    def vocab_size(self) -> int:
        return self.arch.vocab

    @property
    def context_length(self) -> int:
        return self.arch.context

    @property
    def exact(self) -> bool:
        return self.arch.exact

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "architecture": self.architecture,
                "param_count": self.param_count, "vocab_size": self.vocab_size,
                "context_length": self.context_length, "exact": self.exact, "notes": list(self.arch.notes)}


# The shape keys of config.json (with the names other families give them) and bounds no real decoder reaches
# (Llama 3.1 405B: 126 layers, hidden 16,384, intermediate 53,248; Gemma 3: vocabulary 262,144). A value
# outside them is a broken or hand-edited file: 10**6 layers or a negative count would otherwise be
# "estimated" (negative layers gave "-6.21 B parameters ... fits").
_WIDTH = (1, 1 << 17)
_COUNT = (1, 4096)
SHAPE_LIMITS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("hidden_size", "n_embd", "d_model"), _WIDTH),
    **dict.fromkeys(("intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size"), (1, 1 << 20)),
    **dict.fromkeys(("num_hidden_layers", "n_layer", "num_layers"), _COUNT),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "num_key_value_heads"), _COUNT),
    "head_dim": (1, 1 << 14),
    "vocab_size": (1, 1 << 24),
    **dict.fromkeys(("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok"), (0, 4096)),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "max_sequence_length"), (0, 1 << 40)),
    # a mixture's shared expert and dense layers, DeepSeek's latent attention (params.architecture)
    "shared_expert_intermediate_size": (0, 1 << 20),
    **dict.fromkeys(("n_shared_experts", "num_shared_experts", "first_k_dense_replace"), (0, 4096)),
    "decoder_sparse_step": _COUNT,
    **dict.fromkeys(("kv_lora_rank", "q_lora_rank"), (0, 1 << 17)),
    **dict.fromkeys(("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"), (0, 1 << 14)),
}


def check_shapes(config: dict, where: str) -> None:
    """Every shape key present is a whole number within SHAPE_LIMITS; a ModelError naming the key if not."""
    sections = [("", config)]
    if isinstance(config.get("text_config"), dict):   # multimodal wrappers keep the decoder here
        sections.append(("text_config.", config["text_config"]))
    problems = []
    for prefix, section in sections:
        for key, (lo, hi) in SHAPE_LIMITS.items():
            value = section.get(key)
            if value is None:
                continue
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not whole or not lo <= value <= hi:
                what = "out of range" if whole else "not a whole number"
                problems.append(f"{prefix}{key}: {quote(value)} is {what}; expected {lo:,} to {hi:,}")
    if problems:
        raise ModelError(f"{where}: {len(problems)} bad value{'s' if len(problems) > 1 else ''} in the model's "
                         "config.json", problems=problems,
                         fix="fix the file (compare it with the model's original config.json), or use a preset name")


def model_info_from_config(name: str, config: dict, source: str, pretraining: dict | None = None,
                           where: str | None = None) -> ModelInfo:
    """`where` names the config for messages (the config.json path); `name` by default. A multimodal checkpoint the
    trainer would load with its tower is refused first (engine.estimate.multimodal, the one rule)."""
    check_text_decoder(config, where or name)
    check_shapes(config, where or name)
    arch = architecture(config)
    if arch.head_dim < 1:
        raise ModelError(f"{where or name}: num_attention_heads {arch.heads} is more than hidden_size "
                         f"{arch.hidden} and there is no head_dim", fix="fix the model's config.json")
    return ModelInfo(name=name, config=config, source=source, arch=arch, params=count_params(arch),
                     pretraining=dict(pretraining or {}))


@dataclass(frozen=True)
class ConfigJson:
    """A model's config.json as found (read_model_config): the name shown, the mapping, where it came from, the
    preset's pretraining figures, and the file for messages (None: `name` says it)."""
    name: str
    config: dict
    source: str
    pretraining: dict | None = None
    where: str | None = None

    def info(self) -> ModelInfo:
        """The model's shapes and parameter count from this config.json."""
        return model_info_from_config(self.name, self.config, self.source, self.pretraining, self.where)


def find_config_json(model: str) -> ConfigJson:
    """The model's config.json from a directory, a preset name or a hub id (fetched once, then cached)."""
    model = check_model_found(model)
    from engine.demo.model import DEMO_MODEL_ID, demo_config_dict

    if model == DEMO_MODEL_ID:
        return ConfigJson(model, demo_config_dict(), "local")
    path = Path(model).expanduser()
    if path.is_dir():
        return ConfigJson(model, read_config_json(path / "config.json"), "local", where=str(path / "config.json"))
    if path.is_file() and path.name == "config.json":
        return ConfigJson(model, read_config_json(path), "local", where=str(path))
    preset = find_model_preset(model)
    if preset is not None:
        return ConfigJson(preset["id"], preset["config"], "preset", preset.get("pretraining"))
    return ConfigJson(model, hub_config(model), "hub", where=f"{model} (config.json from the hub)")


def read_model_config(model: str) -> ModelInfo:
    """The model's shapes and parameter count from a directory, a preset name or a hub id."""
    return find_config_json(model).info()


def check_model_found(model: str) -> str:
    """The model name, stripped, when it names something: the demo, a directory, its config.json, a preset or a
    hub id (not asked here: a sweep goes on unestimated when the hub is out of reach). Else the error `lorapilot
    estimate` gives; the sweep checks with it before its plan (a dry run once said nothing of a missing path)."""
    model = (model or "").strip()
    if not model:
        raise ModelError("model: not set", fix="a hub id (Qwen/Qwen2.5-1.5B), a preset name or a local directory")
    from engine.demo.model import DEMO_MODEL_ID

    path = Path(model).expanduser()
    if model == DEMO_MODEL_ID or path.is_dir() or (path.is_file() and path.name == "config.json"):
        return model
    if find_model_preset(model) is None and not _HUB_ID.match(model):
        # named as the config's line reads (model: ...): the same value may have come from --model
        raise ModelError(f"model: {model}: not a directory, a preset or a hub id (owner/name){_did_you_mean(model)}",
                         fix="check the path; `lorapilot estimate --help` lists the presets")
    return model


def _did_you_mean(model: str) -> str:
    """'; did you mean 'meta-llama/Llama-2-7b-hf'?' for a name a letter or two from a preset's, else ''."""
    near = near_model_preset(model)
    return f"; did you mean {near!r}?" if near else ""


def read_config_json(path: Path) -> dict:
    """A model's config.json as a table; ModelError naming the file when it is missing, unreadable or no table."""
    if not path.exists():
        raise ModelError(f"{path}: not found; a model directory needs its config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: not a readable config.json: nested too deeply") from None
    except (OSError, ValueError) as e:   # ValueError: bad JSON, bad UTF-8, an integer of thousands of digits
        raise ModelError(f"{path}: not a readable config.json: {str(e).split(';')[0]}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


# What to use instead of a hub model out of reach, where only its shapes are needed (the estimate, the wizard).
SHAPES_INSTEAD = "use a local directory holding config.json or a preset name"


def hub_config(repo_id: str, instead: str = SHAPES_INSTEAD) -> dict:
    """A hub model's config.json: from the cache, else fetched after a quick reachability probe.
    instead: what a message about a model out of reach advises (training needs more than a preset's shapes)."""
    if repo_id in _hub_cache:
        return _hub_cache[repo_id]
    # Imported here: huggingface_hub costs ~0.2 s, which directories and presets never pay.
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub import errors as hub_errors

    cache = hub_cache_dir()   # where the weights are looked for too (engine.estimate.hub_cache)
    cached = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    if isinstance(cached, str):
        path = cached
    elif not hub_reachable():
        raise ModelError(f"{repo_id}: the hub is unreachable (offline?) and config.json is not in the Hugging "
                         f"Face cache; {instead}{_did_you_mean(repo_id)}")
    else:
        try:
            path = hf_hub_download(repo_id, "config.json", cache_dir=cache, etag_timeout=HUB_TIMEOUT_S)
        except hub_errors.GatedRepoError:
            raise ModelError(f"{repo_id}: gated on the hub; accept its licence on huggingface.co and log in "
                             f"(hf auth login); or {instead}") from None
        except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError):
            raise ModelError(f"{repo_id}: no such model on the hub (or it is private){_did_you_mean(repo_id)}") from None
        except hub_errors.LocalEntryNotFoundError:
            raise ModelError(f"{repo_id}: offline and config.json is not in the Hugging Face cache; "
                             f"{instead}{_did_you_mean(repo_id)}") from None
        except hub_errors.EntryNotFoundError:
            raise ModelError(f"{repo_id}: the repository has no config.json") from None
        except Exception as e:  # noqa: BLE001 - offline shows up as several connection error types
            raise ModelError(f"{repo_id}: cannot fetch config.json from the hub ({type(e).__name__}); "
                             f"offline? {instead}") from None
    config = read_config_json(Path(path))
    _hub_cache[repo_id] = config
    return config
