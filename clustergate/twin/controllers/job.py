"""The Job controller: run pods until completions succeed or backoffLimit is exceeded."""

from __future__ import annotations

import asyncio

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import (
    Obj,
    condition,
    controller_ref,
    is_terminating,
    now,
    owned_by,
    owner_reference,
    parse_time,
    pod_active,
    pod_ready,
    set_condition,
    timestamp,
)
from clustergate.twin.controllers.replicaset import PendingChanges
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings


def job_finished(job: Obj) -> bool:
    return any(
        (condition(job, kind) or {}).get("status") == "True" for kind in ("Complete", "Failed")
    )


def wanted_active(spec: Obj, succeeded: int, active: int) -> int:
    """How many pods should run now (getNewActivePods with completions/parallelism)."""
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if completions is None:
        return 0 if succeeded else parallelism
    return max(0, min(parallelism, int(completions) - succeeded))


class JobController(Controller):
    name = "job-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.jobs = informers.get("/apis/batch/v1/jobs")
        self.pods = informers.get("/api/v1/pods")
        self.events = EventRecorder(client, "job-controller")
        self.pending = PendingChanges()
        self.jobs.add_handler(lambda kind, job, old: self.queue.add(object_key(job)))
        self.pods.add_handler(self._on_pod)

    def keys(self) -> list[str]:
        return [object_key(job) for job in self.jobs.list()]

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "Job":
            self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.pending.forget(key)
            return
        if is_terminating(job):
            return
        if job_finished(job):
            await self._expire(key, job)
            return
        job = {**job, "apiVersion": "batch/v1", "kind": "Job"}
        spec = job["spec"]
        pods = [p for p in self.pods.list(job["metadata"]["namespace"]) if owned_by(p, job)]
        succeeded = sum(1 for p in pods if p.get("status", {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed")
        active = [p for p in pods if pod_active(p)]
        in_flight = self.pending.unseen_creates(key, {p["metadata"]["name"] for p in pods})
        status: Obj = dict(job.get("status") or {})
        status.setdefault("startTime", timestamp())
        conditions = list(status.get("conditions") or [])
        completions = spec.get("completions")
        done = succeeded >= int(completions) if completions is not None else succeeded > 0
        if failed > int(spec.get("backoffLimit", 6)):
            conditions = set_condition(
                conditions,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
            await self._delete_active(active)
            active = []
            await self.events.record(
                job,
                "Warning",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif done and not active:
            conditions = set_condition(
                conditions,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
            status["completionTime"] = timestamp()
            await self.events.record(job, "Normal", "Completed", "Job completed")
        elif not spec.get("suspend"):
            missing = wanted_active(spec, succeeded, len(active)) - len(active) - in_flight
            if missing > 0:
                await self._create(job, key, missing)
        status.update(
            {
                "active": len(active),
                "succeeded": succeeded,
                "failed": failed,
                "ready": sum(1 for p in active if pod_ready(p)),
                "conditions": conditions,
            }
        )
        if not status["conditions"]:
            del status["conditions"]
        if status == (job.get("status") or {}):
            return
        meta = job["metadata"]
        try:
            await self.client.patch_status(
                resource_path("batch/v1", "jobs", meta["namespace"], meta["name"]),
                {"status": status},
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def _expire(self, key: str, job: Obj) -> None:
        """The TTL-after-finished controller: delete a finished Job (and, in the background,
        its pods) ttlSecondsAfterFinished after it finished."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = [
            parse_time(c.get("lastTransitionTime"))
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        ]
        moment = max((f for f in finished if f is not None), default=None)
        left = float(ttl) - ((now() - moment).total_seconds() if moment else 0.0)
        if left > 0:
            self.queue.add_after(key, left + 0.1)
            return
        meta = job["metadata"]
        await self.client.delete(
            resource_path("batch/v1", "jobs", meta["namespace"], meta["name"]),
            propagation_policy="Background",
            uid=meta["uid"],
        )

    async def _create(self, job: Obj, key: str, count: int) -> None:
        meta = job["metadata"]
        template = job["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": meta["uid"],
                "batch.kubernetes.io/job-name": meta["name"],
                "controller-uid": meta["uid"],
                "job-name": meta["name"],
            }
        )
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [owner_reference(job)],
            },
            "spec": template["spec"],
        }

        async def create_one() -> None:
            created = await self.client.create(resource_path("v1", "pods", meta["namespace"]), body)
            self.pending.expect_created(key, created["metadata"]["name"])
            await self.events.record(
                job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}"
            )

        await asyncio.gather(*(create_one() for _ in range(count)))

    async def _delete_active(self, pods: list[Obj]) -> None:
        await asyncio.gather(
            *(
                self.client.delete(
                    resource_path("v1", "pods", p["metadata"]["namespace"], p["metadata"]["name"])
                )
                for p in pods
            )
        )
