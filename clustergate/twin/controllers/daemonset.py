"""The DaemonSet controller: one pod per eligible node, bound by node affinity."""

from __future__ import annotations

import asyncio
import json
import time

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import (
    Obj,
    controller_ref,
    is_terminating,
    node_matches_pod_affinity,
    owned_by,
    owner_reference,
    pod_ready,
    scaled_value,
    untolerated_taint,
)
from clustergate.twin.controllers.replicaset import pod_available
from clustergate.twin.controllers.rollout import template_hash
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

REVISION_LABEL = "controller-revision-hash"
_PENDING_SECONDS = 30.0


def daemon_tolerations(spec: Obj) -> list[Obj]:
    """util.AddOrUpdateDaemonPodTolerations: what every DaemonSet pod tolerates."""
    wanted = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    if spec.get("hostNetwork"):
        wanted.append(("node.kubernetes.io/network-unavailable", "NoSchedule"))
    tolerations = list(spec.get("tolerations") or [])
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return tolerations


def should_run(template_spec: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a new pod there, may an existing pod continue) for one node."""
    if is_terminating(node):
        return False, False
    pod = {"spec": {**template_spec, "tolerations": daemon_tolerations(template_spec)}}
    if not node_matches_pod_affinity(pod, node):
        return False, False
    tolerations = pod["spec"]["tolerations"]
    if untolerated_taint(node, tolerations, ("NoExecute",)):
        return False, False
    if untolerated_taint(node, tolerations, ("NoSchedule",)):
        return False, True
    return True, True


def bind_to_node(template_spec: Obj, node_name: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the pod's required node affinity becomes one
    term matching the node by metadata.name; the scheduler does the binding."""
    spec = json.loads(json.dumps(template_spec))
    affinity = spec.setdefault("affinity", {}) or {}
    spec["affinity"] = affinity
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
        ]
    }
    spec["tolerations"] = daemon_tolerations(spec)
    return spec


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.sets = informers.get("/apis/apps/v1/daemonsets")
        self.pods = informers.get("/api/v1/pods")
        self.nodes = informers.get("/api/v1/nodes")
        self.events = EventRecorder(client, "daemonset-controller")
        #: DaemonSet key -> node -> deadline of a pod we created that the watch has not shown.
        self._creating: dict[str, dict[str, float]] = {}
        self.sets.add_handler(lambda kind, ds, old: self.queue.add(object_key(ds)))
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def keys(self) -> list[str]:
        return [object_key(ds) for ds in self.sets.list()]

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "DaemonSet":
            self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")

    def _on_node(self, kind: str, node: Obj, old: Obj | None) -> None:
        if (
            old is None
            or kind == "DELETED"
            or old.get("spec") != node.get("spec")
            or (old["metadata"].get("labels") != node["metadata"].get("labels"))
        ):
            for key in self.keys():
                self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        ds = self.sets.get(key)
        if ds is None:
            self._creating.pop(key, None)
            return
        if is_terminating(ds):
            return
        template = ds["spec"]["template"]
        current_hash = template_hash(template)
        pods_by_node: dict[str, list[Obj]] = {}
        for pod in self.pods.list(ds["metadata"]["namespace"]):
            if owned_by(pod, ds) and not is_terminating(pod):
                node_name = _target_node(pod)
                pods_by_node.setdefault(node_name, []).append(pod)
        creating = self._creating.setdefault(key, {})
        moment = time.monotonic()
        for node_name in [n for n, due in creating.items() if n in pods_by_node or due < moment]:
            del creating[node_name]
        to_create: list[str] = []
        to_delete: list[Obj] = []
        eligible: list[str] = []
        misscheduled = 0
        for node in self.nodes.list():
            node_name = node["metadata"]["name"]
            run, keep = should_run(template["spec"], node)
            pods = pods_by_node.pop(node_name, [])
            failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
            healthy = [p for p in pods if p not in failed]
            to_delete.extend(failed)
            if run:
                eligible.append(node_name)
            if run and not healthy and node_name not in creating:
                to_create.append(node_name)
            elif healthy and not keep:
                misscheduled += 1
                to_delete.extend(healthy)
            elif len(healthy) > 1:
                to_delete.extend(
                    sorted(healthy, key=lambda p: p["metadata"]["creationTimestamp"])[1:]
                )
        for orphaned in pods_by_node.values():  # pods for nodes that are gone
            to_delete.extend(orphaned)
        to_delete.extend(self._rolling_victims(ds, current_hash, eligible, to_delete))
        await asyncio.gather(
            *(self._create(ds, key, node_name, current_hash) for node_name in to_create),
            *(self._delete(ds, pod) for pod in to_delete),
        )
        await self._update_status(ds, current_hash, eligible, misscheduled)

    def _rolling_victims(
        self, ds: Obj, current_hash: str, eligible: list[str], doomed: list[Obj]
    ) -> list[Obj]:
        strategy = ds["spec"].get("updateStrategy") or {"type": "RollingUpdate"}
        if strategy.get("type") == "OnDelete":
            return []
        max_unavailable = (
            scaled_value(
                (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1),
                len(eligible),
                round_up=True,
            )
            or 1
        )
        doomed_uids = {p["metadata"]["uid"] for p in doomed}
        by_node = self._pods_by_node(ds)
        unavailable = 0
        outdated: list[Obj] = []
        for node_name in eligible:
            pods = [
                p for p in by_node.get(node_name, []) if p["metadata"]["uid"] not in doomed_uids
            ]
            min_ready = int(ds["spec"].get("minReadySeconds") or 0)
            if not any(pod_available(p, min_ready) for p in pods):
                unavailable += 1
            outdated.extend(
                p
                for p in pods
                if p["metadata"].get("labels", {}).get(REVISION_LABEL) != current_hash
            )
        room = max(0, max_unavailable - unavailable)
        not_ready = [p for p in outdated if not pod_ready(p)]
        ready = [p for p in outdated if pod_ready(p)]
        return not_ready + ready[:room]

    def _pods_by_node(self, ds: Obj) -> dict[str, list[Obj]]:
        result: dict[str, list[Obj]] = {}
        for pod in self.pods.list(ds["metadata"]["namespace"]):
            if owned_by(pod, ds) and not is_terminating(pod):
                result.setdefault(_target_node(pod), []).append(pod)
        return result

    async def _create(self, ds: Obj, key: str, node_name: str, current_hash: str) -> None:
        meta = ds["metadata"]
        template = ds["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels[REVISION_LABEL] = current_hash
        labels["pod-template-generation"] = str(meta.get("generation", 1))
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [
                    owner_reference({**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"})
                ],
            },
            "spec": bind_to_node(template["spec"], node_name),
        }
        self._creating.setdefault(key, {})[node_name] = time.monotonic() + _PENDING_SECONDS
        try:
            created = await self.client.create(resource_path("v1", "pods", meta["namespace"]), body)
        except ApiError as error:
            self._creating.get(key, {}).pop(node_name, None)
            await self.events.record(
                {**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"},
                "Warning",
                "FailedCreate",
                f"Error creating: {error.message}",
            )
            raise
        await self.events.record(
            {**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"},
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
        )

    async def _delete(self, ds: Obj, pod: Obj) -> None:
        meta = pod["metadata"]
        await self.client.delete(resource_path("v1", "pods", meta["namespace"], meta["name"]))
        await self.events.record(
            {**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"},
            "Normal",
            "SuccessfulDelete",
            f"Deleted pod: {meta['name']}",
        )

    async def _update_status(
        self, ds: Obj, current_hash: str, eligible: list[str], misscheduled: int
    ) -> None:
        by_node = self._pods_by_node(ds)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        scheduled = [n for n in eligible if by_node.get(n)]
        first = {n: by_node[n][0] for n in scheduled}
        available = sum(1 for p in first.values() if pod_available(p, min_ready))
        status = {
            "desiredNumberScheduled": len(eligible),
            "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": misscheduled,
            "numberReady": sum(1 for p in first.values() if pod_ready(p)),
            "numberAvailable": available,
            "numberUnavailable": len(eligible) - available,
            "updatedNumberScheduled": sum(
                1
                for p in first.values()
                if p["metadata"].get("labels", {}).get(REVISION_LABEL) == current_hash
            ),
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        current = ds.get("status") or {}
        if all(current.get(k, 0) == v for k, v in status.items()):
            return
        meta = ds["metadata"]
        try:
            await self.client.patch_status(
                resource_path("apps/v1", "daemonsets", meta["namespace"], meta["name"]),
                {"status": status},
            )
        except ApiError as error:
            if error.status != 404:
                raise


def _target_node(pod: Obj) -> str:
    """The node a DaemonSet pod is for: its nodeName, else its node-affinity term."""
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    affinity = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return ""
