"""One Karpenter controller pod at work against the twin.

Every ``timings.autoscaler_scan`` seconds the leader (one pod at a time, as leader election
makes it)

- reconciles the status of every EC2NodeClass (selector terms resolved against EC2,
  :mod:`.nodeclass`) and of every NodePool (readiness from its NodeClass, resources from its
  NodeClaims, :mod:`.nodepool`);
- provisions: pending unschedulable pods are packed onto new NodeClaims of a Ready NodePool
  (:mod:`.provisioner`), each pod told ``Nominated`` (or ``FailedScheduling`` with why, e.g.
  the pool's limits); each claim is launched with RunInstances in its NodeClass's subnets and
  security groups (a claim of a NodeClass that is not Ready is not launched) and follows its
  node through Registered and Initialized (:mod:`.lifecycle`);
- consolidates: a claim's node without pods (DaemonSets aside) for the pool's
  ``consolidateAfter`` is disrupted, as many at a time as the pool's budgets allow: tainted
  ``karpenter.sh/disrupted``, drained through the eviction API (PodDisruptionBudgets hold
  it back; a node not drained in time is left), its instance terminated and the claim deleted.
  Only empty nodes are consolidated: moving pods off underutilised ones is not done.

Status is written through the status subresource, only when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from clustergate.twin.addons import PodPlacement
from clustergate.twin.aws.instance_types import BY_NAME
from clustergate.twin.aws.node_drain import drain_node, must_leave
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import cpu_millis, memory_bytes, pod_finished
from clustergate.twin.karpenter import lifecycle, nodeclass, nodepool, provisioner
from clustergate.twin.karpenter.conditions import Condition, render
from clustergate.twin.karpenter.crds import AWS_GROUP, CORE_GROUP, VERSION
from clustergate.twin.karpenter.ec2 import Ec2
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path
from clustergate.twin.netmap import Netmap
from clustergate.twin.pacing import pause_after
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)
Obj = dict[str, Any]
NODECLASSES = f"{AWS_GROUP}/{VERSION}"
CORE = f"{CORE_GROUP}/{VERSION}"
COMPONENT = "karpenter"
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}
#: How long a consolidation waits for PodDisruptionBudgets to let the node's pods go.
DRAIN_LIMIT_S = 60.0


class Karpenter:
    """The add-on runtime for one Karpenter controller pod."""

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
        self._ec2: Ec2 | None = None
        self._task: asyncio.Task[None] | None = None
        #: pod key -> the NodeClaim it was nominated for (until the claim is Initialized)
        self._nominated: dict[str, str] = {}
        #: claim name -> when its node was first seen empty
        self._empty_since: dict[str, float] = {}
        self._disrupting: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        self._client = self._client_factory()
        self._events = EventRecorder(self._client, COMPONENT)
        network = self._settings.network
        self._ec2 = await asyncio.to_thread(
            Ec2, self._netmap, network.region, network.cluster_name, network.kubernetes_version
        )
        self._task = asyncio.create_task(self._run(), name="karpenter")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._disrupting.values()) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()

    async def _run(self) -> None:
        async with self._leadership:
            log.info("karpenter %s is the leader", self._placement.pod["metadata"]["name"])
            interval = self._settings.timings.autoscaler_scan
            while True:
                started = time.monotonic()
                try:
                    await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("karpenter reconcile failed")
                await asyncio.sleep(pause_after(interval, time.monotonic() - started))

    async def reconcile(self) -> None:
        assert self._client is not None
        assert self._ec2 is not None
        classes = (await self._client.list(f"/apis/{NODECLASSES}/ec2nodeclasses"))["items"]
        by_name: dict[str, Obj] = {}
        for node_class in classes:
            resolved = await asyncio.to_thread(self._ec2.resolve, node_class.get("spec") or {})
            status = {
                **nodeclass.status(resolved),
                "conditions": render(
                    _conditions(node_class),
                    nodeclass.conditions(resolved),
                    node_class["metadata"].get("generation", 1),
                ),
            }
            by_name[node_class["metadata"]["name"]] = await self._write_status(
                NODECLASSES, "ec2nodeclasses", node_class, status
            )
        claims = (await self._client.list(f"/apis/{CORE}/nodeclaims"))["items"]
        nodes = (await self._client.list("/api/v1/nodes"))["items"]
        pods = [
            p for p in (await self._client.list("/api/v1/pods"))["items"] if not pod_finished(p)
        ]
        by_provider = {n.get("spec", {}).get("providerID"): n for n in nodes}
        for claim in claims:
            await self._claim(claim, by_name, by_provider)
        pools = await self._pools(claims, by_name)
        await self._provision(pools, claims, pods)
        await self._consolidate(pools, claims, by_provider, pods)

    async def _pools(self, claims: list[Obj], by_name: dict[str, Obj]) -> list[Obj]:
        assert self._client is not None
        pools = []
        for pool in (await self._client.list(f"/apis/{CORE}/nodepools"))["items"]:
            name = pool["metadata"]["name"]
            ref = pool["spec"]["template"]["spec"]["nodeClassRef"]
            node_class = by_name.get(ref["name"]) if ref.get("kind") == "EC2NodeClass" else None
            mine = [
                c
                for c in claims
                if c["metadata"].get("labels", {}).get(nodepool.NODEPOOL_LABEL) == name
            ]
            status = {
                "resources": nodepool.resources(mine),
                "conditions": render(
                    _conditions(pool),
                    nodepool.conditions(node_class),
                    pool["metadata"].get("generation", 1),
                ),
            }
            if node_class is not None:
                status["nodeClassObservedGeneration"] = node_class["metadata"].get("generation", 1)
            written = await self._write_status(CORE, "nodepools", pool, status)
            pools.append({**written, "nodeClass": node_class})
        return pools

    # --- NodeClaims ----------------------------------------------------------------------

    async def _claim(self, claim: Obj, classes: dict[str, Obj], by_provider: dict) -> None:
        """Launch a claim not yet launched; follow a launched one to its node."""
        status = dict(claim.get("status") or {})
        launched = _condition(claim, "Launched")
        if claim["metadata"].get("deletionTimestamp"):
            return
        if launched is None or launched.get("status") != "True":
            ref = claim["spec"]["nodeClassRef"]
            node_class = classes.get(ref["name"])
            if node_class is None or not _true(node_class, "Ready"):
                outcome = Condition(
                    "Launched",
                    False,
                    "NodeClassNotReady",
                    f'resolving nodeclass, EC2NodeClass "{ref["name"]}" is not ready',
                )
            else:
                outcome, launched_status = await self._launch(claim, node_class)
                status.update(launched_status)
        else:
            outcome = Condition("Launched", True)
        node = by_provider.get(status.get("providerID")) if status.get("providerID") else None
        if node is not None:
            status["nodeName"] = node["metadata"]["name"]
        conditions = lifecycle.claim_conditions(outcome, node)
        if all(c.status for c in conditions):
            for pod, name in list(self._nominated.items()):
                if name == claim["metadata"]["name"]:
                    del self._nominated[pod]
        status["conditions"] = render(
            _conditions(claim), conditions, claim["metadata"].get("generation", 1)
        )
        await self._write_status(CORE, "nodeclaims", claim, status)

    async def _launch(self, claim: Obj, node_class: Obj) -> tuple[Condition, Obj]:
        assert self._ec2 is not None
        name = claim["metadata"]["name"]
        labels = claim["metadata"].get("labels") or {}
        kind = labels.get("node.kubernetes.io/instance-type", "m5.large")
        try:
            instance = await asyncio.to_thread(
                self._ec2.launch, name, labels.get(nodepool.NODEPOOL_LABEL, ""), node_class, kind
            )
        except Exception as error:  # EC2's refusal is the claim's condition, as upstream
            return Condition("Launched", False, "LaunchFailed", str(error)), {}
        zone = instance["Placement"]["AvailabilityZone"]
        size = BY_NAME.get(kind, BY_NAME["m5.large"])
        capacity = {
            "cpu": str(size.cpu_millis // 1000),
            "memory": f"{size.memory_mib}Mi",
            "pods": str(size.max_pods),
            "ephemeral-storage": "20Gi",
        }
        await self._events.record(
            claim,
            "Normal",
            "Launched",
            "Status condition transitioned, Type: Launched, Status: True",
        )
        return Condition("Launched", True), {
            "providerID": f"aws:///{zone}/{instance['InstanceId']}",
            "imageID": instance["ImageId"],
            "capacity": capacity,
            "allocatable": capacity,
        }

    # --- provisioning --------------------------------------------------------------------

    async def _provision(self, pools: list[Obj], claims: list[Obj], pods: list[Obj]) -> None:
        assert self._client is not None
        live = {c["metadata"]["name"] for c in claims}
        self._nominated = {p: c for p, c in self._nominated.items() if c in live}
        pending = [p for p in pods if _unschedulable(p) and _key(p) not in self._nominated]
        if not pending:
            return
        ready = [p for p in pools if _true(p, "Ready")]
        ready.sort(key=lambda p: (-(p["spec"].get("weight") or 0), p["metadata"]["name"]))
        daemonsets = (await self._client.list("/apis/apps/v1/daemonsets"))["items"]
        overhead = _overhead(daemonsets)
        by_key = {_key(p): p for p in pending}
        left = [_pending(p) for p in pending]
        why: dict[str, str] = {}
        for pool in ready:
            template = pool["spec"]["template"]
            result = provisioner.plan(
                left,
                pool["metadata"]["name"],
                template["spec"].get("requirements") or [],
                pool["spec"].get("limits") or {},
                (pool.get("status") or {}).get("resources") or {},
                overhead,
            )
            for planned in result.nodes:
                name = await self._create_claim(pool, planned)
                for key in planned.pods:
                    self._nominated[key] = name
                    await self._events.record(
                        by_key[key],
                        "Normal",
                        "Nominated",
                        f"Pod should schedule on: nodeclaim/{name}",
                    )
            why.update(result.unplaced)
            left = [p for p in left if p.key in result.unplaced]
        for pod in left:
            message = why.get(pod.key) or "Failed to schedule pod, no ready NodePool"
            await self._events.record(by_key[pod.key], "Warning", "FailedScheduling", message)

    async def _create_claim(self, pool: Obj, planned: provisioner.PlannedNode) -> str:
        assert self._client is not None
        pool_name = pool["metadata"]["name"]
        template = pool["spec"]["template"]
        name = f"{pool_name}-{secrets.token_hex(3)[:5]}"
        kind = planned.instance_type.name
        body = {
            "apiVersion": CORE,
            "kind": "NodeClaim",
            "metadata": {
                "name": name,
                "labels": {
                    **((template.get("metadata") or {}).get("labels") or {}),
                    nodepool.NODEPOOL_LABEL: pool_name,
                    "node.kubernetes.io/instance-type": kind,
                    "karpenter.sh/capacity-type": "on-demand",
                },
                "ownerReferences": [
                    {
                        "apiVersion": CORE,
                        "kind": "NodePool",
                        "name": pool_name,
                        "uid": pool["metadata"]["uid"],
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "nodeClassRef": template["spec"]["nodeClassRef"],
                "requirements": [
                    *(template["spec"].get("requirements") or []),
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [kind]},
                ],
                "resources": {"requests": {"pods": str(len(planned.pods))}},
                "expireAfter": template["spec"].get("expireAfter", "720h"),
            },
        }
        created = await self._client.create(f"/apis/{CORE}/nodeclaims", body)
        log.info(
            "karpenter: created nodeclaim %s (%s) for %d pod(s)", name, kind, len(planned.pods)
        )
        return str(created["metadata"]["name"])

    # --- consolidation -------------------------------------------------------------------

    async def _consolidate(
        self, pools: list[Obj], claims: list[Obj], by_provider: dict, pods: list[Obj]
    ) -> None:
        busy: set[str] = set()
        for pod in pods:
            if must_leave(pod) and pod.get("spec", {}).get("nodeName"):
                busy.add(pod["spec"]["nodeName"])
        now = time.monotonic()
        for pool in pools:
            name = pool["metadata"]["name"]
            disruption = pool["spec"].get("disruption") or {}
            after = lifecycle.duration_s(disruption.get("consolidateAfter"))
            mine = [
                c
                for c in claims
                if c["metadata"].get("labels", {}).get(nodepool.NODEPOOL_LABEL) == name
            ]
            allowed = lifecycle.allowed_disruptions(disruption.get("budgets") or [], len(mine))
            allowed -= sum(1 for c in mine if c["metadata"]["name"] in self._disrupting)
            for claim in mine:
                claim_name = claim["metadata"]["name"]
                node = by_provider.get((claim.get("status") or {}).get("providerID"))
                if (
                    node is None
                    or not _true(claim, "Initialized")
                    or claim_name in self._disrupting
                ):
                    continue
                if node["metadata"]["name"] in busy:
                    self._empty_since.pop(claim_name, None)
                    continue
                since = self._empty_since.setdefault(claim_name, now)
                if after is None or now - since < after or allowed <= 0:
                    continue
                allowed -= 1
                self._disrupting[claim_name] = asyncio.create_task(
                    self._disrupt(claim, node), name=f"karpenter-disrupt-{claim_name}"
                )

    async def _disrupt(self, claim: Obj, node: Obj) -> None:
        assert self._client is not None
        assert self._ec2 is not None
        name = claim["metadata"]["name"]
        try:
            node_path = resource_path("v1", "nodes", None, node["metadata"]["name"])
            before = list(node.get("spec", {}).get("taints") or [])
            await self._client.patch(node_path, {"spec": {"taints": [*before, DISRUPTED_TAINT]}})
            await self._events.record(
                claim, "Normal", "DisruptionTerminating", "Disrupting NodeClaim: Empty"
            )
            left = await drain_node(
                self._client, node["metadata"]["name"], force=False, limit=DRAIN_LIMIT_S
            )
            if left:  # budgets held pods back: give the command up and the node back
                log.warning("karpenter: %s not drained (%s); not terminated", name, left)
                await self._client.patch(node_path, {"spec": {"taints": before}})
                return
            instance_id = str(claim["status"]["providerID"]).rsplit("/", 1)[-1]
            await asyncio.to_thread(self._ec2.terminate, instance_id)
            with contextlib.suppress(ApiError):
                await self._client.delete(resource_path(CORE, "nodeclaims", None, name))
            log.info("karpenter: consolidated nodeclaim %s (empty)", name)
        except Exception:
            log.exception("karpenter: disrupting %s failed", name)
        finally:
            self._disrupting.pop(name, None)
            self._empty_since.pop(name, None)

    async def _write_status(self, group_version: str, plural: str, obj: Obj, status: Obj) -> Obj:
        assert self._client is not None
        if (obj.get("status") or {}) == status:
            return obj
        path = resource_path(group_version, plural, None, obj["metadata"]["name"])
        try:
            return await self._client.update_status(path, {**obj, "status": status})
        except ApiError as error:
            if error.status in (404, 409):
                return {**obj, "status": status}
            raise


def _conditions(obj: Obj) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in _conditions(obj) if c.get("type") == kind), None)


def _true(obj: Obj, kind: str) -> bool:
    found = _condition(obj, kind)
    return found is not None and found.get("status") == "True"


def _key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _unschedulable(pod: Obj) -> bool:
    if pod.get("spec", {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    scheduled = next(
        (
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == "PodScheduled"
        ),
        None,
    )
    return bool(
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )


def _requests(spec: Obj) -> tuple[int, int]:
    cpu = memory = 0
    for container in spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += cpu_millis(requests.get("cpu", "0"))
        memory += memory_bytes(requests.get("memory", "0"))
    return cpu, memory


def _pending(pod: Obj) -> provisioner.PendingPod:
    cpu, memory = _requests(pod.get("spec") or {})
    return provisioner.PendingPod(_key(pod), cpu, memory)


def _overhead(daemonsets: list[Obj]) -> provisioner.PendingPod:
    """What the DaemonSets will run on a new node (their node selectors aside)."""
    cpu = memory = 0
    for daemonset in daemonsets:
        pod_cpu, pod_memory = _requests(daemonset["spec"]["template"].get("spec") or {})
        cpu += pod_cpu
        memory += pod_memory
    return provisioner.PendingPod("daemonsets", cpu, memory)
