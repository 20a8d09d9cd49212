"""Keeps :class:`ClusterRecords` in step with the API server, as CoreDNS's informers do.

The one place the DNS package touches the twin's Kubernetes client: three
:class:`~clustergate.twin.kubeclient.Informer` s (Services, EndpointSlices, Pods, all
namespaces, as CoreDNS's kubernetes plugin watches them)
whose events upsert or delete records. Relists after a 410 arrive as the differences they
reveal, so deleted objects leave the records too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clustergate.twin.dns.records import ClusterRecords, K8sObject
from clustergate.twin.kubeclient import Informer, KubeClient, Obj


class RecordsFeeder:
    def __init__(self, client: KubeClient, records: ClusterRecords) -> None:
        self.records = records
        self._informers = {
            "services": Informer(client, "/api/v1/services"),
            "endpointslices": Informer(client, "/apis/discovery.k8s.io/v1/endpointslices"),
            "pods": Informer(client, "/api/v1/pods"),
        }
        appliers = {
            "services": (records.upsert_service, records.delete_service),
            "endpointslices": (records.upsert_endpoint_slice, records.delete_endpoint_slice),
            "pods": (records.upsert_pod, records.delete_pod),
        }
        for kind, informer in self._informers.items():
            upsert, delete = appliers[kind]
            informer.add_handler(_handler(upsert, delete))

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def synced(self, timeout: float) -> None:
        """Return once every collection has been listed; TimeoutError (naming it) otherwise."""
        await asyncio.gather(*(informer.synced(timeout) for informer in self._informers.values()))

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()


def _handler(
    upsert: Callable[[K8sObject], None], delete: Callable[[str, str], None]
) -> Callable[[str, Obj, Obj | None], None]:
    def handle(kind: str, obj: Obj, _previous: Obj | None) -> None:
        if kind == "DELETED":
            meta = obj["metadata"]
            delete(meta.get("namespace") or "default", meta["name"])
        else:
            upsert(obj)

    return handle
