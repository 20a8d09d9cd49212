"""The Deployment controller: ReplicaSets per template, rolled with maxSurge/maxUnavailable."""

from __future__ import annotations

import json

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
    set_condition,
    timestamp,
)
from clustergate.twin.controllers.rollout import (
    HASH_LABEL,
    REVISION,
    ReplicaSetView,
    new_replicas,
    scale_down_old,
    surge_and_unavailable,
    template_hash,
    template_without_hash,
)
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _view(rs: Obj) -> ReplicaSetView:
    return ReplicaSetView(
        name=rs["metadata"]["name"],
        replicas=int(rs["spec"].get("replicas", 0)),
        available=int((rs.get("status") or {}).get("availableReplicas", 0)),
        revision=_revision(rs),
    )


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 2

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.deployments = informers.get("/apis/apps/v1/deployments")
        self.sets = informers.get("/apis/apps/v1/replicasets")
        self.events = EventRecorder(client, "deployment-controller")
        self.deployments.add_handler(lambda kind, d, old: self.queue.add(object_key(d)))
        self.sets.add_handler(self._on_replicaset)

    def keys(self) -> list[str]:
        return [object_key(d) for d in self.deployments.list()]

    def _on_replicaset(self, kind: str, rs: Obj, old: Obj | None) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    async def reconcile(self, key: str) -> None:
        deployment = self.deployments.get(key)
        if deployment is None or is_terminating(deployment):
            return
        namespace = deployment["metadata"]["namespace"]
        sets = [rs for rs in self.sets.list(namespace) if owned_by(rs, deployment)]
        canonical = template_without_hash(deployment["spec"]["template"])
        new = next(
            (rs for rs in sets if template_without_hash(rs["spec"]["template"]) == canonical),
            None,
        )
        old = [rs for rs in sets if rs is not new]
        if deployment["spec"].get("paused"):
            await self._sync_status(deployment, new, sets)
            return
        if new is None:
            new = await self._create_replicaset(deployment, old)
            if new is None:
                return
            sets = [*old, new]
        else:
            await self._ensure_revision(deployment, new, old)
        strategy = deployment["spec"].get("strategy") or {"type": "RollingUpdate"}
        replicas = int(deployment["spec"].get("replicas", 1))
        if strategy.get("type") == "Recreate":
            await self._recreate(deployment, new, old, replicas)
        else:
            await self._roll(deployment, new, old, replicas, strategy)
        await self._cleanup(deployment, old)
        await self._sync_status(deployment, new, sets)

    async def _roll(
        self, deployment: Obj, new: Obj, old: list[Obj], replicas: int, strategy: Obj
    ) -> None:
        new_view = _view(new)
        old_views = [_view(rs) for rs in old]
        if not any(v.replicas for v in old_views):
            target = replicas
        else:
            target = min(
                new_replicas(replicas, strategy, new_view, [new_view, *old_views]), replicas
            )
        if target != new_view.replicas:
            await self._scale(deployment, new, target)
            new_view.replicas = target
        for rs, count in zip(
            old, scale_down_old(replicas, strategy, new_view, old_views).values(), strict=True
        ):
            if count != int(rs["spec"].get("replicas", 0)):
                await self._scale(deployment, rs, count)

    async def _recreate(self, deployment: Obj, new: Obj, old: list[Obj], replicas: int) -> None:
        for rs in old:
            if int(rs["spec"].get("replicas", 0)):
                await self._scale(deployment, rs, 0)
        if any(int((rs.get("status") or {}).get("replicas", 0)) for rs in old):
            return  # Recreate waits for every old pod to be gone
        if int(new["spec"].get("replicas", 0)) != replicas:
            await self._scale(deployment, new, replicas)

    async def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> None:
        meta = rs["metadata"]
        before = int(rs["spec"].get("replicas", 0))
        _, most = self._annotations(deployment)
        path = resource_path("apps/v1", "replicasets", meta["namespace"], meta["name"])
        await self.client.patch(
            path,
            {
                "metadata": {
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(
                            deployment["spec"].get("replicas", 1)
                        ),
                        "deployment.kubernetes.io/max-replicas": str(most),
                    }
                },
                "spec": {"replicas": replicas},
            },
        )
        rs["spec"]["replicas"] = replicas
        verb = "up" if replicas > before else "down"
        await self.events.record(
            {**deployment, "apiVersion": "apps/v1", "kind": "Deployment"},
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {verb} replica set {meta['name']} from {before} to {replicas}",
        )

    def _annotations(self, deployment: Obj) -> tuple[int, int]:
        replicas = int(deployment["spec"].get("replicas", 1))
        strategy = deployment["spec"].get("strategy") or {}
        surge = (
            surge_and_unavailable(replicas, strategy)[0]
            if strategy.get("type") != "Recreate"
            else 0
        )
        return replicas, replicas + surge

    async def _create_replicaset(self, deployment: Obj, old: list[Obj]) -> Obj | None:
        meta = deployment["metadata"]
        collisions = int((deployment.get("status") or {}).get("collisionCount", 0))
        template = json.loads(json.dumps(deployment["spec"]["template"]))
        pod_hash = template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = json.loads(json.dumps(deployment["spec"]["selector"]))
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        revision = max((_revision(rs) for rs in old), default=0) + 1
        replicas, most = self._annotations(deployment)
        strategy = deployment["spec"].get("strategy") or {"type": "RollingUpdate"}
        views = [_view(rs) for rs in old]
        start = ReplicaSetView(name="", replicas=0, available=0)
        if strategy.get("type") == "Recreate" or not any(v.replicas for v in views):
            initial = 0 if strategy.get("type") == "Recreate" else replicas
        else:
            initial = new_replicas(replicas, strategy, start, [start, *views])
        name = f"{meta['name']}-{pod_hash}"
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(most),
                },
                "ownerReferences": [
                    owner_reference({**deployment, "apiVersion": "apps/v1", "kind": "Deployment"})
                ],
            },
            "spec": {
                "replicas": initial,
                "minReadySeconds": deployment["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        path = resource_path("apps/v1", "replicasets", meta["namespace"])
        try:
            created = await self.client.create(path, body)
        except ApiError as error:
            if error.status != 409:
                raise
            existing = await self.client.get_or_none(f"{path}/{name}")
            if (
                existing is not None
                and owned_by(existing, deployment)
                and template_without_hash(existing["spec"]["template"])
                == template_without_hash(deployment["spec"]["template"])
            ):
                return existing  # ours, created by an earlier pass our cache has not seen yet
            await self.client.patch_status(
                resource_path("apps/v1", "deployments", meta["namespace"], meta["name"]),
                {"status": {"collisionCount": collisions + 1}},
            )
            return None
        await self._set_deployment_revision(deployment, revision)
        await self.events.record(
            {**deployment, "apiVersion": "apps/v1", "kind": "Deployment"},
            "Normal",
            "ScalingReplicaSet",
            f"Scaled up replica set {name} from 0 to {initial}",
        )
        return created

    async def _ensure_revision(self, deployment: Obj, new: Obj, old: list[Obj]) -> None:
        """A rollback makes an old ReplicaSet new again: it gets the next revision."""
        newest_old = max((_revision(rs) for rs in old), default=0)
        revision = _revision(new)
        if revision <= newest_old:
            revision = newest_old + 1
            meta = new["metadata"]
            await self.client.patch(
                resource_path("apps/v1", "replicasets", meta["namespace"], meta["name"]),
                {"metadata": {"annotations": {REVISION: str(revision)}}},
            )
        await self._set_deployment_revision(deployment, revision)

    async def _set_deployment_revision(self, deployment: Obj, revision: int) -> None:
        annotations = deployment["metadata"].get("annotations") or {}
        if annotations.get(REVISION) == str(revision):
            return
        meta = deployment["metadata"]
        await self.client.patch(
            resource_path("apps/v1", "deployments", meta["namespace"], meta["name"]),
            {"metadata": {"annotations": {REVISION: str(revision)}}},
        )

    async def _cleanup(self, deployment: Obj, old: list[Obj]) -> None:
        """Delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
        empty = [
            rs
            for rs in old
            if not int(rs["spec"].get("replicas", 0))
            and not int((rs.get("status") or {}).get("replicas", 0))
        ]
        excess = len(old) - limit
        for rs in sorted(empty, key=_revision)[: max(0, excess)]:
            meta = rs["metadata"]
            await self.client.delete(
                resource_path("apps/v1", "replicasets", meta["namespace"], meta["name"])
            )

    async def _sync_status(self, deployment: Obj, new: Obj | None, sets: list[Obj]) -> None:
        replicas = int(deployment["spec"].get("replicas", 1))
        strategy = deployment["spec"].get("strategy") or {}
        _, max_unavailable = (
            surge_and_unavailable(replicas, strategy)
            if strategy.get("type", "RollingUpdate") == "RollingUpdate"
            else (0, 0)
        )

        def total(field: str, group: list[Obj]) -> int:
            return sum(int((rs.get("status") or {}).get(field, 0)) for rs in group)

        available = total("availableReplicas", sets)
        new_name = new["metadata"]["name"] if new else ""
        status: Obj = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": total("replicas", sets),
            "updatedReplicas": total("replicas", [new]) if new else 0,
            "readyReplicas": total("readyReplicas", sets),
            "availableReplicas": available,
            "unavailableReplicas": max(
                0, sum(int(rs["spec"].get("replicas", 0)) for rs in sets) - available
            ),
        }
        current = deployment.get("status") or {}
        if "collisionCount" in current:
            status["collisionCount"] = current["collisionCount"]
        conditions = list(current.get("conditions") or [])
        stamp = timestamp()
        if available >= replicas - max_unavailable:
            conditions = _condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                stamp,
            )
        else:
            conditions = _condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                stamp,
            )
        complete = (
            new is not None
            and status["updatedReplicas"] == replicas
            and status["replicas"] == replicas
            and available == replicas
        )
        if deployment["spec"].get("paused"):
            conditions = _condition(
                conditions,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                stamp,
            )
        elif complete:
            conditions = _condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new_name}" has successfully progressed.',
                stamp,
            )
        elif new is not None:
            conditions = self._progress(deployment, current, status, conditions, new_name, stamp)
        status["conditions"] = _replica_failure(conditions, new, sets)
        if _same_status(current, status):
            return
        meta = deployment["metadata"]
        try:
            await self.client.patch_status(
                resource_path("apps/v1", "deployments", meta["namespace"], meta["name"]),
                {"status": status},
            )
        except ApiError as error:
            if error.status != 404:
                raise

    def _progress(
        self,
        deployment: Obj,
        current: Obj,
        status: Obj,
        conditions: list[Obj],
        new_name: str,
        stamp: str,
    ) -> list[Obj]:
        """Progressing while pods move (lastUpdateTime follows each step); False with
        ProgressDeadlineExceeded once nothing moved for progressDeadlineSeconds."""
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        moved = any(current.get(k, 0) != status[k] for k in counts)
        existing = next((c for c in conditions if c.get("type") == "Progressing"), None)
        deadline = float(deployment["spec"].get("progressDeadlineSeconds", 600))
        since = parse_time((existing or {}).get("lastUpdateTime"))
        if moved or since is None or existing.get("reason") == "NewReplicaSetAvailable":
            self.queue.add_after(object_key(deployment), deadline + 0.5)
            return set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{new_name}" is progressing.',
                lastUpdateTime=stamp,
            )
        if (now() - since).total_seconds() > deadline:
            return _condition(
                conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_name}" has timed out progressing.',
                stamp,
            )
        return conditions


def _replica_failure(conditions: list[Obj], new: Obj | None, sets: list[Obj]) -> list[Obj]:
    """The ReplicaFailure condition of the ReplicaSets (the new one's first) copied into the
    Deployment's, or removed when none has one (syncRolloutStatus upstream)."""
    kept = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    for rs in ([new] if new else []) + [rs for rs in sets if rs is not new]:
        found = condition(rs, "ReplicaFailure")
        if found is not None:
            return [*kept, dict(found)]
    return kept


def _condition(
    conditions: list[Obj], kind: str, status: str, reason: str, message: str, stamp: str
) -> list[Obj]:
    """Deployment conditions also carry lastUpdateTime, which moves when anything changes."""
    existing = next((c for c in conditions if c.get("type") == kind), None)
    if existing and (existing.get("status"), existing.get("reason"), existing.get("message")) == (
        status,
        reason,
        message,
    ):
        return conditions
    return set_condition(conditions, kind, status, reason, message, lastUpdateTime=stamp)


def _same_status(current: Obj, wanted: Obj) -> bool:
    return all(current.get(k, 0 if k != "conditions" else []) == v for k, v in wanted.items())
