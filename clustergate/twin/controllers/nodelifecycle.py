"""The node lifecycle controller: a node whose kubelet stops renewing its Lease goes Unknown;
nodes get the not-ready / unreachable / unschedulable taints their state calls for. It evicts
nothing (taint-based eviction is left to tolerations the twin does not act on)."""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import (
    Obj,
    condition,
    is_terminating,
    now,
    parse_time,
    timestamp,
)
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path
from clustergate.twin.settings import TwinSettings

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
_MANAGED = (NOT_READY, UNREACHABLE, UNSCHEDULABLE)
_STATUS_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def wanted_taints(node: Obj, ready_status: str) -> list[Obj]:
    """The node's taints with the managed ones set for ``ready_status`` (True/False/Unknown)
    and spec.unschedulable; others are kept as they are, and so is timeAdded."""
    current = list(node.get("spec", {}).get("taints") or [])
    wanted: list[tuple[str, str]] = []
    if ready_status == "False":
        wanted += [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
    elif ready_status == "Unknown":
        wanted += [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
    if node.get("spec", {}).get("unschedulable"):
        wanted.append((UNSCHEDULABLE, "NoSchedule"))
    kept = [
        t
        for t in current
        if t.get("key") not in _MANAGED or (t.get("key"), t.get("effect")) in wanted
    ]
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect for t in kept):
            taint: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = timestamp()
            kept.append(taint)
    return kept


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    resync_seconds = 1.0

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.nodes = informers.get("/api/v1/nodes")
        self.leases = informers.get(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        )
        self.nodes.add_handler(lambda kind, node, old: self._enqueue(kind, node))
        self.leases.add_handler(lambda kind, lease, old: self._enqueue(kind, lease))

    def _enqueue(self, kind: str, obj: Obj) -> None:
        if kind != "DELETED":
            self.queue.add(obj["metadata"]["name"])

    def keys(self) -> list[str]:
        return [node["metadata"]["name"] for node in self.nodes.list()]

    def _last_heard(self, node: Obj) -> float:
        """Seconds since the kubelet last said anything (lease renewal or status heartbeat)."""
        moments = []
        lease = self.leases.get(f"kube-node-lease/{node['metadata']['name']}")
        if lease is not None:
            moments.append(parse_time(lease.get("spec", {}).get("renewTime")))
        ready = condition(node, "Ready") or {}
        moments.append(parse_time(ready.get("lastHeartbeatTime")))
        moments.append(parse_time(node["metadata"].get("creationTimestamp")))
        latest = max((m for m in moments if m is not None), default=None)
        return (now() - latest).total_seconds() if latest else 0.0

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or is_terminating(node):
            return
        path = resource_path("v1", "nodes", name=key)
        ready = condition(node, "Ready") or {}
        status = ready.get("status", "Unknown")
        if (
            status != "Unknown"
            and self._last_heard(node) > self.settings.timings.node_monitor_grace
        ):
            await self._mark_unknown(path, node)
            status = "Unknown"
        taints = wanted_taints(node, status)
        if taints != (node.get("spec", {}).get("taints") or []):
            try:
                await self.client.patch(
                    path,
                    {
                        "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                        "spec": {"taints": taints},
                    },
                )
            except ApiError as error:
                if error.status == 409:
                    self.queue.add_after(key, 0.05)
                elif error.status != 404:
                    raise

    async def _mark_unknown(self, path: str, node: Obj) -> None:
        stamp = timestamp()
        conditions = []
        for entry in node.get("status", {}).get("conditions") or []:
            if entry.get("type") in _STATUS_CONDITIONS:
                entry = {
                    **entry,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": stamp,
                }
            conditions.append(entry)
        try:
            await self.client.patch_status(path, {"status": {"conditions": conditions}})
        except ApiError as error:
            if error.status != 404:
                raise
