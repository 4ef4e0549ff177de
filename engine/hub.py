"""The one rule for reading from the Hugging Face Hub: ask whether it answers before asking it for anything.

huggingface_hub and datasets retry a hub out of reach for 20 s to minutes (a tokenizer offline: five retries of a
HEAD request, ~50 s, before saying it is not in the cache). Every read lorapilot makes before training (a model's
config.json, its tokenizer, a hub dataset) and the trainer's load of the weights first ask `hub_reachable`: a short
TCP probe, or no probe at all under HF_HUB_OFFLINE. Out of reach, they read the cache only (`local_files_only`) and
say so when the file is not there; a hub dataset out of reach is read from its copy in datasets' cache,
said in one line naming the revision read (`read_from`: the one rule for which revision a load read).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from engine.settings import hub_endpoint, hub_offline

HUB_TIMEOUT_S = 5.0


def hub_reachable() -> bool:
    """Whether the hub (HF_ENDPOINT) accepts a connection within HUB_TIMEOUT_S; False under HF_HUB_OFFLINE."""
    if hub_offline():
        return False
    url = urlparse(hub_endpoint())
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=HUB_TIMEOUT_S).close()
        return True
    except (OSError, ValueError):  # ValueError: a port out of range in HF_ENDPOINT
        return False


@dataclass(frozen=True)
class CachedDataset:
    """A hub dataset's copy in datasets' cache: the folder `owner___name/<config>/<version>/<revision>` that a load
    read its Arrow files from (`read_from`), and the revision it was built from (the folder's name)."""
    folder: Path

    @property
    def revision(self) -> str:
        return self.folder.name

    def line(self, repo_id: str, why: str) -> str:
        """The one line that says the data is the cached copy, and which: `why` the hub is not asked."""
        revision = self.revision[:12] if len(self.revision) == 40 else self.revision  # a commit, as git shortens it
        cached = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.folder.stat().st_mtime))
        return f"{repo_id}: {why}: read from the cached copy, revision {revision} (cached {cached})"


def read_from(ds) -> CachedDataset | None:
    """The copy in datasets' cache that a loaded hub dataset (a datasets.Dataset from load_dataset) was read from:
    the folder of its Arrow files. The one rule for which revision of a hub dataset a run read: datasets names that
    folder by the builder's hash, which is the hub commit it downloaded (HubDatasetModuleFactory's commit_hash), and
    offline the folder its Cache builder picked (the newest of the dataset's default configuration, which is not
    always the newest folder). None for a dataset with no files in the cache (built in memory)."""
    files = [f["filename"] for f in ds.cache_files if f.get("filename")]
    return CachedDataset(Path(files[0]).parent) if files else None


def has_cached_copy(repo_id: str) -> bool:
    """Whether datasets' cache (HF_DATASETS_CACHE) holds a copy of hub dataset `repo_id` that an offline load can
    read (the folders its Cache builder looks in: the name's last part in snake case). Which copy the load read is
    read_from's to say, from the load."""
    import datasets.config
    from datasets.naming import camelcase_to_snakecase

    *owner, name = repo_id.split("/")
    root = Path(str(datasets.config.HF_DATASETS_CACHE)).expanduser() / "___".join([*owner, camelcase_to_snakecase(name)])
    return any(p.is_dir() and (p / "dataset_info.json").is_file() for p in root.glob("*/*/*"))
