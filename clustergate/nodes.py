"""Nodes: kubelet version skew, node groups, cordons that are always put back, and a watch.

Skew policy (FACTS.md, Kubernetes version skew policy): a kubelet is never newer than the API
server, and at most three minor versions older from control plane 1.28 on (two before).

A cordon placed by a run carries the :data:`~clustergate.runctx.CORDONED_BY` annotation with the
run id, and an undo on the run's teardown, so that a failed check, an interrupt and (through the
annotation) the sweep after a killed run all put the node back. A node that was already cordoned
by someone else is never taken over.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from clustergate.availability import ObjectWatch
from clustergate.kube import Cluster, list_all
from clustergate.runctx import CORDONED_AT, CORDONED_BY, RunContext

NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
NO_GROUP = "(no node group)"
#: The taint the node lifecycle controller adds to a cordoned node (reported as the cordon).
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def minor_of(version: str) -> tuple[int, int]:
    """``v1.31.2-eks-7f9249a`` or ``1.31`` -> (1, 31)."""
    match = _VERSION.match(version.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return int(match.group(1)), int(match.group(2))


def patch_of(version: str) -> str:
    """``v1.31.2-eks-7f9249a`` or ``1.31.2-20241106`` -> ``1.31.2``."""
    match = _VERSION.match(version.strip())
    if match is None or match.group(3) is None:
        raise ValueError(f"not a Kubernetes patch version: {version!r}")
    return f"{match.group(1)}.{match.group(2)}.{match.group(3)}"


def allowed_kubelet_lag(control_plane: tuple[int, int]) -> int:
    """How many minor versions a kubelet may be older than this control plane."""
    return 3 if control_plane >= (1, 28) else 2


def skew_problem(kubelet: str, control_plane: str) -> str | None:
    """Why ``kubelet`` is outside the skew policy against ``control_plane``, or None."""
    node, server = minor_of(kubelet), minor_of(control_plane)
    if node[0] != server[0]:
        return f"kubelet {kubelet} has another major version than the control plane {control_plane}"
    if node[1] > server[1]:
        return f"kubelet {kubelet} is newer than the control plane {control_plane}"
    lag, allowed = server[1] - node[1], allowed_kubelet_lag(server)
    if lag > allowed:
        return (
            f"kubelet {kubelet} is {lag} minor versions older than the control plane "
            f"{control_plane} (at most {allowed} allowed)"
        )
    return None


def kubelet_version(node: Any) -> str:
    return str(node.status.node_info.kubelet_version)


def nodegroup_of(node: Any) -> str:
    return (node.metadata.labels or {}).get(NODEGROUP_LABEL, NO_GROUP)


def cordoned_now(node: Any) -> bool:
    return bool(node.spec and node.spec.unschedulable)


def node_ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def skewed_nodes(nodes: Iterable[Any], control_plane: str) -> list[str]:
    """One line per node whose kubelet is outside the skew policy."""
    found = []
    for node in nodes:
        problem = skew_problem(kubelet_version(node), control_plane)
        if problem:
            found.append(f"node {node.metadata.name} ({nodegroup_of(node)}): {problem}")
    return found


def versions_by_group(nodes: Iterable[Any]) -> dict[str, dict[str, list[str]]]:
    """node group -> kubelet version -> node names."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for node in nodes:
        groups[nodegroup_of(node)][kubelet_version(node)].append(node.metadata.name)
    return {group: dict(versions) for group, versions in groups.items()}


def mixed_groups(nodes: Iterable[Any]) -> list[str]:
    """One line per node group whose nodes run more than one kubelet version."""
    lines = []
    for group, versions in sorted(versions_by_group(nodes).items()):
        if group != NO_GROUP and len(versions) > 1:
            parts = [
                f"{version} on {', '.join(sorted(names))}" for version, names in versions.items()
            ]
            lines.append(f"node group {group} runs {len(versions)} versions: " + "; ".join(parts))
    return lines


def control_plane_version(cluster: Cluster) -> str:
    return str(cluster.version().get_code().git_version)


def schedulable_nodes(cluster: Cluster) -> list[Any]:
    """Ready nodes that take ordinary pods: not cordoned, no NoSchedule/NoExecute taint."""
    nodes = []
    for node in list_all(cluster.core().list_node):
        taints = (node.spec.taints if node.spec else None) or []
        if cordoned_now(node) or not node_ready(node):
            continue
        if any(taint.effect in ("NoSchedule", "NoExecute") for taint in taints):
            continue
        nodes.append(node)
    return sorted(nodes, key=lambda node: node.metadata.name)


def cordon(run: RunContext, node_name: str) -> None:
    """Cordon ``node_name`` for this run; the run's teardown uncordons it if still ours."""
    core = run.cluster.core()
    node = core.read_node(node_name)
    if cordoned_now(node):
        owner = (node.metadata.annotations or {}).get(CORDONED_BY, "someone else")
        raise AssertionError(
            f"node {node_name} is already cordoned (by {owner}); a check cordons only nodes "
            "that take pods, so that it never takes over another cordon"
        )
    run.on_teardown(f"uncordon node {node_name}", lambda: uncordon(run, node_name))
    run.name("Node", node_name)
    annotations = {CORDONED_BY: run.run_id, CORDONED_AT: datetime.now(UTC).isoformat()}
    core.patch_node(
        node_name, {"spec": {"unschedulable": True}, "metadata": {"annotations": annotations}}
    )


def uncordon(run: RunContext, node_name: str) -> bool:
    """Uncordon ``node_name`` if this run cordoned it; False when there was nothing to undo."""
    return uncordon_for(run.cluster, node_name, run.run_id)


def uncordon_for(cluster: Cluster, node_name: str, run_id: str) -> bool:
    """Uncordon ``node_name`` if run ``run_id`` cordoned it (also the sweep's, for a dead run)."""
    core = cluster.core()
    try:
        node = core.read_node(node_name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    if (node.metadata.annotations or {}).get(CORDONED_BY) != run_id:
        return False
    core.patch_node(
        node_name,
        {
            "spec": {"unschedulable": None},
            "metadata": {"annotations": {CORDONED_BY: None, CORDONED_AT: None}},
        },
    )
    return True


@contextmanager
def cordoned(run: RunContext, node_name: str) -> Iterator[None]:
    """Cordon for the block, and uncordon afterwards whatever happened inside."""
    cordon(run, node_name)
    try:
        yield
    finally:
        uncordon(run, node_name)


@dataclass
class NodeLife:
    """What a node watch saw of one node (times in seconds since the watch started)."""

    name: str
    nodegroup: str
    first_seen: float
    kubelet: str = ""
    ready_at: float | None = None
    cordoned_at: float | None = None
    excluded_from_lb_at: float | None = None
    deleted_at: float | None = None


class NodeWatch:
    """Every node's life while a node-group update runs; a context manager like
    :class:`~clustergate.availability.AvailabilityWatch`."""

    def __init__(self, cluster: Cluster) -> None:
        self.nodes: dict[str, NodeLife] = {}
        self._watch = ObjectWatch(cluster.core().list_node, self._changed, "nodes")

    def __enter__(self) -> NodeWatch:
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watch.stop()

    def now(self) -> float:
        return self._watch.now()

    @property
    def gaps(self) -> list[tuple[float, float, str]]:
        return list(self._watch.gaps)

    def describe_gaps(self) -> str:
        return self._watch.describe_gaps()

    def current(self) -> list[Any]:
        return self._watch.snapshot()

    def _changed(self, objects: dict[str, Any], at: float, kind: str, obj: Any) -> None:
        if kind == "LISTED":
            present = {node.metadata.name for node in objects.values()}
            for life in self.nodes.values():
                if life.name not in present and life.deleted_at is None:
                    life.deleted_at = at
            for node in objects.values():
                self._track(node, at)
            return
        life = self._track(obj, at)
        if kind == "DELETED":
            life.deleted_at = at

    def _track(self, node: Any, at: float) -> NodeLife:
        name = node.metadata.name
        life = self.nodes.get(name)
        if life is None:
            life = self.nodes[name] = NodeLife(name, nodegroup_of(node), first_seen=at)
        life.kubelet = kubelet_version(node) if node.status and node.status.node_info else ""
        if node_ready(node) and life.ready_at is None:
            life.ready_at = at
        if cordoned_now(node) and life.cordoned_at is None:
            life.cordoned_at = at
        if (node.metadata.labels or {}).get(EXCLUDE_FROM_LB_LABEL) == "true":
            life.excluded_from_lb_at = life.excluded_from_lb_at or at
        return life


def unexpected_unschedulable(
    nodes: Iterable[Any], expected_cordoned: Iterable[str], expected_taints: Iterable[Any]
) -> list[str]:
    """One line per node kept out of scheduling that the config does not expect: cordoned
    (saying who, when a clustergate run did it) or with a NoSchedule taint not listed."""
    cordons_ok = set(expected_cordoned)
    taints_ok = [(taint.key, taint.value) for taint in expected_taints]
    lines = []
    for node in nodes:
        name = node.metadata.name
        if cordoned_now(node) and name not in cordons_ok:
            owner = (node.metadata.annotations or {}).get(CORDONED_BY)
            by = f"by clustergate run {owner}" if owner else "not by clustergate"
            lines.append(f"node {name} ({nodegroup_of(node)}) is cordoned ({by})")
        for taint in (node.spec.taints if node.spec else None) or []:
            if taint.effect != "NoSchedule" or taint.key == UNSCHEDULABLE_TAINT:
                continue
            if any(key == taint.key and value in (None, taint.value) for key, value in taints_ok):
                continue
            shown = f"{taint.key}={taint.value}" if taint.value else taint.key
            lines.append(f"node {name} ({nodegroup_of(node)}) has taint {shown}:NoSchedule")
    return lines
