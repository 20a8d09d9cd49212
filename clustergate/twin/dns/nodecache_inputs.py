"""What a node-local-dns pod reads from the cluster: the ``-upstreamsvc`` Service's ClusterIP
(node-cache gets it from the Service environment variable) and the base Corefile from its
ConfigMap volume, kept current by a watch (the kubelet's ConfigMap volume sync, then the
``reload`` plugin; the twin does both at once when the ConfigMap changes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from clustergate.twin.dns.node_cache_app import ConfigSource
from clustergate.twin.kubeclient import Informer, KubeClient, Obj, resource_path

NAMESPACE = "kube-system"
#: How long the first list of the ConfigMap may take.
SYNC_TIMEOUT_S = 10.0

Changed = Callable[[str | None], Awaitable[None]]


@dataclass(frozen=True)
class UpstreamService:
    cluster_ip: str
    selector: dict[str, str]


class NodeCacheInputs(Protocol):
    async def upstream(self, service: str) -> UpstreamService | None: ...

    async def corefile(self, source: ConfigSource) -> str | None:
        """The base Corefile now (None: no such ConfigMap or key); later changes go to
        ``changed`` once :meth:`follow` was called."""
        ...

    def follow(self, changed: Changed) -> None: ...

    async def close(self) -> None: ...


class ApiInputs:
    """The inputs read through the API server, with one watch on the ConfigMap."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._informer: Informer | None = None
        self._source: ConfigSource | None = None
        self._last: str | None = None
        self._changed: Changed | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def upstream(self, service: str) -> UpstreamService | None:
        found = await self._client.get_or_none(resource_path("v1", "services", NAMESPACE, service))
        spec = (found or {}).get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            return None
        return UpstreamService(str(ip), dict(spec.get("selector") or {}))

    async def corefile(self, source: ConfigSource) -> str | None:
        self._source = source
        self._informer = Informer(
            self._client,
            f"/api/v1/namespaces/{NAMESPACE}/configmaps",
            field_selector=f"metadata.name={source.configmap}",
        )
        self._informer.add_handler(self._event)
        self._informer.start()
        await self._informer.synced(SYNC_TIMEOUT_S)
        self._last = self._text(self._informer.get(f"{NAMESPACE}/{source.configmap}"))
        return self._last

    def follow(self, changed: Changed) -> None:
        self._changed = changed

    def _text(self, configmap: Obj | None) -> str | None:
        if configmap is None or self._source is None:
            return None
        value = (configmap.get("data") or {}).get(self._source.key)
        return None if value is None else str(value)

    def _event(self, kind: str, obj: Obj, _previous: Obj | None) -> None:
        text = None if kind == "DELETED" else self._text(obj)
        if self._changed is None or text == self._last:
            return
        self._last = text
        task = asyncio.create_task(self._changed(text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._informer is not None:
            await self._informer.stop()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.close()
