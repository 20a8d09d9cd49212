"""The NodePool status controllers: readiness from its NodeClass, resources from its claims.

Upstream's readiness controller copies the NodeClass's state into ``NodeClassReady``
("NodeClass not found on cluster", "NodeClass is NotReady"); the counter controller sums the
capacity of the pool's NodeClaims into ``status.resources`` (with ``nodes``), which is what
``spec.limits`` is held against before a launch (and what the gate reads to see headroom).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clustergate.twin.controllers.objects import parse_quantity
from clustergate.twin.karpenter.conditions import Condition, root_ready

Obj = dict[str, Any]
NODEPOOL_LABEL = "karpenter.sh/nodepool"
COUNTED = ("cpu", "memory", "pods", "ephemeral-storage")


def conditions(node_class: Obj | None) -> list[Condition]:
    if node_class is None:
        ready = Condition(
            "NodeClassReady", False, "NodeClassNotFound", "NodeClass not found on cluster"
        )
    elif node_class["metadata"].get("deletionTimestamp"):
        ready = Condition(
            "NodeClassReady", False, "NodeClassTerminating", "NodeClass is Terminating"
        )
    elif _is_ready(node_class):
        ready = Condition("NodeClassReady", True)
    else:
        ready = Condition("NodeClassReady", False, "NodeClassNotReady", "NodeClass is NotReady")
    dependents = [Condition("ValidationSucceeded", True), ready]
    return [*dependents, root_ready(dependents)]


def resources(claims: list[Obj]) -> dict[str, str]:
    totals = {name: Decimal(0) for name in COUNTED}
    for claim in claims:
        capacity = (claim.get("status") or {}).get("capacity") or {}
        for name in COUNTED:
            totals[name] += parse_quantity(str(capacity.get(name, "0")))
    rendered = {name: _quantity(value) for name, value in totals.items()}
    rendered["nodes"] = str(len(claims))
    return rendered


def _is_ready(obj: Obj) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _quantity(value: Decimal) -> str:
    """Whole numbers as they are, fractions in milli-units (``1500m``), as Kubernetes prints."""
    if value == value.to_integral_value():
        return str(int(value))
    return f"{int(value * 1000)}m"
