"""kube-scheduler: binds pending pods to nodes through the pods/binding subresource."""

from __future__ import annotations

import asyncio
import logging

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import (
    Obj,
    condition,
    is_terminating,
    pod_finished,
    set_condition,
)
from clustergate.twin.controllers.scheduling import NodeState, schedule
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
#: How often pods that did not fit are tried again even when nothing seems to have changed.
_RETRY_UNSCHEDULABLE = 5.0


class Scheduler(Controller):
    name = "scheduler"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.pods = informers.get("/api/v1/pods")
        self.nodes = informers.get("/api/v1/nodes")
        self.events = EventRecorder(client, SCHEDULER_NAME)
        #: pod key -> node name, between a successful binding and the watch showing it.
        self._assumed: dict[str, str] = {}
        #: The scheduler's cache: node name -> the pods counted on it (bound or assumed),
        #: kept up to date by the pod watch rather than rebuilt from every pod per decision.
        self._states: dict[str, NodeState] = {}
        #: pod key -> the node it is counted on in ``_states``.
        self._counted: dict[str, str] = {}
        self._unschedulable: set[str] = set()
        #: Where the next decision starts filtering (nextStartNodeIndex).
        self._next_start = 0
        self._binding: set[asyncio.Task[None]] = set()
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def keys(self) -> list[str]:
        return sorted(self._unschedulable)

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        key = object_key(pod)
        if kind == "DELETED" or pod["spec"].get("nodeName"):
            self._assumed.pop(key, None)
            self._uncount(key)
            if kind != "DELETED" and not pod_finished(pod):
                self._count(key, pod["spec"]["nodeName"], pod)
            self._unschedulable.discard(key)
            if kind == "DELETED" or (old is not None and _frees_room(old, pod)):
                self._retry_unschedulable()
            return
        if self._wants(pod):
            self.queue.add(key)

    def _on_node(self, kind: str, node: Obj, old: Obj | None) -> None:
        changed = old is None or old.get("spec") != node.get("spec")
        if kind == "ADDED" or changed or condition(old, "Ready") != condition(node, "Ready"):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in self._unschedulable:
            self.queue.add(key)

    @staticmethod
    def _wants(pod: Obj) -> bool:
        spec = pod.get("spec", {})
        return (
            not spec.get("nodeName")
            and spec.get("schedulerName", SCHEDULER_NAME) == SCHEDULER_NAME
            and not is_terminating(pod)
            and not pod_finished(pod)
        )

    def _count(self, key: str, node_name: str, pod: Obj) -> None:
        state = self._states.get(node_name)
        if state is None:
            state = self._states[node_name] = NodeState({"metadata": {"name": node_name}})
        state.add(pod)
        self._counted[key] = node_name

    def _uncount(self, key: str) -> None:
        node_name = self._counted.pop(key, None)
        if node_name is not None:
            self._states[node_name].remove(key)

    def _node_states(self) -> list[NodeState]:
        """The cache's view of every schedulable node, each with its current Node object."""
        states = []
        for node in self.nodes.list():
            if is_terminating(node):
                continue
            name = node["metadata"]["name"]
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = NodeState(node)
            state.node = node
            states.append(state)
        return sorted(states, key=lambda state: state.name)

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self._wants(pod) or key in self._assumed:
            self._unschedulable.discard(key)
            return
        nodes = self._node_states()
        decision = schedule(pod, nodes, self._next_start)
        self._next_start = (self._next_start + decision.examined) % max(1, len(nodes))
        if decision.node is None:
            self._unschedulable.add(key)
            self.queue.add_after(key, _RETRY_UNSCHEDULABLE)
            await self._mark_unschedulable(pod, decision.message)
            return
        # Assume the pod is on its node now and bind in the background, as kube-scheduler's
        # binding cycle does: the next pod is scheduled against the assumed state.
        self._assumed[key] = decision.node
        self._count(key, decision.node, pod)
        self._unschedulable.discard(key)
        task = asyncio.create_task(self._bind(pod, decision.node), name=f"bind {key}")
        self._binding.add(task)
        task.add_done_callback(self._binding.discard)

    async def stop(self) -> None:
        for task in list(self._binding):
            task.cancel()
        await super().stop()

    async def _bind(self, pod: Obj, node_name: str) -> None:
        meta = pod["metadata"]
        key = object_key(pod)
        path = resource_path("v1", "pods", meta["namespace"], meta["name"])
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        try:
            await self.client.post_subresource(path, "binding", binding)
        except ApiError as error:
            if self._assumed.pop(key, None) is not None:
                self._uncount(key)
            if error.status not in (404, 409):  # gone meanwhile, or bound by someone else
                log.warning("binding %s to %s failed: %s", key, node_name, error)
                self.queue.add_after(key, 1.0)
            return
        await self.events.record(
            {**pod, "apiVersion": "v1", "kind": "Pod"},
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}",
        )

    async def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        current = condition(pod, "PodScheduled")
        if not (current and current.get("status") == "False" and current.get("message") == message):
            conditions = set_condition(
                list(pod.get("status", {}).get("conditions") or []),
                "PodScheduled",
                "False",
                "Unschedulable",
                message,
                lastProbeTime=None,
            )
            meta = pod["metadata"]
            path = resource_path("v1", "pods", meta["namespace"], meta["name"])
            try:
                await self.client.patch_status(path, {"status": {"conditions": conditions}})
            except ApiError as error:
                if error.status != 404:
                    raise
        await self.events.record(
            {**pod, "apiVersion": "v1", "kind": "Pod"}, "Warning", "FailedScheduling", message
        )


def _frees_room(old: Obj, pod: Obj) -> bool:
    """A bound pod's change that can make room for others: it finished, or its labels (which
    affinity and spread constraints look at) changed."""
    finished = pod_finished(pod) and not pod_finished(old)
    return finished or old["metadata"].get("labels") != pod["metadata"].get("labels")
