"""The one rule for reading from the Hugging Face Hub: ask whether it answers before asking it for anything.

huggingface_hub and datasets retry a hub out of reach for 20 s to minutes (a tokenizer offline: five retries of a
HEAD request, ~50 s, before saying it is not in the cache). Every read lorapilot makes before training (a model's
config.json, its tokenizer, a hub dataset) and the trainer's load of the weights first ask `hub_reachable`: a short
TCP probe, or no probe at all under HF_HUB_OFFLINE. Out of reach, they read the cache only (`local_files_only`) and
say so when the file is not there.
"""

from __future__ import annotations

import socket
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
