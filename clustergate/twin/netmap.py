"""The twin's network: where an address of the simulated cluster really listens.

A real cluster's pods, nodes, Services and AWS endpoints have addresses of their own (10.0.x.y,
169.254.20.10, sts.us-west-2.amazonaws.com). In the twin every one of them is a socket on
127.0.0.1 with a port of its own. This table says which, in the role that kube-proxy's iptables
rules and the VPC's routing play on EKS: the API server's proxy, the kubelets and the probe
processes' sandboxes translate through it. It is filled by the component that opens the socket.

Keys are ``"<host>:<port>"`` (host is an IP or a DNS name, as a client would dial it); values
are ``"<loopback-host>:<port>"``. A view can be node-specific: the same kube-dns address is
served by a different cache on each node, as NodeLocal DNSCache's NOTRACK rules do. A scope
is a node name, or ``"<node>/pod-network"`` for what only containers without host networking see
(the instance metadata service one hop further away, for instance).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class Netmap:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._global: dict[str, str] = {}
        self._per_node: dict[str, dict[str, str]] = {}
        self._urls: dict[str, str] = {}

    def publish(self, address: str, port: int, target: tuple[str, int], node: str = "") -> None:
        """Say that ``address:port`` (seen from ``node``, or everywhere) listens at ``target``."""
        key = f"{address}:{port}"
        value = f"{target[0]}:{target[1]}"
        with self._lock:
            if node:
                self._per_node.setdefault(node, {})[key] = value
            else:
                self._global[key] = value

    def withdraw(self, address: str, port: int, node: str = "") -> None:
        key = f"{address}:{port}"
        with self._lock:
            if node:
                self._per_node.get(node, {}).pop(key, None)
            else:
                self._global.pop(key, None)

    def publish_url(self, public_base: str, local_base: str) -> None:
        """Say that URLs under ``public_base`` (https://sts.us-west-2.amazonaws.com) are served
        at ``local_base`` (http://127.0.0.1:PORT)."""
        with self._lock:
            self._urls[public_base.rstrip("/")] = local_base.rstrip("/")

    def resolve(self, address: str, port: int, *scopes: str) -> tuple[str, int] | None:
        key = f"{address}:{port}"
        with self._lock:
            value = None
            for scope in reversed(scopes):
                value = value or self._per_node.get(scope, {}).get(key)
            value = value or self._global.get(key)
        if value is None:
            return None
        host, _, target_port = value.rpartition(":")
        return host, int(target_port)

    def resolve_url(self, url: str) -> str:
        with self._lock:
            for public, local in self._urls.items():
                if url == public or url.startswith(public + "/"):
                    return local + url[len(public) :]
        return url

    def view(self, *scopes: str) -> dict[str, dict[str, str]]:
        """The table as seen from ``scopes`` (later ones win), in the sandbox file format."""
        with self._lock:
            addresses = dict(self._global)
            for scope in scopes:
                addresses.update(self._per_node.get(scope, {}))
            return {"addresses": addresses, "urls": dict(self._urls)}

    def write_view(self, path: Path, *scopes: str) -> None:
        """Write atomically: a probe may read the file at any moment."""
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(self.view(*scopes), indent=1, sort_keys=True))
        os.replace(partial, path)
