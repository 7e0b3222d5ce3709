"""Whether the Hugging Face hub can be used right now, asked once and quickly.

Without this, a machine that cannot reach the hub waits through the hub client's retries (about a minute)
before failing with an error that does not say how to proceed. HF_HUB_OFFLINE=1 or a failed connection
makes the loaders use the local cache only, so a missing model or data set is reported at once.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0


def offline_by_setting() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.upper() in ("1", "ON", "YES", "TRUE")


@functools.cache
def connection_problem() -> str | None:
    """None when a TCP connection to the hub's endpoint opens; else why not (asked once per process). Behind a
    proxy a direct connection may fail while the hub client reaches the hub, so then nothing is tried."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        return f"no connection to {host}:{port}: {error}"
    return None


def unavailable_reason() -> str | None:
    """Why the hub cannot be used (offline by setting, or unreachable), or None when it can."""
    if offline_by_setting():
        return "HF_HUB_OFFLINE is set"
    return connection_problem()
