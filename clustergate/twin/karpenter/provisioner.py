"""Karpenter's provisioning decision as a pure function: pending pods packed onto new nodes.

The pods are sorted largest first and each goes on the first planned node it fits; when none
has room, a new node of the cheapest instance type that the NodePool's requirements allow and
that holds the pod (after the DaemonSets' overhead and kube-reserved) is planned. A node that
would take the pool past ``spec.limits`` is not planned: its pods stay pending with the
upstream message "all available instance types exceed limits for nodepool".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from clustergate.twin.aws.instance_types import INSTANCE_TYPES, InstanceType
from clustergate.twin.controllers.objects import parse_quantity
from clustergate.twin.kubelet.node import reserved_cpu_millis, reserved_memory_mib

Obj = dict[str, Any]
MIB = 2**20
#: Requirement keys -> the instance type's value for them.
_TYPE_KEYS = {
    "node.kubernetes.io/instance-type": lambda t: t.name,
    "karpenter.k8s.aws/instance-category": lambda t: t.category,
    "karpenter.k8s.aws/instance-family": lambda t: t.family,
    "karpenter.sh/capacity-type": lambda t: "on-demand",
    "kubernetes.io/arch": lambda t: "amd64",
    "kubernetes.io/os": lambda t: "linux",
}


@dataclass(frozen=True)
class PendingPod:
    key: str  # namespace/name
    cpu_millis: int
    memory_bytes: int


@dataclass
class PlannedNode:
    instance_type: InstanceType
    pods: list[str] = field(default_factory=list)
    cpu_left: int = 0
    memory_left: int = 0


@dataclass(frozen=True)
class Plan:
    nodes: list[PlannedNode]
    #: pods no node is planned for, with why (the message of their event)
    unplaced: dict[str, str]


def allowed_types(requirements: list[Obj]) -> list[InstanceType]:
    """Instance types meeting every requirement the twin knows; cheapest first."""
    allowed = []
    for kind in INSTANCE_TYPES:
        if all(_meets(kind, r) for r in requirements):
            allowed.append(kind)
    return sorted(allowed, key=lambda t: (t.price, t.name))


def _meets(kind: InstanceType, requirement: Obj) -> bool:
    value_of = _TYPE_KEYS.get(requirement.get("key", ""))
    if value_of is None:
        return True
    value, values = value_of(kind), set(requirement.get("values") or [])
    operator = requirement.get("operator")
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    return operator != "DoesNotExist"


def room(kind: InstanceType, overhead: PendingPod) -> tuple[int, int]:
    """(cpu millis, memory bytes) a new node of ``kind`` has for pods."""
    cpu = kind.cpu_millis - reserved_cpu_millis(kind.cpu_millis) - overhead.cpu_millis
    memory = (kind.memory_mib - reserved_memory_mib(kind.max_pods)) * MIB - overhead.memory_bytes
    return cpu, memory


def capacity(kind: InstanceType) -> dict[str, Decimal]:
    return {
        "cpu": Decimal(kind.cpu_millis) / 1000,
        "memory": Decimal(kind.memory_mib * MIB),
        "pods": Decimal(kind.max_pods),
    }


def plan(
    pods: list[PendingPod],
    pool_name: str,
    requirements: list[Obj],
    limits: dict[str, str],
    used: dict[str, str],
    overhead: PendingPod,
) -> Plan:
    types = allowed_types(requirements)
    left = {
        name: parse_quantity(str(limit)) - parse_quantity(str(used.get(name, "0")))
        for name, limit in limits.items()
    }
    nodes: list[PlannedNode] = []
    unplaced: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: (-p.cpu_millis, -p.memory_bytes, p.key)):
        node = next(
            (
                n
                for n in nodes
                if n.cpu_left >= pod.cpu_millis and n.memory_left >= pod.memory_bytes
            ),
            None,
        )
        if node is None:
            fitting = [t for t in types if _fits(room(t, overhead), pod)]
            within = [t for t in fitting if _within(capacity(t), left)]
            if not fitting:
                unplaced[pod.key] = (
                    f"Failed to schedule pod, incompatible with nodepool {pool_name!r}: "
                    "no instance type satisfied resources and requirements"
                )
                continue
            if not within:
                unplaced[pod.key] = (
                    "Failed to schedule pod, all available instance types exceed limits "
                    f'for nodepool: "{pool_name}"'
                )
                continue
            kind = within[0]
            for name, amount in capacity(kind).items():
                if name in left:
                    left[name] -= amount
            cpu, memory = room(kind, overhead)
            node = PlannedNode(kind, cpu_left=cpu, memory_left=memory)
            nodes.append(node)
        node.pods.append(pod.key)
        node.cpu_left -= pod.cpu_millis
        node.memory_left -= pod.memory_bytes
    return Plan(nodes, unplaced)


def _fits(space: tuple[int, int], pod: PendingPod) -> bool:
    return space[0] >= pod.cpu_millis and space[1] >= pod.memory_bytes


def _within(adding: dict[str, Decimal], left: dict[str, Decimal]) -> bool:
    return all(adding.get(name, Decimal(0)) <= remaining for name, remaining in left.items())
