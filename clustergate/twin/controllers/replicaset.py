"""The ReplicaSet controller: keeps spec.replicas pods of the template alive."""

from __future__ import annotations

import asyncio
import time

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import (
    Obj,
    condition,
    controller_ref,
    is_terminating,
    labels_match,
    now,
    owned_by,
    owner_reference,
    parse_time,
    pod_active,
    pod_ready,
    set_condition,
)
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

#: How long a create or delete we asked for may stay unobserved before we stop waiting for
#: the watch to show it (client-go's ControllerExpectations TTL is 5 minutes).
_EXPECTATION_SECONDS = 30.0


def pod_available(pod: Obj, min_ready_seconds: int) -> bool:
    if not pod_ready(pod) or is_terminating(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and (now() - since).total_seconds() >= min_ready_seconds


def deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    """ActivePods ordering: unscheduled, then pending, then not ready, then newest go first."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
    return (
        1 if pod["spec"].get("nodeName") else 0,
        phase_rank.get(pod.get("status", {}).get("phase", "Pending"), 0),
        1 if pod_ready(pod) else 0,
        _negated(pod["metadata"].get("creationTimestamp", "")),
    )


def _negated(stamp: str) -> str:
    """Sort newest first under an ascending sort."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in stamp)


class PendingChanges:
    """Pods we created or deleted that the watch has not shown yet (ControllerExpectations)."""

    def __init__(self) -> None:
        self.created: dict[str, dict[str, float]] = {}
        self.deleted: dict[str, dict[str, float]] = {}

    def expect_created(self, key: str, name: str) -> None:
        self.created.setdefault(key, {})[name] = time.monotonic() + _EXPECTATION_SECONDS

    def expect_deleted(self, key: str, uid: str) -> None:
        self.deleted.setdefault(key, {})[uid] = time.monotonic() + _EXPECTATION_SECONDS

    def unseen_creates(self, key: str, seen_names: set[str]) -> int:
        pending = self.created.get(key, {})
        moment = time.monotonic()
        for name in [n for n, due in pending.items() if n in seen_names or due < moment]:
            del pending[name]
        return len(pending)

    def unseen_deletes(self, key: str, live_uids: set[str]) -> set[str]:
        pending = self.deleted.get(key, {})
        moment = time.monotonic()
        for uid in [u for u, due in pending.items() if u not in live_uids or due < moment]:
            del pending[uid]
        return set(pending)

    def forget(self, key: str) -> None:
        self.created.pop(key, None)
        self.deleted.pop(key, None)


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 2

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.sets = informers.get("/apis/apps/v1/replicasets")
        self.pods = informers.get("/api/v1/pods")
        self.events = EventRecorder(client, "replicaset-controller")
        self.pending = PendingChanges()
        self.sets.add_handler(lambda kind, rs, old: self.queue.add(object_key(rs)))
        self.pods.add_handler(self._on_pod)

    def keys(self) -> list[str]:
        return [object_key(rs) for rs in self.sets.list()]

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        for candidate in (pod, old):
            ref = controller_ref(candidate) if candidate else None
            if ref and ref.get("kind") == "ReplicaSet":
                self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")
        if pod_ready(pod) and (old is None or not pod_ready(old)):
            self._requeue_for_min_ready(pod)

    def _requeue_for_min_ready(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        rs = self.sets.get(key)
        seconds = int((rs or {}).get("spec", {}).get("minReadySeconds") or 0)
        if seconds:
            self.queue.add_after(key, seconds + 0.1)

    def owned_pods(self, rs: Obj) -> list[Obj]:
        return [p for p in self.pods.list(rs["metadata"]["namespace"]) if owned_by(p, rs)]

    async def reconcile(self, key: str) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.pending.forget(key)
            return
        rs = {**rs, "apiVersion": "apps/v1", "kind": "ReplicaSet"}
        pods = self.owned_pods(rs)
        deleting = self.pending.unseen_deletes(
            key, {p["metadata"]["uid"] for p in pods_alive(pods)}
        )
        active = [p for p in pods if pod_active(p) and p["metadata"]["uid"] not in deleting]
        in_flight = self.pending.unseen_creates(key, {p["metadata"]["name"] for p in pods})
        if not is_terminating(rs):
            wanted = int(rs["spec"].get("replicas", 1))
            diff = len(active) + in_flight - wanted
            try:
                if diff < 0:
                    await self._create(rs, key, -diff)
                elif diff > 0 and not in_flight:
                    await self._delete(key, sorted(active, key=deletion_rank)[:diff])
            except ApiError as error:
                reason = "FailedCreate" if diff < 0 else "FailedDelete"
                await self._update_status(rs, active, (reason, error.message))
                raise
        await self._update_status(rs, [p for p in active])

    async def _create(self, rs: Obj, key: str, count: int) -> None:
        template = rs["spec"]["template"]
        meta = rs["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [owner_reference(rs)],
            },
            "spec": template["spec"],
        }
        path = resource_path("v1", "pods", meta["namespace"])

        async def create_one() -> None:
            try:
                created = await self.client.create(path, body)
            except ApiError as error:
                await self.events.record(
                    rs, "Warning", "FailedCreate", f"Error creating: {error.message}"
                )
                raise
            self.pending.expect_created(key, created["metadata"]["name"])
            await self.events.record(
                rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}"
            )

        results = await asyncio.gather(
            *(create_one() for _ in range(count)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    async def _delete(self, key: str, pods: list[Obj]) -> None:
        async def delete_one(pod: Obj) -> None:
            meta = pod["metadata"]
            self.pending.expect_deleted(key, meta["uid"])
            await self.client.delete(resource_path("v1", "pods", meta["namespace"], meta["name"]))
            rs = self.sets.get(key)
            if rs is not None:
                await self.events.record(
                    {**rs, "apiVersion": "apps/v1", "kind": "ReplicaSet"},
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {meta['name']}",
                )

        await asyncio.gather(*(delete_one(pod) for pod in pods))

    async def _update_status(
        self, rs: Obj, active: list[Obj], failure: tuple[str, str] | None = None
    ) -> None:
        """Counts, and the ReplicaFailure condition upstream's calculateStatus keeps: set
        (reason FailedCreate/FailedDelete, the API's message) while managing replicas fails,
        removed once it works again."""
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        selector = rs["spec"].get("selector")
        current = rs.get("status") or {}
        conditions = list(current.get("conditions") or [])
        if failure is not None:
            conditions = set_condition(conditions, "ReplicaFailure", "True", *failure)
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active if labels_match(selector, p["metadata"].get("labels") or {})
            ),
            "readyReplicas": sum(1 for p in active if pod_ready(p)),
            "availableReplicas": sum(1 for p in active if pod_available(p, min_ready)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        unchanged = all(current.get(k, 0) == v for k, v in status.items())
        if unchanged and (current.get("conditions") or []) == conditions:
            return
        status["conditions"] = conditions
        meta = rs["metadata"]
        path = resource_path("apps/v1", "replicasets", meta["namespace"], meta["name"])
        try:
            await self.client.patch_status(path, {"status": status})
        except ApiError as error:
            if error.status != 404:
                raise


def pods_alive(pods: list[Obj]) -> list[Obj]:
    """Pods not yet marked for deletion (a pending delete is seen once they are)."""
    return [p for p in pods if not is_terminating(p)]
