"""NodeClaim lifecycle and disruption as Karpenter decides them, pure: the conditions a claim
moves through (Launched, Registered, Initialized, Ready) and which empty nodes a NodePool's
disruption budgets let go now."""

from __future__ import annotations

import math
import re
from typing import Any

from clustergate.twin.karpenter.conditions import Condition

Obj = dict[str, Any]
_DURATION = re.compile(r"([0-9]+)(h|m|s)")
_UNIT = {"h": 3600, "m": 60, "s": 1}


def claim_conditions(launched: Condition, node: Obj | None) -> list[Condition]:
    """Launched as given; Registered when its node exists; Initialized and Ready when the
    node is Ready."""
    registered = (
        Condition("Registered", True)
        if node is not None
        else Condition("Registered", False, "NodeNotFound", "Node not registered with cluster")
    )
    ready_node = node is not None and _node_ready(node)
    initialized = (
        Condition("Initialized", True)
        if ready_node
        else Condition("Initialized", False, "NodeNotReady", "Node status is NotReady")
    )
    dependents = [launched, registered, initialized]
    first_false = next((c for c in dependents if not c.status), None)
    ready = (
        Condition("Ready", True)
        if first_false is None
        else Condition("Ready", False, f"{first_false.type}False", first_false.message)
    )
    return [*dependents, ready]


def duration_s(text: str | None) -> float | None:
    """``1m30s`` in seconds; None for ``Never`` or nothing."""
    if not text or text == "Never":
        return None
    return float(sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(text)))


def allowed_disruptions(budgets: list[Obj], nodes: int) -> int:
    """The least of the budgets without a schedule; a percentage rounds up, as upstream's
    ``GetScaledValueFromIntOrPercent(..., roundUp=true)``."""
    allowed = nodes
    for budget in budgets or [{"nodes": "10%"}]:
        if budget.get("schedule"):
            continue  # a scheduled budget applies only inside its window
        value = str(budget.get("nodes", "10%"))
        count = math.ceil(nodes * int(value[:-1]) / 100) if value.endswith("%") else int(value)
        allowed = min(allowed, count)
    return allowed


def _node_ready(node: Obj) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
