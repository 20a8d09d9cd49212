"""Scale-down as the cluster autoscaler decides it, as pure functions over JSON objects.

A node is *unneeded* when the requests of its pods (DaemonSet and mirror pods not counted) use
less than the utilisation threshold of its allocatable CPU or memory, whichever is higher, and
every such pod can move: none says ``safe-to-evict: "false"``, each has a controller, kube-system
pods have a PodDisruptionBudget, none uses local storage (the real defaults of
--skip-nodes-with-system-pods and --skip-nodes-with-local-storage; ``safe-to-evict: "true"``
lifts those three), and the scheduler's filters find them room on the nodes that stay.
Nodes annotated ``scale-down-disabled: "true"`` and groups at their minimum are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from clustergate.twin.controllers.objects import (
    Obj,
    controller_ref,
    cpu_millis,
    labels_match,
    memory_bytes,
    pod_finished,
    pod_requests,
)
from clustergate.twin.controllers.scheduling import NodeState, first_fit

SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
UTILISATION_THRESHOLD = 0.5


def is_daemonset_pod(pod: Obj) -> bool:
    return (controller_ref(pod) or {}).get("kind") == "DaemonSet"


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {})


def movable_pods(pods: list[Obj]) -> list[Obj]:
    """The pods a scale-down must move: not DaemonSet, not mirror, not finished."""
    return [p for p in pods if not (is_daemonset_pod(p) or is_mirror_pod(p) or pod_finished(p))]


def utilisation(node: Obj, pods: list[Obj]) -> float:
    """Requests of the node's movable pods over its allocatable: the higher of CPU and memory."""
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    cpu = cpu_millis(allocatable.get("cpu", 0))
    mem = memory_bytes(allocatable.get("memory", 0))
    used_cpu = used_mem = 0
    for pod in movable_pods(pods):
        pod_cpu, pod_mem = pod_requests(pod)
        used_cpu += pod_cpu
        used_mem += pod_mem
    shares = [used_cpu / cpu if cpu else 0.0, used_mem / mem if mem else 0.0]
    return max(shares)


def blocking_reason(pod: Obj, budgets: list[Obj]) -> str | None:
    """Why this pod pins its node (the real autoscaler's drainability rules), or None."""
    meta = pod["metadata"]
    safe = (meta.get("annotations") or {}).get(SAFE_TO_EVICT)
    name = f"{meta.get('namespace')}/{meta['name']}"
    if safe == "false":
        return f"pod annotated as not safe to evict present: {name}"
    if safe == "true":
        return None
    if controller_ref(pod) is None:
        return f"pod not backed by a controller: {name}"
    if meta.get("namespace") == "kube-system" and not any(
        budget["metadata"].get("namespace") == "kube-system"
        and labels_match(budget.get("spec", {}).get("selector"), meta.get("labels") or {})
        for budget in budgets
    ):
        return f"non-daemonset, non-mirrored, non-pdb-assigned kube-system pod present: {name}"
    for volume in pod.get("spec", {}).get("volumes") or []:
        if "hostPath" in volume or "emptyDir" in volume:
            return f"pod with local storage present: {name}"
    return None


@dataclass(frozen=True)
class Candidate:
    """A node of a managed group with the pods bound to it."""

    node: Obj
    group: str
    pods: tuple[Obj, ...]

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])


def unneeded_reason(candidate: Candidate, budgets: list[Obj], threshold: float) -> str | None:
    """Why the node is needed (None: it is unneeded, if its pods find room elsewhere)."""
    annotations = candidate.node["metadata"].get("annotations") or {}
    if annotations.get(SCALE_DOWN_DISABLED) == "true":
        return "scale-down disabled by annotation"
    used = utilisation(candidate.node, list(candidate.pods))
    if used >= threshold:
        return f"utilisation {used:.2f} not below {threshold}"
    for pod in movable_pods(list(candidate.pods)):
        reason = blocking_reason(pod, budgets)
        if reason:
            return reason
    return None


def find_room(pods: list[Obj], destinations: list[NodeState]) -> bool:
    """Place every pod on ``destinations`` (mutating them), or say it cannot be done."""
    for pod in sorted(pods, key=pod_requests, reverse=True):
        moved = _without_node(pod)
        state = first_fit(moved, destinations)
        if state is None:
            return False
        state.add(moved)
    return True


def _without_node(pod: Obj) -> Obj:
    spec = {k: v for k, v in pod.get("spec", {}).items() if k != "nodeName"}
    return {**pod, "spec": spec}


def select_removals(
    unneeded: list[Candidate],
    destinations: list[NodeState],
    removable_per_group: dict[str, int],
) -> list[Candidate]:
    """What to delete now: every empty unneeded node, and at most one node with pods to move,
    never taking a group below its minimum; pods only move to nodes that stay."""
    chosen: list[Candidate] = []
    room = dict(removable_per_group)
    for candidate in sorted(unneeded, key=lambda c: c.name):
        if room.get(candidate.group, 0) <= 0:
            continue
        if movable_pods(list(candidate.pods)):
            continue
        chosen.append(candidate)
        room[candidate.group] -= 1
    for candidate in sorted(unneeded, key=lambda c: c.name):
        if candidate in chosen or room.get(candidate.group, 0) <= 0:
            continue
        leaving = {c.name for c in chosen} | {candidate.name}
        trial = [NodeState(s.node, list(s.pods)) for s in destinations if s.name not in leaving]
        if find_room(movable_pods(list(candidate.pods)), trial):
            chosen.append(candidate)
            break
    return chosen
