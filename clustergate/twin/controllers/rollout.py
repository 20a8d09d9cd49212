"""Deployment rollout arithmetic (pkg/controller/deployment/util), as pure functions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from clustergate.twin.controllers.objects import Obj, scaled_value

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A pod-template-hash: FNV-1a over the template, written with rand.SafeEncodeString's
    alphabet (no vowels, no look-alike digits) as controller.ComputeHash does."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def template_without_hash(template: Obj) -> str:
    """A canonical form for EqualIgnoreHash."""
    copy = json.loads(json.dumps(template))
    labels = copy.setdefault("metadata", {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    copy["metadata"]["labels"] = labels
    return hashlib.sha256(json.dumps(copy, sort_keys=True).encode()).hexdigest()


def surge_and_unavailable(replicas: int, strategy: Obj) -> tuple[int, int]:
    """ResolveFenceposts: maxSurge rounds up, maxUnavailable down; both 0 means 1 unavailable."""
    rolling = strategy.get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas) if replicas else unavailable


@dataclass
class ReplicaSetView:
    """What the rollout arithmetic needs of one ReplicaSet."""

    name: str
    replicas: int  # spec.replicas
    available: int  # status.availableReplicas
    revision: int = 0


def new_replicas(
    replicas: int, strategy: Obj, new: ReplicaSetView, all_sets: list[ReplicaSetView]
) -> int:
    """NewRSNewReplicas for RollingUpdate: grow the new ReplicaSet within maxSurge."""
    surge, _ = surge_and_unavailable(replicas, strategy)
    current = sum(rs.replicas for rs in all_sets)
    most = replicas + surge
    if current >= most:
        return new.replicas
    return new.replicas + max(0, min(most - current, replicas - new.replicas))


def scale_down_old(
    replicas: int, strategy: Obj, new: ReplicaSetView, old: list[ReplicaSetView]
) -> dict[str, int]:
    """reconcileOldReplicaSets: the new spec.replicas of each old ReplicaSet (oldest first),
    never taking availability below replicas - maxUnavailable."""
    _, unavailable = surge_and_unavailable(replicas, strategy)
    result = {rs.name: rs.replicas for rs in old}
    total = new.replicas + sum(rs.replicas for rs in old)
    min_available = replicas - unavailable
    new_unavailable = new.replicas - new.available
    budget = total - min_available - new_unavailable
    if budget <= 0:
        return result
    ordered = sorted(old, key=lambda rs: (rs.revision, rs.name))
    cleaned = 0
    for rs in ordered:  # cleanupUnhealthyReplicas: unavailable old pods go first
        if cleaned >= budget:
            break
        unhealthy = result[rs.name] - rs.available
        if unhealthy <= 0:
            continue
        cut = min(budget - cleaned, unhealthy)
        result[rs.name] -= cut
        cleaned += cut
    available = new.available + sum(min(rs.available, result[rs.name]) for rs in old)
    room = min(available - min_available, budget - cleaned)
    for rs in ordered:  # scaleDownOldReplicaSetsForRollingUpdate
        if room <= 0:
            break
        cut = min(result[rs.name], room)
        result[rs.name] -= cut
        room -= cut
    return result
