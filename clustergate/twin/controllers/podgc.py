"""The pod garbage collector: pods bound to nodes that no longer exist are deleted, as
kube-controller-manager's PodGC does for orphaned pods (after an instance is terminated)."""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import Obj
from clustergate.twin.kubeclient import KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings


class PodGarbageCollector(Controller):
    name = "pod-garbage-collector"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.pods = informers.get("/api/v1/pods")
        self.nodes = informers.get("/api/v1/nodes")
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def keys(self) -> list[str]:
        return [object_key(p) for p in self.pods.list() if self._orphaned(p)]

    def _orphaned(self, pod: Obj) -> bool:
        node = pod["spec"].get("nodeName")
        return bool(node) and self.nodes.get(node) is None

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        if kind != "DELETED" and self._orphaned(pod):
            self.queue.add(object_key(pod))

    def _on_node(self, kind: str, node: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            for pod in self.pods.list():
                if pod["spec"].get("nodeName") == node["metadata"]["name"]:
                    self.queue.add(object_key(pod))

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self._orphaned(pod):
            return
        node_name = pod["spec"]["nodeName"]
        if await self.client.get_or_none(resource_path("v1", "nodes", name=node_name)):
            return  # our cache is behind: the node exists
        meta = pod["metadata"]
        await self.client.delete(
            resource_path("v1", "pods", meta["namespace"], meta["name"]),
            grace_period_seconds=0,
            uid=meta["uid"],
        )
