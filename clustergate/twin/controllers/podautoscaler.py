"""The horizontal pod autoscaler controller (pkg/controller/podautoscaler), as far as it goes
without a metrics API: it reads each HPA's scale target through the scale subresource, keeps
the replicas within [minReplicas, maxReplicas] as reconcileAutoscaler does before it looks at
metrics, and writes the status the real controller writes when metrics cannot be had
(ScalingActive False, FailedGetResourceMetric). No metrics-server runs in the twin, so no HPA
scales on load.
"""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import Obj, set_condition, timestamp
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

GROUP_VERSION = "autoscaling/v2"
#: Scale targets the twin serves: (apiVersion, kind) → (group/version for paths, plural).
TARGETS: dict[tuple[str, str], tuple[str, str]] = {
    ("apps/v1", "Deployment"): ("apps/v1", "deployments"),
    ("apps/v1", "ReplicaSet"): ("apps/v1", "replicasets"),
}
NO_METRICS = (
    "the HPA was unable to compute the replica count: failed to get cpu utilization: unable "
    "to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the "
    "server could not find the requested resource (get pods.metrics.k8s.io)"
)


def desired_replicas(current: int, spec: Obj) -> tuple[int, str]:
    """What reconcileAutoscaler wants before metrics, and why ("" when metrics must decide)."""
    minimum, maximum = spec.get("minReplicas", 1), spec["maxReplicas"]
    if current == 0 and minimum != 0:
        return 0, "scaling is disabled since the replica count of the target is zero"
    if current > maximum:
        return maximum, "Current number of replicas above Spec.MaxReplicas"
    if current < minimum:
        return minimum, "Current number of replicas below Spec.MinReplicas"
    return current, ""


class PodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"
    #: --horizontal-pod-autoscaler-sync-period.
    resync_seconds = 15.0

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.hpas = informers.get(f"/apis/{GROUP_VERSION}/horizontalpodautoscalers")
        self.hpas.add_handler(lambda kind, hpa, old: self.queue.add(object_key(hpa)))
        for group_version, plural in TARGETS.values():
            informers.get(f"/apis/{group_version}/{plural}").add_handler(self._on_target)

    def keys(self) -> list[str]:
        return [object_key(hpa) for hpa in self.hpas.list()]

    def _on_target(self, kind: str, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        for hpa in self.hpas.list(meta["namespace"]):
            ref = hpa["spec"].get("scaleTargetRef") or {}
            if ref.get("kind") == obj.get("kind") and ref.get("name") == meta["name"]:
                self.queue.add(object_key(hpa))

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            return
        namespace, name = key.split("/", 1)
        spec, status = hpa["spec"], dict(hpa.get("status") or {})
        ref = spec.get("scaleTargetRef") or {}
        conditions = list(status.get("conditions") or [])
        target = TARGETS.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        scale = None
        if target is not None:
            path = resource_path(*target, namespace, ref.get("name"), "scale")
            try:
                scale = await self.client.get(path)
            except ApiError as error:
                if error.status != 404:
                    raise
        if scale is None:
            conditions = set_condition(
                conditions,
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: no matches "
                f'for kind "{ref.get("kind")}" in group "{ref.get("apiVersion", "")}"'
                if target is None
                else f'{target[1]}.{target[0].split("/")[0]} "{ref.get("name")}" not found',
            )
            status.update(currentReplicas=0, desiredReplicas=0)
        else:
            current = scale["spec"].get("replicas", 0)
            desired, reason = desired_replicas(current, spec)
            if desired != current:
                scale["spec"]["replicas"] = desired
                await self.client.replace(path, scale)
                status["lastScaleTime"] = timestamp()
                conditions = set_condition(
                    conditions,
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    f"the HPA controller was able to update the target scale to {desired}",
                )
            else:
                conditions = set_condition(
                    conditions,
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                )
            if reason and current == 0:
                conditions = set_condition(
                    conditions, "ScalingActive", "False", "ScalingDisabled", reason
                )
            elif not reason:
                conditions = set_condition(
                    conditions, "ScalingActive", "False", "FailedGetResourceMetric", NO_METRICS
                )
            status.update(currentReplicas=scale["status"].get("replicas", 0))
            status["desiredReplicas"] = desired
        status["conditions"] = conditions
        if status == (hpa.get("status") or {}):
            return
        body = {**hpa, "status": status}
        await self.client.update_status(
            resource_path(GROUP_VERSION, "horizontalpodautoscalers", namespace, name), body
        )
