"""How a probe finds files and addresses when its pod is not a container.

In a real pod both functions are the identity. A pod run by a process-based kubelet (the local
twin runs probe pods as processes) gets two variables: ``CLUSTERGATE_ROOT``, the directory that
stands for the container's root filesystem, and ``CLUSTERGATE_NETMAP``, a JSON table of where
cluster addresses really listen (the role iptables DNAT rules play on a node). This module is
the only place that knows about either.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path


def path(container_path: str) -> Path:
    root = os.environ.get("CLUSTERGATE_ROOT")
    if root and container_path.startswith("/"):
        return Path(root) / container_path.lstrip("/")
    return Path(container_path)


_EMPTY: dict[str, dict[str, str]] = {"addresses": {}, "urls": {}}
_last_read: list[dict[str, dict[str, str]]] = []


def _netmap() -> dict[str, dict[str, str]]:
    """The table, re-read when its file changes: what serves an address can move while the
    pod runs (a node's DNS cache pod is replaced), as routing changes under a real pod."""
    location = os.environ.get("CLUSTERGATE_NETMAP")
    if not location:
        return _EMPTY
    try:
        table = _read(location, os.stat(location).st_mtime_ns)
    except (OSError, ValueError):
        if not _last_read:
            raise
        return _last_read[0]  # caught mid-rewrite: the table read last still holds
    _last_read[:] = [table]
    return table


@lru_cache(maxsize=2)
def _read(location: str, _mtime_ns: int) -> dict[str, dict[str, str]]:
    return json.loads(Path(location).read_text())


def dial(host: str, port: int) -> tuple[str, int]:
    """Where a connection to ``host:port`` really goes."""
    target = _netmap()["addresses"].get(f"{host}:{port}")
    if target is None:
        return host, port
    target_host, _, target_port = target.rpartition(":")
    return target_host, int(target_port)


def url(public: str) -> str:
    """Where a request to the URL ``public`` really goes."""
    for base, local in _netmap()["urls"].items():
        if public == base or public.startswith(base + "/"):
            return local + public[len(base) :]
    return public
