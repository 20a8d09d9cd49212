"""The cluster-autoscaler-status ConfigMap in the YAML format of cluster-autoscaler 1.30+.

``data.status`` is the document (clusterstate/api: autoscalerStatus, clusterWide health/scaleUp/
scaleDown, nodeGroups[] with nodeCounts, cloudProviderTarget, minSize and maxSize) and the
``cluster-autoscaler.kubernetes.io/last-updated`` annotation the time of writing, in Go's
``2006-01-02 15:04:05.999999999 -0700 MST`` layout as the real one writes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

CONFIGMAP = "cluster-autoscaler-status"
LAST_UPDATED = "cluster-autoscaler.kubernetes.io/last-updated"


def go_time(moment: dt.datetime) -> str:
    """``2024-05-21 09:33:19.946587 +0000 UTC`` (Go prints up to nanoseconds; we have micro)."""
    utc = moment.astimezone(dt.UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    seconds = utc.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "")
    return f"{seconds} +0000 UTC"


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TransitionClock:
    """Remembers since when each condition has had its current status."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, dt.datetime]] = {}

    def condition(self, key: str, status: str, now: dt.datetime, **extra: Any) -> dict[str, Any]:
        previous = self._since.get(key)
        if previous is None or previous[0] != status:
            self._since[key] = (status, now)
        return {
            "status": status,
            **extra,
            "lastProbeTime": rfc3339(now),
            "lastTransitionTime": rfc3339(self._since[key][1]),
        }


@dataclass(frozen=True)
class NodeCounts:
    ready: int = 0
    unready: int = 0
    not_started: int = 0
    being_deleted: int = 0
    #: Instances the cloud provider has that no node stands for yet.
    unregistered: int = 0

    @property
    def registered(self) -> int:
        return self.ready + self.unready + self.not_started

    def document(self) -> dict[str, Any]:
        return {
            "registered": {
                "total": self.registered,
                "ready": self.ready,
                "notStarted": self.not_started,
                "beingDeleted": self.being_deleted,
                "unready": {"total": self.unready, "resourceUnready": 0},
            },
            "longUnregistered": 0,
            "unregistered": self.unregistered,
        }


@dataclass(frozen=True)
class GroupStatus:
    name: str
    min_size: int
    max_size: int
    target: int
    counts: NodeCounts
    scale_up: str
    scale_down_candidates: int


@dataclass
class ClusterStatus:
    health: str
    counts: NodeCounts
    scale_up: str
    scale_down_candidates: int
    groups: list[GroupStatus] = field(default_factory=list)


def _scale_down(clock: TransitionClock, key: str, candidates: int, now: dt.datetime) -> Any:
    status = "CandidatesPresent" if candidates else "NoCandidates"
    return clock.condition(key, status, now, candidates=candidates)


def render(status: ClusterStatus, clock: TransitionClock, now: dt.datetime) -> str:
    document = {
        "time": go_time(now),
        "autoscalerStatus": "Running",
        "clusterWide": {
            "health": clock.condition(
                "health", status.health, now, nodeCounts=status.counts.document()
            ),
            "scaleUp": clock.condition("scaleUp", status.scale_up, now),
            "scaleDown": _scale_down(clock, "scaleDown", status.scale_down_candidates, now),
        },
        "nodeGroups": [
            {
                "name": group.name,
                "health": clock.condition(
                    f"{group.name}/health",
                    "Healthy",
                    now,
                    nodeCounts=group.counts.document(),
                    cloudProviderTarget=group.target,
                    minSize=group.min_size,
                    maxSize=group.max_size,
                ),
                "scaleUp": clock.condition(f"{group.name}/scaleUp", group.scale_up, now),
                "scaleDown": _scale_down(
                    clock, f"{group.name}/scaleDown", group.scale_down_candidates, now
                ),
            }
            for group in status.groups
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def configmap(namespace: str, text: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP,
            "namespace": namespace,
            "annotations": {LAST_UPDATED: go_time(now)},
        },
        "data": {"status": text},
    }
