"""Whether a run's base model must be downloaded first: its weights looked up in the local Hugging Face cache.

On disk only (huggingface_hub's try_to_load_from_cache reads the cache's folders and never the network): the
estimate must answer offline, in milliseconds, and the same on a pod with no route to the hub.
"""

from __future__ import annotations

from engine.json_file import read_table
from engine.settings import hub_cache_dir

# The weights from_pretrained loads, in its order of preference: one file, or an index naming the shards.
WEIGHT_FILES = (("model.safetensors", "model.safetensors.index.json"),
                ("pytorch_model.bin", "pytorch_model.bin.index.json"))


def weights_cached(repo_id: str) -> bool:
    """Every weight file of the hub model `repo_id` (its main revision, the one the trainer loads) is in the cache:
    its single file, or its index and every shard the index names. A partly downloaded model is not cached."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()

    def cached(filename: str) -> str | None:
        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
        except ValueError:   # a shard named outside the repository ("../x") in a hand-edited index
            return None
        return found if isinstance(found, str) else None

    for single, index in WEIGHT_FILES:
        if cached(single):
            return True
        index_path = cached(index)
        if index_path:
            shards = _shards(index_path)
            return bool(shards) and all(cached(shard) for shard in shards)
    return False


def _shards(index_path: str) -> set[str]:
    """The shard files an index's weight_map names; none for an unreadable index (then not cached: the trainer
    would fetch it again)."""
    weight_map = (read_table(index_path) or {}).get("weight_map")
    return {v for v in weight_map.values() if isinstance(v, str)} if isinstance(weight_map, dict) else set()


def needs_download(source: str, name: str) -> bool:
    """A model read from the hub or named by a preset (a hub id) whose weights are not cached here; a local
    directory (the demo included) never needs one."""
    return source in ("hub", "preset") and not weights_cached(name)
