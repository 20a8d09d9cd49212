"""The disruption controller: PodDisruptionBudget status, which the eviction API enforces."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import (
    Obj,
    controller_ref,
    is_terminating,
    labels_match,
    now,
    parse_time,
    pod_ready,
    scaled_value,
    set_condition,
)
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

#: An eviction's entry in status.disruptedPods is dropped after this long if the pod stays.
DELETION_TIMEOUT = dt.timedelta(minutes=2)

#: Maps a pod's controller reference to that controller's desired scale (None: unknown kind).
ScaleOf = Callable[[str, Obj], int | None]


class ScaleUnknownError(Exception):
    pass


@dataclass(frozen=True)
class BudgetStatus:
    current_healthy: int
    desired_healthy: int
    expected_pods: int
    disruptions_allowed: int
    disrupted_pods: dict[str, str]
    #: when the earliest disruptedPods entry expires (to look again then)
    next_expiry: dt.datetime | None


def expected_scale(pods: list[Obj], scale_of: ScaleOf) -> int:
    """getExpectedScale: the sum of the desired scale of every controller owning a pod."""
    controllers: dict[str, int] = {}
    for pod in pods:
        ref = controller_ref(pod)
        if ref is None:
            raise ScaleUnknownError(f"found no controller ref for pod {pod['metadata']['name']!r}")
        if ref["uid"] in controllers:
            continue
        scale = scale_of(pod["metadata"]["namespace"], ref)
        if scale is None:
            raise ScaleUnknownError(f"found no controllers for pod {pod['metadata']['name']!r}")
        controllers[ref["uid"]] = scale
    return sum(controllers.values())


def budget_status(
    pdb: Obj, pods: list[Obj], scale_of: ScaleOf, moment: dt.datetime | None = None
) -> BudgetStatus:
    """The status the disruption controller computes for ``pdb`` over its pods (those its
    selector matches in its namespace). Raises ScaleUnknownError as the real one fails."""
    moment = moment or now()
    spec = pdb["spec"]
    if spec.get("maxUnavailable") is not None:
        expected = expected_scale(pods, scale_of)
        unavailable = scaled_value(spec["maxUnavailable"], expected, round_up=True)
        desired = max(0, expected - unavailable)
    elif isinstance(spec.get("minAvailable"), int):
        desired = spec["minAvailable"]
        expected = len(pods)
    elif spec.get("minAvailable") is not None:
        expected = expected_scale(pods, scale_of)
        desired = scaled_value(spec["minAvailable"], expected, round_up=True)
    else:
        expected = expected_scale(pods, scale_of)
        desired = expected
    recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
    live = {p["metadata"]["name"]: p for p in pods}
    disrupted: dict[str, str] = {}
    next_expiry = None
    for name, stamp in recorded.items():
        pod = live.get(name)
        when = parse_time(stamp)
        if pod is None or is_terminating(pod) or when is None:
            continue
        expiry = when + DELETION_TIMEOUT
        if expiry < moment:
            continue
        disrupted[name] = stamp
        next_expiry = min(next_expiry or expiry, expiry)
    healthy = sum(
        1
        for p in pods
        if not is_terminating(p) and p["metadata"]["name"] not in disrupted and pod_ready(p)
    )
    allowed = max(0, healthy - desired) if expected > 0 else 0
    return BudgetStatus(healthy, desired, expected, allowed, disrupted, next_expiry)


class DisruptionController(Controller):
    name = "disruption-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.budgets = informers.get("/apis/policy/v1/poddisruptionbudgets")
        self.pods = informers.get("/api/v1/pods")
        self.sets = informers.get("/apis/apps/v1/replicasets")
        self.deployments = informers.get("/apis/apps/v1/deployments")
        self.budgets.add_handler(lambda kind, pdb, old: self.queue.add(object_key(pdb)))
        for informer in (self.pods, self.sets, self.deployments):
            informer.add_handler(self._on_related)

    def keys(self) -> list[str]:
        return [object_key(pdb) for pdb in self.budgets.list()]

    def _on_related(self, kind: str, obj: Obj, old: Obj | None) -> None:
        for pdb in self.budgets.list(obj["metadata"].get("namespace")):
            self.queue.add(object_key(pdb))

    def _scale_of(self, namespace: str, ref: Obj) -> int | None:
        kind = ref.get("kind")
        if kind == "ReplicaSet":
            rs = self.sets.get(f"{namespace}/{ref['name']}")
            if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
                return None
            owner = controller_ref(rs)
            if owner and owner.get("kind") == "Deployment":
                deployment = self.deployments.get(f"{namespace}/{owner['name']}")
                if deployment is not None and deployment["metadata"].get("uid") == owner.get("uid"):
                    return int(deployment["spec"].get("replicas", 1))
            return int(rs["spec"].get("replicas", 1))
        return None

    async def reconcile(self, key: str) -> None:
        pdb = self.budgets.get(key)
        if pdb is None or is_terminating(pdb):
            return
        namespace = pdb["metadata"]["namespace"]
        selector = pdb["spec"].get("selector")
        pods = [
            p
            for p in self.pods.list(namespace)
            if labels_match(selector, p["metadata"].get("labels") or {})
        ]
        current = dict(pdb.get("status") or {})
        generation = pdb["metadata"].get("generation", 1)
        try:
            result = budget_status(pdb, pods, self._scale_of)
        except ScaleUnknownError as error:
            status = {
                **current,
                "observedGeneration": generation,
                "disruptionsAllowed": 0,
                "conditions": set_condition(
                    list(current.get("conditions") or []),
                    "DisruptionAllowed",
                    "False",
                    "SyncFailed",
                    str(error),
                    observedGeneration=generation,
                ),
            }
        else:
            if result.next_expiry is not None:
                delay = (result.next_expiry - now()).total_seconds()
                self.queue.add_after(key, max(0.1, delay + 0.1))
            allowed = result.disruptions_allowed > 0
            status = {
                "observedGeneration": generation,
                "currentHealthy": result.current_healthy,
                "desiredHealthy": result.desired_healthy,
                "expectedPods": result.expected_pods,
                "disruptionsAllowed": result.disruptions_allowed,
                "conditions": set_condition(
                    list(current.get("conditions") or []),
                    "DisruptionAllowed",
                    "True" if allowed else "False",
                    "SufficientPods" if allowed else "InsufficientPods",
                    "",
                    observedGeneration=generation,
                ),
            }
            if result.disrupted_pods:
                status["disruptedPods"] = result.disrupted_pods
        if status == current:
            return
        meta = pdb["metadata"]
        body = {**pdb, "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "status": status}
        try:
            await self.client.update_status(
                resource_path("policy/v1", "poddisruptionbudgets", namespace, meta["name"]), body
            )
        except ApiError as error:
            if error.status != 404:
                raise
