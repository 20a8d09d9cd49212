"""The pods/eviction subresource, enforcing PodDisruptionBudgets as the real API server does
(pkg/registry/core/pod/storage/eviction.go); see FACTS.md for the codes and messages."""

from __future__ import annotations

import datetime
from typing import Any

from clustergate.twin.apiserver import errors
from clustergate.twin.apiserver.errors import ApiError
from clustergate.twin.apiserver.registry import DeleteOptions, Registry, clone
from clustergate.twin.apiserver.resources import resource
from clustergate.twin.apiserver.selectors import LabelSelector

Obj = dict[str, Any]
PODS = resource("", "v1", "pods")
PDBS = resource("policy", "v1", "poddisruptionbudgets")
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
    "support."
)
#: MaxDisruptedPodSize in the real eviction code.
MAX_DISRUPTED_PODS = 2000


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _budget_error(message: str) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        VIOLATION,
        {"causes": [{"reason": "DisruptionBudget", "message": message}]},
    )


def _matching_budgets(registry: Registry, pod: Obj) -> list[Obj]:
    namespace = pod["metadata"]["namespace"]
    labels = pod["metadata"].get("labels") or {}
    budgets = []
    for pdb in registry.store.scan(PDBS.key, namespace):
        selector = LabelSelector.from_object((pdb.get("spec") or {}).get("selector"))
        if selector is not None and selector.matches(labels):
            budgets.append(pdb)
    return budgets


def _take_disruption(registry: Registry, pdb: Obj, pod_name: str, dry_run: bool) -> None:
    status = pdb.get("status") or {}
    name = pdb["metadata"]["name"]
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise _budget_error(f"The disruption budget {name} is still being processed by the server.")
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise errors.forbidden(
            PODS.qualified, pod_name, "", "pods", "pdb disruptions allowed is negative"
        )
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.forbidden(
            PODS.qualified,
            pod_name,
            "",
            "pods",
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        )
    if allowed == 0:
        raise _budget_error(
            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy pods "
            f"and has {status.get('currentHealthy', 0)} currently"
        )
    if dry_run:
        return
    updated = clone(pdb)
    new_status = updated.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new_status.setdefault("disruptedPods", {})[pod_name] = now
    if new_status["disruptionsAllowed"] == 0:
        conditions = [
            c for c in new_status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"
        ]
        conditions.append(
            {
                "type": "DisruptionAllowed",
                "status": "False",
                "reason": "InsufficientPods",
                "message": "",
                "observedGeneration": new_status.get("observedGeneration", 0),
                "lastTransitionTime": now,
            }
        )
        new_status["conditions"] = conditions
    registry.update(PDBS, pdb["metadata"]["namespace"], name, updated, "status")


def evict(registry: Registry, namespace: str, name: str, body: Any, ignore_budgets: bool) -> Obj:
    """Evict the pod or raise the real error; returns the Success Status (HTTP 201)."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be an Eviction object")
    eviction_name = (body.get("metadata") or {}).get("name")
    if eviction_name and eviction_name != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    pod = registry.get(PODS, namespace, name)
    options_body = body.get("deleteOptions") or {}
    options = DeleteOptions.parse({}, options_body)
    phase = (pod.get("status") or {}).get("phase")
    ignore = (
        ignore_budgets
        or phase in ("Succeeded", "Failed", "Pending")
        or bool(pod["metadata"].get("deletionTimestamp"))
    )
    if not ignore:
        budgets = _matching_budgets(registry, pod)
        if len(budgets) > 1:
            raise ApiError(500, "", MULTIPLE)
        if budgets:
            pdb = budgets[0]
            policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
            status = pdb.get("status") or {}
            unhealthy = not _ready(pod)
            healthy_enough = (
                status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0)
                and status.get("desiredHealthy", 0) > 0
            )
            if not (unhealthy and (policy == "AlwaysAllow" or healthy_enough)):
                _take_disruption(registry, pdb, name, options.dry_run)
    registry.delete(PODS, namespace, name, options)
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
