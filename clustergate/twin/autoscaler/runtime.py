"""One cluster-autoscaler pod at work: the scan loop of the real one, against the twin.

Every ``timings.autoscaler_scan`` seconds the leader (one pod at a time, as leader election
makes it on a cluster) reads pods, nodes and budgets from its informers and the node groups
from Auto Scaling, then

- scales up (:mod:`.simulation`): ``set_desired_capacity`` on the chosen group within its
  maximum, ``TriggeredScaleUp`` on each pod it helps, ``NotTriggerScaleUp`` (with the reasons,
  repeated at most every :data:`NOT_TRIGGERED_EVERY_SCANS` scans) on each pod nothing helps;
- scales down (:mod:`.scaledown`): nodes unneeded for ``scale_down_unneeded`` seconds, outside
  ``scale_down_delay_after_add`` of the last scale-up (start-up counts as one, as upstream) and
  in groups not growing, are tainted ``ToBeDeletedByClusterAutoscaler``, drained through the
  eviction API and terminated with ``ShouldDecrementDesiredCapacity``;
- writes the status ConfigMap (:mod:`.status`).

Faults: ``autoscaler-stuck`` skips scale-up entirely (no call, no event; status stays Healthy);
``scale-down-never`` never removes a node (candidates still show in the status);
``autoscaler-slow`` decides and announces a scale-up at once but raises the group's desired
capacity only ``slow_factor * max_node_provision`` seconds later, and only if a pod it was for
is still pending: to the cluster, the new nodes arrive that much too late. Meanwhile the status
shows the group's new target and scale-up InProgress, as while instances boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from clustergate.twin.addons import PodPlacement
from clustergate.twin.autoscaler.asg import AutoScaling, instance_id
from clustergate.twin.autoscaler.scaledown import (
    UTILISATION_THRESHOLD,
    Candidate,
    find_room,
    is_daemonset_pod,
    movable_pods,
    select_removals,
    unneeded_reason,
)
from clustergate.twin.autoscaler.simulation import (
    TO_BE_DELETED_TAINT,
    GroupTemplate,
    NodeGroup,
    ScaleUpOption,
    not_triggered_message,
    plan_scale_up,
    pod_key,
    template_node,
    triggered_message,
)
from clustergate.twin.autoscaler.status import (
    CONFIGMAP,
    ClusterStatus,
    GroupStatus,
    NodeCounts,
    TransitionClock,
    configmap,
    render,
)
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import (
    Obj,
    condition,
    is_terminating,
    node_ready,
    pod_finished,
)
from clustergate.twin.controllers.scheduling import NodeState
from clustergate.twin.kubeclient import ApiError, Informer, KubeClient, resource_path
from clustergate.twin.netmap import Netmap
from clustergate.twin.pacing import pause_after
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
COMPONENT = "cluster-autoscaler"
NOT_TRIGGERED_EVERY_SCANS = 10
#: --max-pod-eviction-time is 2 min upstream; the twin's drains are quick.
EVICTION_DEADLINE_S = 20.0
#: Upstream: unhealthy when more than 3 nodes and more than 45 % of them are unready.
OK_UNREADY = 3
MAX_UNREADY_SHARE = 0.45


def unschedulable(pod: Obj) -> bool:
    """Pending with PodScheduled=False, reason Unschedulable: what the autoscaler acts on."""
    if pod.get("spec", {}).get("nodeName") or is_terminating(pod) or pod_finished(pod):
        return False
    scheduled = condition(pod, "PodScheduled")
    return bool(
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )


def being_deleted(node: Obj) -> bool:
    taints = node.get("spec", {}).get("taints") or []
    return any(taint.get("key") == TO_BE_DELETED_TAINT for taint in taints)


class ClusterAutoscaler:
    """The add-on runtime for one cluster-autoscaler pod."""

    def __init__(
        self,
        placement: PodPlacement,
        settings: TwinSettings,
        netmap: Netmap,
        client_factory: Callable[[], KubeClient],
        leadership: asyncio.Lock,
    ) -> None:
        self._placement = placement
        self._settings = settings
        self._netmap = netmap
        self._client_factory = client_factory
        self._leadership = leadership
        self._client: KubeClient | None = None
        self._informers: list[Informer] = []
        self._task: asyncio.Task[None] | None = None
        self._removals: dict[str, asyncio.Task[None]] = {}
        self._delayed: dict[str, asyncio.Task[None]] = {}
        #: group → target announced but not yet asked of Auto Scaling (autoscaler-slow).
        self._announced: dict[str, int] = {}
        self._unneeded_since: dict[str, float] = {}
        self._not_triggered: dict[tuple[str, str], int] = {}
        self._clock = TransitionClock()
        self._scans = 0
        self._last_scale_up = 0.0

    async def start(self) -> None:
        self._client = self._client_factory()
        timings = self._settings.timings
        network = self._settings.network
        self._aws = await asyncio.to_thread(
            AutoScaling, self._netmap, network.region, network.cluster_name
        )
        self._events = EventRecorder(self._client, COMPONENT, self._placement.node_name)
        self._pods = Informer(self._client, "/api/v1/pods")
        self._nodes = Informer(self._client, "/api/v1/nodes")
        self._budgets = Informer(self._client, "/apis/policy/v1/poddisruptionbudgets")
        self._informers = [self._pods, self._nodes, self._budgets]
        for informer in self._informers:
            informer.start()
        await asyncio.gather(
            *(i.synced(max(10.0, timings.autoscaler_scan * 10)) for i in self._informers)
        )
        self._task = asyncio.create_task(self._run(), name="cluster-autoscaler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._removals.values(), *self._delayed.values()) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for informer in self._informers:
            await informer.stop()
        if self._client is not None:
            await self._client.close()

    async def _run(self) -> None:
        async with self._leadership:
            log.info("cluster-autoscaler %s is the leader", self._placement.pod["metadata"]["name"])
            self._last_scale_up = time.monotonic()
            interval = self._settings.timings.autoscaler_scan
            while True:
                started = time.monotonic()
                try:
                    await self.scan()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cluster-autoscaler scan failed")
                await asyncio.sleep(pause_after(interval, time.monotonic() - started))

    async def scan(self) -> None:
        self._scans += 1
        groups = [self._with_announced(g) for g in await asyncio.to_thread(self._aws.discover)]
        nodes = self._nodes.list()
        pods = [p for p in self._pods.list() if not pod_finished(p)]
        on_node: dict[str, list[Obj]] = {}
        for pod in pods:
            bound = pod.get("spec", {}).get("nodeName")
            if bound:
                on_node.setdefault(bound, []).append(pod)
        group_of_instance = {iid: g.name for g in groups for iid in g.instance_ids}
        group_nodes: dict[str, list[Obj]] = {g.name: [] for g in groups}
        for node in nodes:
            group = group_of_instance.get(instance_id(node) or "")
            if group:
                group_nodes[group].append(node)
        usable = [
            NodeState(node, list(on_node.get(node["metadata"]["name"], [])))
            for node in nodes
            if node_ready(node)
            and not node.get("spec", {}).get("unschedulable")
            and not being_deleted(node)
        ]
        templates = [self._template(g, group_nodes[g.name], on_node) for g in groups]
        pending = sorted(
            (p for p in pods if unschedulable(p)),
            key=lambda p: p["metadata"].get("creationTimestamp", ""),
        )
        chosen = None
        if pending and not self._settings.has_fault("autoscaler-stuck"):
            plan = plan_scale_up(pending, usable, templates)
            chosen = plan.chosen
            if chosen is not None:
                await self._scale_up(chosen)
            for pod in pending:
                reasons = plan.unhelpable.get(pod_key(pod))
                if reasons:
                    await self._not_triggered_event(pod, reasons)
        growing = {t.group.name for t in templates if t.upcoming > 0}
        if chosen is not None:
            growing.add(chosen.template.group.name)
        candidates = await self._scale_down(groups, group_nodes, on_node, usable, growing)
        await self._write_status(groups, group_nodes, growing, candidates)

    def _with_announced(self, group: NodeGroup) -> NodeGroup:
        announced = self._announced.get(group.name)
        return replace(group, target=max(group.target, announced)) if announced else group

    @staticmethod
    def _template(
        group: NodeGroup, nodes: list[Obj], on_node: dict[str, list[Obj]]
    ) -> GroupTemplate:
        ready = sorted(
            (n for n in nodes if node_ready(n) and not being_deleted(n)),
            key=lambda n: n["metadata"]["name"],
        )
        if not ready:
            return GroupTemplate(group, None, registered=len(nodes))
        model = ready[0]
        daemons = tuple(
            p for p in on_node.get(model["metadata"]["name"], []) if is_daemonset_pod(p)
        )
        return GroupTemplate(group, template_node(model), daemons, registered=len(nodes))

    async def _scale_up(self, option: ScaleUpOption) -> None:
        group = option.template.group
        self._last_scale_up = time.monotonic()
        message = triggered_message(option)
        log.info("scale-up: %s %d->%d", group.name, group.target, option.new_target)
        if self._settings.has_fault("autoscaler-slow"):
            self._announced[group.name] = option.new_target
            self._delayed[group.name] = asyncio.create_task(self._slow_scale_up(option))
        else:
            await asyncio.to_thread(self._aws.set_desired, group.name, option.new_target)
        for pod in option.pods:
            await self._events.record(pod, "Normal", "TriggeredScaleUp", message)

    async def _slow_scale_up(self, option: ScaleUpOption) -> None:
        timings = self._settings.timings
        group = option.template.group.name
        try:
            await asyncio.sleep(timings.slow_factor * timings.max_node_provision)
            uids = {pod["metadata"].get("uid") for pod in option.pods}
            if any(
                unschedulable(p) and p["metadata"].get("uid") in uids for p in self._pods.list()
            ):
                current = next(
                    g for g in await asyncio.to_thread(self._aws.discover) if g.name == group
                )
                wanted = min(current.max_size, current.target + option.node_count)
                await asyncio.to_thread(self._aws.set_desired, group, wanted)
        finally:
            self._announced.pop(group, None)
            self._delayed.pop(group, None)

    async def _not_triggered_event(self, pod: Obj, reasons: Counter[str]) -> None:
        message = not_triggered_message(reasons)
        key = (str(pod["metadata"].get("uid")), message)
        last = self._not_triggered.get(key)
        if last is not None and self._scans - last < NOT_TRIGGERED_EVERY_SCANS:
            return
        self._not_triggered[key] = self._scans
        await self._events.record(pod, "Normal", "NotTriggerScaleUp", message)

    async def _scale_down(
        self,
        groups: list[NodeGroup],
        group_nodes: dict[str, list[Obj]],
        on_node: dict[str, list[Obj]],
        usable: list[NodeState],
        growing: set[str],
    ) -> dict[str, int]:
        """Track unneeded nodes, start removals that are due; candidates per group."""
        now = time.monotonic()
        budgets = self._budgets.list()
        unneeded: list[Candidate] = []
        for group in groups:
            if group.name in growing:
                continue
            for node in group_nodes[group.name]:
                name = node["metadata"]["name"]
                if name in self._removals or being_deleted(node) or not node_ready(node):
                    continue
                candidate = Candidate(node, group.name, tuple(on_node.get(name, [])))
                if unneeded_reason(candidate, budgets, UTILISATION_THRESHOLD) is not None:
                    continue
                others = [NodeState(s.node, list(s.pods)) for s in usable if s.name != name]
                if find_room(movable_pods(list(candidate.pods)), others):
                    unneeded.append(candidate)
        names = {c.name for c in unneeded}
        self._unneeded_since = {name: self._unneeded_since.get(name, now) for name in names}
        counts = Counter(c.group for c in unneeded)
        timings = self._settings.timings
        cooling = now - self._last_scale_up < timings.scale_down_delay_after_add
        if cooling or self._settings.has_fault("scale-down-never"):
            return dict(counts)
        ripe = [
            c for c in unneeded if now - self._unneeded_since[c.name] >= timings.scale_down_unneeded
        ]
        if not ripe:
            return dict(counts)
        deleting = Counter(
            c for c in (self._group_of_removal(n, group_nodes) for n in self._removals) if c
        )
        room = {g.name: g.target - g.min_size - deleting[g.name] for g in groups}
        for candidate in select_removals(ripe, usable, room):
            self._unneeded_since.pop(candidate.name, None)
            self._removals[candidate.name] = asyncio.create_task(
                self._remove(candidate), name=f"scale-down {candidate.name}"
            )
        return dict(counts)

    @staticmethod
    def _group_of_removal(name: str, group_nodes: dict[str, list[Obj]]) -> str | None:
        for group, nodes in group_nodes.items():
            if any(n["metadata"]["name"] == name for n in nodes):
                return group
        return None

    async def _remove(self, candidate: Candidate) -> None:
        assert self._client is not None
        name = candidate.name
        path = resource_path("v1", "nodes", name=name)
        try:
            node = await self._client.get(path)
            taints = [*(node.get("spec", {}).get("taints") or [])]
            taints.append(
                {"key": TO_BE_DELETED_TAINT, "value": str(int(time.time())), "effect": "NoSchedule"}
            )
            node = await self._client.patch(path, {"spec": {"taints": taints}})
            await self._events.record(
                node, "Normal", "ScaleDown", "marked the node as toBeDeleted/unschedulable"
            )
            if not await self._drain(name):
                await self._untaint(path)
                await self._events.record(
                    node,
                    "Warning",
                    "ScaleDownFailed",
                    "failed to drain the node, aborting ScaleDown",
                )
                return
            instance = instance_id(node)
            if instance:
                log.info("scale-down: terminating %s (%s)", instance, name)
                await asyncio.to_thread(self._aws.terminate, instance)
        except ApiError as error:
            log.warning("scale-down of %s failed: %s", name, error)
        finally:
            self._removals.pop(name, None)

    async def _drain(self, node: str) -> bool:
        """Evict the node's movable pods (retrying budget refusals) and wait until they are
        gone, within :data:`EVICTION_DEADLINE_S`."""
        assert self._client is not None
        deadline = time.monotonic() + EVICTION_DEADLINE_S
        interval = self._settings.timings.autoscaler_scan

        def remaining() -> list[Obj]:
            return movable_pods(
                [p for p in self._pods.list() if p.get("spec", {}).get("nodeName") == node]
            )

        evicted: set[str] = set()
        while time.monotonic() < deadline:
            left = remaining()
            if not left:
                return True
            for pod in left:
                uid = str(pod["metadata"].get("uid"))
                if uid in evicted or is_terminating(pod):
                    continue
                if await self._evict(pod):
                    evicted.add(uid)
            await asyncio.sleep(min(interval, 0.5))
        log.warning(
            "scale-down: pods still on %s after %.0fs: %s",
            node,
            EVICTION_DEADLINE_S,
            [pod_key(p) for p in remaining()],
        )
        return False

    async def _evict(self, pod: Obj) -> bool:
        assert self._client is not None
        meta = pod["metadata"]
        path = resource_path("v1", "pods", meta["namespace"], meta["name"])
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        }
        await self._events.record(pod, "Normal", "ScaleDown", "deleting pod for node scale down")
        try:
            await self._client.post_subresource(path, "eviction", body)
        except ApiError as error:
            if error.status == 404:
                return True
            if error.status == 429:
                return False
            raise
        return True

    async def _untaint(self, path: str) -> None:
        assert self._client is not None
        node = await self._client.get(path)
        taints = [
            t
            for t in node.get("spec", {}).get("taints") or []
            if t.get("key") != TO_BE_DELETED_TAINT
        ]
        await self._client.patch(path, {"spec": {"taints": taints}})

    async def _write_status(
        self,
        groups: list[NodeGroup],
        group_nodes: dict[str, list[Obj]],
        growing: set[str],
        candidates: dict[str, int],
    ) -> None:
        assert self._client is not None
        now = dt.datetime.now(dt.UTC)
        group_statuses = []
        for group in groups:
            nodes = group_nodes[group.name]
            ready = sum(1 for n in nodes if node_ready(n))
            group_statuses.append(
                GroupStatus(
                    name=group.name,
                    min_size=group.min_size,
                    max_size=group.max_size,
                    target=group.target,
                    counts=NodeCounts(
                        ready=ready,
                        unready=len(nodes) - ready,
                        being_deleted=sum(1 for n in nodes if being_deleted(n)),
                        unregistered=max(0, len(group.instance_ids) - len(nodes)),
                    ),
                    scale_up="InProgress" if group.name in growing else "NoActivity",
                    scale_down_candidates=candidates.get(group.name, 0),
                )
            )
        all_nodes = self._nodes.list()
        ready = sum(1 for n in all_nodes if node_ready(n))
        unready = len(all_nodes) - ready
        healthy = unready <= OK_UNREADY or unready <= MAX_UNREADY_SHARE * len(all_nodes)
        status = ClusterStatus(
            health="Healthy" if healthy else "Unhealthy",
            counts=NodeCounts(
                ready=ready,
                unready=unready,
                being_deleted=sum(1 for n in all_nodes if being_deleted(n)),
                unregistered=sum(g.counts.unregistered for g in group_statuses),
            ),
            scale_up="InProgress" if growing else "NoActivity",
            scale_down_candidates=sum(candidates.values()),
            groups=group_statuses,
        )
        body = configmap(NAMESPACE, render(status, self._clock, now), now)
        path = resource_path("v1", "configmaps", NAMESPACE, CONFIGMAP)
        try:
            await self._client.patch(path, {"metadata": body["metadata"], "data": body["data"]})
        except ApiError as error:
            if error.status != 404:
                raise
            await self._client.create(resource_path("v1", "configmaps", NAMESPACE), body)
