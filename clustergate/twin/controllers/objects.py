"""Pure helpers over Kubernetes objects as JSON dicts: quantities, selectors, pod state."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from decimal import Decimal
from typing import Any

Obj = dict[str, Any]

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


@functools.lru_cache(maxsize=4096)
def parse_quantity(value: str | int | float) -> Decimal:
    """A resource.Quantity string (``100m``, ``1.5Gi``, ``2``, ``1e3``) as a number."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


def cpu_millis(value: str | int | float) -> int:
    return math.ceil(parse_quantity(value) * 1000)


def memory_bytes(value: str | int | float) -> int:
    return math.ceil(parse_quantity(value))


#: pod_requests of stored pods by (uid, resourceVersion): the autoscaler sums every pod's
#: requests on each scan, and at 10,000 pods parsing them again was most of its time.
_REQUESTS_SEEN: dict[tuple[str, str], tuple[int, int]] = {}
_REQUESTS_SEEN_MAX = 100_000


def pod_requests(pod: Obj) -> tuple[int, int]:
    """(cpu millis, memory bytes) the scheduler counts for a pod: the sum over containers,
    or the largest init container if that is more (as the real scheduler does)."""
    meta = pod.get("metadata") or {}
    version = (meta.get("uid"), meta.get("resourceVersion"))
    if version[0] and version[1]:
        seen = _REQUESTS_SEEN.get(version)
        if seen is None:
            if len(_REQUESTS_SEEN) >= _REQUESTS_SEEN_MAX:
                _REQUESTS_SEEN.clear()
            seen = _REQUESTS_SEEN[version] = _summed_requests(pod)
        return seen
    return _summed_requests(pod)


def _summed_requests(pod: Obj) -> tuple[int, int]:
    spec = pod.get("spec", {})

    def total(containers: list[Obj]) -> tuple[int, int]:
        cpu = mem = 0
        for container in containers:
            requests = (container.get("resources") or {}).get("requests") or {}
            cpu += cpu_millis(requests.get("cpu", 0))
            mem += memory_bytes(requests.get("memory", 0))
        return cpu, mem

    cpu, mem = total(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        init_cpu, init_mem = total([init])
        cpu, mem = max(cpu, init_cpu), max(mem, init_mem)
    return cpu, mem


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime | None = None) -> str:
    """RFC 3339 to the second, as metav1.Time serialises."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(moment: dt.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime serialises (Lease renewTime)."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def labels_match(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against labels. An empty selector matches everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(
        expression_matches(expr, labels.get(expr["key"]))
        for expr in selector.get("matchExpressions") or []
    )


def expression_matches(expression: Obj, value: str | None) -> bool:
    """One selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against a value."""
    operator = expression["operator"]
    values = expression.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def selector_string(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Obj, *, controller: bool = True) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def condition(obj: Obj, kind: str) -> Obj | None:
    for entry in obj.get("status", {}).get("conditions") or []:
        if entry.get("type") == kind:
            return entry
    return None


def set_condition(
    conditions: list[Obj], kind: str, status: str, reason: str, message: str, **extra: Any
) -> list[Obj]:
    """Replace-or-append a condition; lastTransitionTime moves only when status changes."""
    stamp = timestamp()
    result = []
    found = False
    for entry in conditions:
        if entry.get("type") == kind:
            found = True
            changed = entry.get("status") != status
            entry = {
                **entry,
                **extra,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp if changed else entry.get("lastTransitionTime", stamp),
            }
        result.append(entry)
    if not found:
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp,
                **extra,
            }
        )
    return result


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def pod_ready(pod: Obj) -> bool:
    ready = condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def pod_finished(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def pod_active(pod: Obj) -> bool:
    """Counts toward a controller's replicas: not finished and not being deleted."""
    return not pod_finished(pod) and not is_terminating(pod)


def node_ready(node: Obj) -> bool:
    ready = condition(node, "Ready")
    return ready is not None and ready.get("status") == "True"


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int, or a percentage of ``total``."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    share = int(text[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    """v1helper.TolerationsTolerateTaint."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key") or ""
        if operator == "Exists" and not key:
            return True
        if key != taint.get("key"):
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def untolerated_taint(node: Obj, tolerations: list[Obj], effects: tuple[str, ...]) -> Obj | None:
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in effects and not tolerates(tolerations, taint):
            return taint
    return None


def node_field(node: Obj, field: str) -> str | None:
    return node["metadata"]["name"] if field == "metadata.name" else None


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(expression_matches(e, labels.get(e["key"])) for e in expressions) and all(
        expression_matches(f, node_field(node, f["key"])) for f in fields
    )


def node_matches_pod_affinity(pod: Obj, node: Obj) -> bool:
    """nodeSelector and required nodeAffinity (the NodeAffinity filter)."""
    spec = pod.get("spec", {})
    labels = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(node_selector_term_matches(term, node) for term in terms)
