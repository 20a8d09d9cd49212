"""events.k8s.io/v1 Events are a view of the core/v1 Events the store keeps, as in the real
API server where both versions share one storage; these convert between the two field sets."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

#: events.k8s.io/v1 field → core/v1 field
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "reportingController": "reportingComponent",
}
_CORE_TO_V1 = {core: v1 for v1, core in _RENAMED.items()}


def to_events_v1(core: Obj) -> Obj:
    event = {_CORE_TO_V1.get(k, k): v for k, v in core.items()}
    event["apiVersion"] = "events.k8s.io/v1"
    return event


def from_events_v1(event: Obj) -> Obj:
    core = {_RENAMED.get(k, k): v for k, v in event.items()}
    core["apiVersion"] = "v1"
    return core


def core_field(name: str) -> str:
    """The core/v1 field a field selector of the events.k8s.io view names."""
    head, dot, rest = name.partition(".")
    return _RENAMED.get(head, head) + dot + rest
