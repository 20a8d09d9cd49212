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
from functools import cache
from pathlib import Path


def path(container_path: str) -> Path:
    root = os.environ.get("CLUSTERGATE_ROOT")
    if root and container_path.startswith("/"):
        return Path(root) / container_path.lstrip("/")
    return Path(container_path)


@cache
def _netmap() -> dict[str, dict[str, str]]:
    location = os.environ.get("CLUSTERGATE_NETMAP")
    if not location:
        return {"addresses": {}, "urls": {}}
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


def aws_endpoint(service: str, region: str) -> str | None:
    """An endpoint override for boto3 when the sandbox maps AWS elsewhere, else None."""
    public = f"https://{service}.{region}.amazonaws.com"
    mapped = url(public)
    return None if mapped == public else mapped
