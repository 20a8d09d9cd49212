"""Status conditions as Karpenter's operator package keeps them: a root ``Ready`` that is True
when every dependent condition is, transition times kept while a status does not change."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


def root_ready(dependents: list[Condition]) -> Condition:
    """Ready False names the first dependent that is not True, as operatorpkg's root does."""
    for dependent in dependents:
        if not dependent.status:
            return Condition("Ready", False, f"{dependent.type}False", dependent.message)
    return Condition("Ready", True, "Ready")


def render(old: list[Obj], conditions: list[Condition], generation: int) -> list[Obj]:
    """The conditions list to write: lastTransitionTime moves only when the status changes."""
    previous = {c.get("type"): c for c in old}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rendered = []
    for condition in conditions:
        status = "True" if condition.status else "False"
        before = previous.get(condition.type) or {}
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        rendered.append(
            {
                "type": condition.type,
                "status": status,
                "observedGeneration": generation,
                "lastTransitionTime": since or now,
                "reason": condition.reason or condition.type,
                "message": condition.message,
            }
        )
    return rendered
