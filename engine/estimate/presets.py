"""The preset data files (presets/): GPU cards, model configs and recipes.

Read once per process and cached: the wizard asks for them on every keystroke.
Model presets are JSON (the shape of a config.json, and json is quicker to
import than yaml); GPUs and recipes are YAML so that people can edit them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from functools import lru_cache
from pathlib import Path

from engine.errors import ConfigError
from engine.settings import PRESETS_DIR

SPEED_FILE = PRESETS_DIR / "speed.yaml"


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read preset: {e}") from None


@lru_cache(maxsize=1)
def gpu_presets() -> tuple[dict, ...]:
    return tuple(_read_yaml(PRESETS_DIR / "gpus.yaml") or ())


@lru_cache(maxsize=1)
def speed_presets() -> tuple[dict, ...]:
    """presets/speed.yaml: the measured training speeds (engine.estimate.speed_table reads them)."""
    return tuple(_read_yaml(SPEED_FILE) or ())


@lru_cache(maxsize=1)
def model_presets() -> dict[str, dict]:
    """Every preset keyed by each lower-cased name it answers to: hub id, its name part, aliases."""
    out: dict[str, dict] = {}
    for path in sorted((PRESETS_DIR / "models").glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        for name in [entry["id"], entry["id"].rsplit("/", 1)[-1], *entry.get("aliases", [])]:
            out[name.lower()] = entry
    return out


def find_model_preset(name: str) -> dict | None:
    """The preset for a hub id, the id without its owner, or a short alias.

    Another owner's repository of the same name is not assumed to be the same model.
    """
    return model_presets().get(name.strip().lower())


def near_model_preset(name: str) -> str | None:
    """The preset (or the demo) a mistyped model name most likely meant: its display id, else None.

    Near means at most two letters apart (a letter missing, extra, changed or two swapped) with the same numbers:
    `meta-lama/Llama-2-7b-hf` and `lorapilot-dmeo` are typos, `gemma-2-27b` and `Llama-3.1-8B-Instruct` are other
    models, never offered in their place."""
    from engine.demo.model import DEMO_MODEL_ID

    typed = name.strip().lower()
    if len(typed) < 6 or find_model_preset(typed) is not None or typed == DEMO_MODEL_ID:
        return None
    names = {key: entry["id"] for key, entry in model_presets().items()} | {DEMO_MODEL_ID: DEMO_MODEL_ID}
    numbers = re.findall(r"\d+", typed)
    near = [(_typo_distance(typed, key), shown) for key, shown in names.items()
            if re.findall(r"\d+", key) == numbers and abs(len(key) - len(typed)) <= 2]
    near = [(d, shown) for d, shown in near if d <= 2]
    return min(near)[1] if near else None


def _typo_distance(a: str, b: str) -> int:
    """Letters to add, remove, change or swap with a neighbour to turn a into b (optimal string alignment)."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


def list_model_presets() -> list[dict]:
    """One entry per model preset: id, aliases, published_params, config (and pretraining when known)."""
    seen: dict[str, dict] = {}
    for entry in model_presets().values():
        seen.setdefault(entry["id"], entry)
    return list(seen.values())


def list_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted((PRESETS_DIR / "recipes").glob("*.yaml"))}


def load_recipe(name: str) -> dict:
    """A recipe's partial config (a raw mapping; merge it, then validate with config_from_dict)."""
    recipes = list_recipes()
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}; one of {', '.join(recipes)}")
    return _read_yaml(recipes[name]) or {}
