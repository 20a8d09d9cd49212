"""How the twin's API server reaches a node's kubelet for logs and exec.

A real API server dials the kubelet's HTTPS port (10250) on the node's address. The twin's
kubelets live in the same process, so each registers a connection here under its node name and
the API server looks it up by ``pod.spec.nodeName``: the same routing, without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class ContainerNotFound(LookupError):
    """The pod or container is not running on this node (the API server answers 404/400)."""


class ExecProcess(Protocol):
    """A command started in a container; streams as the exec channel protocol carries them."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    def stdout(self) -> AsyncIterator[bytes]: ...

    def stderr(self) -> AsyncIterator[bytes]: ...

    async def wait(self) -> int:
        """Exit code of the command."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def kill(self) -> None: ...


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    previous: bool = False
    limit_bytes: int | None = None


class KubeletConnection(Protocol):
    def logs(
        self, namespace: str, pod: str, container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        """The container's log; raises ContainerNotFound."""
        ...

    async def exec(
        self, namespace: str, pod: str, container: str, command: list[str], tty: bool
    ) -> ExecProcess:
        """Start ``command`` in the container; raises ContainerNotFound."""
        ...


class KubeletHub:
    def __init__(self) -> None:
        self._nodes: dict[str, KubeletConnection] = {}

    def register(self, node: str, connection: KubeletConnection) -> None:
        self._nodes[node] = connection

    def unregister(self, node: str) -> None:
        self._nodes.pop(node, None)

    def get(self, node: str) -> KubeletConnection | None:
        return self._nodes.get(node)
