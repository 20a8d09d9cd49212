"""flowcontrol.apiserver.k8s.io/v1: FlowSchema and PriorityLevelConfiguration, with the
mandatory and suggested configuration the API server keeps
(k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap/default.go). The twin does not queue or
reject requests by them: they are served for reading and editing."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Obj, ResourceType, status

_AUTO_UPDATE = {"apf.kubernetes.io/autoupdate-spec": "true"}
#: name → (nominalConcurrencyShares, lendablePercent, (queues, handSize, queueLengthLimit)).
_LIMITED: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "catch-all": (5, 0, None),
    "global-default": (20, 50, (128, 6, 50)),
    "leader-election": (10, 0, (16, 4, 50)),
    "node-high": (40, 25, (64, 6, 50)),
    "system": (30, 33, (64, 6, 50)),
    "workload-high": (40, 50, (128, 6, 50)),
    "workload-low": (100, 90, (128, 6, 50)),
}
_ALL_RESOURCES = {
    "verbs": ["*"],
    "apiGroups": ["*"],
    "resources": ["*"],
    "clusterScope": True,
    "namespaces": ["*"],
}
_ALL_NON_RESOURCES = {"verbs": ["*"], "nonResourceURLs": ["*"]}
_LEADER_ELECTION = {
    "verbs": ["get", "create", "update"],
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "namespaces": ["*"],
}


def _group(name: str) -> Obj:
    return {"kind": "Group", "group": {"name": name}}


def _user(name: str) -> Obj:
    return {"kind": "User", "user": {"name": name}}


def _account(namespace: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


_ALL = {"resourceRules": [_ALL_RESOURCES], "nonResourceRules": [_ALL_NON_RESOURCES]}
_KUBE_SYSTEM_ALL = {
    "resourceRules": [{**_ALL_RESOURCES, "namespaces": ["kube-system"], "clusterScope": True}],
    "nonResourceRules": [_ALL_NON_RESOURCES],
}
_PROBES = {
    "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]
}
#: name → (priority level, matchingPrecedence, distinguisher or None, subjects, rules).
_FLOW_SCHEMAS: tuple[tuple[str, str, int, str | None, list[Obj], Obj], ...] = (
    ("exempt", "exempt", 1, None, [_group("system:masters")], _ALL),
    (
        "probes",
        "exempt",
        2,
        None,
        [_group("system:unauthenticated"), _group("system:authenticated")],
        _PROBES,
    ),
    (
        "system-leader-election",
        "leader-election",
        100,
        "ByUser",
        [_user("system:kube-controller-manager"), _user("system:kube-scheduler")],
        {"resourceRules": [_LEADER_ELECTION]},
    ),
    (
        "endpoint-controller",
        "workload-high",
        150,
        "ByUser",
        [_user("system:kube-controller-manager"), _account("kube-system", "endpoint-controller")],
        {
            "resourceRules": [
                {
                    "verbs": ["get", "create", "update"],
                    "apiGroups": [""],
                    "resources": ["endpoints"],
                    "namespaces": ["*"],
                }
            ]
        },
    ),
    (
        "workload-leader-election",
        "leader-election",
        200,
        "ByUser",
        [_group("system:serviceaccounts")],
        {"resourceRules": [_LEADER_ELECTION]},
    ),
    ("system-node-high", "node-high", 400, "ByUser", [_group("system:nodes")], _ALL),
    ("system-nodes", "system", 500, "ByUser", [_group("system:nodes")], _ALL),
    (
        "kube-controller-manager",
        "workload-high",
        800,
        "ByNamespace",
        [_user("system:kube-controller-manager")],
        _ALL,
    ),
    ("kube-scheduler", "workload-high", 800, "ByNamespace", [_user("system:kube-scheduler")], _ALL),
    (
        "kube-system-service-accounts",
        "workload-high",
        900,
        "ByNamespace",
        [_group("system:serviceaccounts:kube-system")],
        _KUBE_SYSTEM_ALL,
    ),
    (
        "service-accounts",
        "workload-low",
        9000,
        "ByUser",
        [_group("system:serviceaccounts")],
        _ALL,
    ),
    (
        "global-default",
        "global-default",
        9900,
        "ByUser",
        [_group("system:unauthenticated"), _group("system:authenticated")],
        _ALL,
    ),
    (
        "catch-all",
        "catch-all",
        10000,
        "ByUser",
        [_group("system:unauthenticated"), _group("system:authenticated")],
        _ALL,
    ),
)


def _priority_level(name: str) -> Obj:
    meta = {"name": name, "annotations": dict(_AUTO_UPDATE)}
    if name == "exempt":
        spec: Obj = {
            "type": "Exempt",
            "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0},
        }
        return {"metadata": meta, "spec": spec}
    shares, lendable, queuing = _LIMITED[name]
    if queuing is None:
        response: Obj = {"type": "Reject"}
    else:
        queues, hand, length = queuing
        response = {
            "type": "Queue",
            "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": length},
        }
    limited = {
        "nominalConcurrencyShares": shares,
        "lendablePercent": lendable,
        "limitResponse": response,
    }
    return {"metadata": meta, "spec": {"type": "Limited", "limited": limited}}


def _flow_schema(
    name: str, level: str, precedence: int, method: str | None, subjects: list[Obj], rules: Obj
) -> Obj:
    spec: Obj = {
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": [{"subjects": subjects, **rules}],
    }
    if method:
        spec["distinguisherMethod"] = {"type": method}
    condition = {
        "type": "Dangling",
        "status": "False",
        "reason": "Found",
        "message": f"This FlowSchema references the PriorityLevelConfiguration object named "
        f'"{level}" and it exists',
    }
    return {
        "metadata": {"name": name, "annotations": dict(_AUTO_UPDATE)},
        "spec": spec,
        "status": {"conditions": [condition]},
    }


def default_flow_schema(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("matchingPrecedence", 1000)


GROUP = ApiGroup(
    "flowcontrol.apiserver.k8s.io",
    (
        ResourceType(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "flowschemas",
            "FlowSchema",
            False,
            subresources=(status("FlowSchema"),),
        ),
        ResourceType(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "prioritylevelconfigurations",
            "PriorityLevelConfiguration",
            False,
            subresources=(status("PriorityLevelConfiguration"),),
        ),
    ),
    defaults={"flowschemas": default_flow_schema},
    bootstrap=(
        *(("prioritylevelconfigurations", _priority_level(n)) for n in ("exempt", *_LIMITED)),
        *(("flowschemas", _flow_schema(*row)) for row in _FLOW_SCHEMAS),
    ),
)
