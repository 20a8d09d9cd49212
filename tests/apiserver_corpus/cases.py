"""The fixed list of requests of the corpus, each case a function of a Wire.

A case makes its own namespace, sends its requests, and returns what it saw: status codes and
the fields clustergate's library (and kubectl) read, never values that differ by nature between
two servers (resourceVersions, uids, timestamps, tokens). The recorder and the replay run the
same functions, so a difference is a difference in the servers' answers, nothing else.

Both servers run without controllers: namespaces get their "default" ServiceAccount from the
case (as the ServiceAccount controller would give it) and a budget's status is written through
its status subresource (as the disruption controller would write it).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

from tests.apiserver_corpus.wire import JSON_PATCH, MERGE, STRATEGIC, Answer, Wire

Observed = dict[str, Any]
Case = Callable[[Wire], Observed]

#: Users the servers know that hold no permission at all.
UNPRIVILEGED = "corpus-nobody"

CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__] = function
    return function


#: Values inside messages that differ by nature between two servers, and what stands for them.
_VARYING = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uid>"),
    (re.compile(r"resource version: \d+ \(\d+\)"), "resource version: <rv> (<rv>)"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
)


def steady(message: Any) -> Any:
    """``message`` with uids and resourceVersions replaced by placeholders."""
    if not isinstance(message, str):
        return message
    for pattern, placeholder in _VARYING:
        message = pattern.sub(placeholder, message)
    return message


def status_of(answer: Answer) -> Observed:
    """A Status answer as clients read it: code, reason, message, details and causes."""
    body = answer.body if isinstance(answer.body, dict) else {}
    details = body.get("details") or {}
    seen: Observed = {
        "status": answer.status,
        "kind": body.get("kind"),
        "reason": body.get("reason"),
        "message": steady(body.get("message")),
        "code": body.get("code"),
    }
    if details:
        seen["details"] = {
            key: details[key] for key in ("name", "group", "kind") if details.get(key) is not None
        }
        causes = details.get("causes") or []
        seen["causes"] = sorted(
            (
                {
                    key: steady(cause.get(key))
                    for key in ("reason", "field", "message")
                    if key in cause
                }
                for cause in causes
            ),
            key=lambda cause: json.dumps(cause, sort_keys=True),
        )
    return seen


def namespace(wire: Wire, name: str) -> str:
    wire.send("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    wire.send(
        "POST",
        f"/api/v1/namespaces/{name}/serviceaccounts",
        {"metadata": {"name": "default"}},
    )
    return name


def configmap(wire: Wire, ns: str, name: str, **data: str) -> Answer:
    return wire.send(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": name}, "data": data},
    )


def pod_body(name: str, node: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def running_pod(wire: Wire, ns: str, name: str, node: str, labels: dict[str, str]) -> None:
    """A pod bound to ``node`` and reported Running and Ready, as its kubelet would."""
    created = wire.send("POST", f"/api/v1/namespaces/{ns}/pods", pod_body(name, node, labels))
    pod = created.body
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    wire.send("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)


def names(answer: Answer) -> list[str]:
    return [item["metadata"]["name"] for item in answer.field("items") or []]


@case
def create_twice(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-create-twice")
    first = configmap(wire, ns, "settings", a="1")
    second = configmap(wire, ns, "settings", a="2")
    return {"first": first.status, "second": status_of(second)}


@case
def update_with_stale_resource_version(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-stale-update")
    created = configmap(wire, ns, "settings", a="1").body
    path = f"/api/v1/namespaces/{ns}/configmaps/settings"
    fresh = dict(created, data={"a": "2"})
    updated = wire.send("PUT", path, fresh)
    stale = dict(created, data={"a": "3"})
    return {"update": updated.status, "stale": status_of(wire.send("PUT", path, stale))}


@case
def get_missing(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-missing")
    return {
        "configmap": status_of(wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps/nope")),
        "node": status_of(wire.send("GET", "/api/v1/nodes/corpus-no-such-node")),
        "pod_in_missing_namespace": status_of(
            wire.send("GET", "/api/v1/namespaces/corpus-no-such-namespace/pods/p")
        ),
    }


@case
def invalid_objects(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-invalid")
    bad_name = configmap(wire, ns, "Bad_Name")
    no_containers = wire.send(
        "POST",
        f"/api/v1/namespaces/{ns}/pods",
        {"metadata": {"name": "empty"}, "spec": {"containers": []}},
    )
    return {"bad_name": status_of(bad_name), "no_containers": status_of(no_containers)}


@case
def paged_list(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-paging")
    for index in range(7):
        configmap(wire, ns, f"c{index}")
    path = f"/api/v1/namespaces/{ns}/configmaps?limit=3"
    pages: list[Observed] = []
    token = None
    while True:
        answer = wire.send("GET", path + (f"&continue={token}" if token else ""))
        token = answer.field("metadata", "continue")
        pages.append(
            {
                "status": answer.status,
                "items": names(answer),
                "continue": bool(token),
                "remainingItemCount": answer.field("metadata", "remainingItemCount"),
            }
        )
        if not token or len(pages) > 5:
            return {"pages": pages}


@case
def expired_continue_token(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-expired-continue")
    for index in range(4):
        configmap(wire, ns, f"c{index}")
    path = f"/api/v1/namespaces/{ns}/configmaps?limit=2"
    token = wire.send("GET", path).field("metadata", "continue")
    configmap(wire, ns, "after")
    wire.compact()
    expired = wire.send("GET", f"{path}&continue={token}")
    garbage = status_of(wire.send("GET", f"{path}&continue=bm90LWEtdG9rZW4"))
    # The decoder's own words (Go's encoding/json on a real server) follow the last colon.
    garbage["message"] = garbage["message"].rsplit(": ", 1)[0]
    return {"expired": status_of(expired), "garbage": garbage}


@case
def field_selectors(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-fields")
    for name, node in (("p1", "corpus-n1"), ("p2", "corpus-n2"), ("p3", "")):
        wire.send("POST", f"/api/v1/namespaces/{ns}/pods", pod_body(name, node))
    configmap(wire, ns, "keep")
    configmap(wire, ns, "other")
    pods = f"/api/v1/namespaces/{ns}/pods"
    return {
        "on_node": names(wire.send("GET", f"{pods}?fieldSelector=spec.nodeName%3Dcorpus-n1")),
        "unbound": names(wire.send("GET", f"{pods}?fieldSelector=spec.nodeName%3D")),
        "not_on_node": names(
            wire.send("GET", f"{pods}?fieldSelector=spec.nodeName%21%3Dcorpus-n1")
        ),
        "cluster_wide_on_node": names(
            wire.send("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dcorpus-n2")
        ),
        "phase": names(wire.send("GET", f"{pods}?fieldSelector=status.phase%3DPending")),
        "by_name": names(
            wire.send(
                "GET", f"/api/v1/namespaces/{ns}/configmaps?fieldSelector=metadata.name%3Dkeep"
            )
        ),
        "unsupported": status_of(wire.send("GET", f"{pods}?fieldSelector=spec.bogus%3Dx")),
        "malformed": status_of(wire.send("GET", f"{pods}?fieldSelector=spec.nodeName")),
    }


@case
def label_selectors(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-labels")
    for name, labels in (
        ("web", {"app": "web", "tier": "front"}),
        ("db", {"app": "db"}),
        ("bare", {}),
    ):
        wire.send("POST", f"/api/v1/namespaces/{ns}/pods", pod_body(name, labels=labels))
    pods = f"/api/v1/namespaces/{ns}/pods?labelSelector="
    return {
        "equals": names(wire.send("GET", pods + "app%3Dweb")),
        "in": names(wire.send("GET", pods + "app%20in%20%28web%2Cdb%29")),
        "notin": names(wire.send("GET", pods + "app%20notin%20%28web%29")),
        "exists": names(wire.send("GET", pods + "tier")),
        "not_exists": names(wire.send("GET", pods + "%21app")),
        "and": names(wire.send("GET", pods + "app%3Dweb%2Ctier%3Dfront")),
        "malformed": status_of(wire.send("GET", pods + "app%20in%20%28web")),
    }


@case
def patches(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-patches")
    path = f"/api/v1/namespaces/{ns}/pods/p"
    wire.send("POST", f"/api/v1/namespaces/{ns}/pods", pod_body("p", labels={"a": "1", "b": "2"}))
    merge = wire.send(
        "PATCH", path, {"metadata": {"labels": {"b": None, "c": "3"}}}, content_type=MERGE
    )
    strategic = wire.send(
        "PATCH",
        path,
        {"spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}},
        content_type=STRATEGIC,
    )
    json_patch = wire.send(
        "PATCH",
        path,
        [{"op": "replace", "path": "/metadata/labels/a", "value": "9"}],
        content_type=JSON_PATCH,
    )
    failed_test = wire.send(
        "PATCH",
        path,
        [{"op": "test", "path": "/metadata/labels/a", "value": "1"}],
        content_type=JSON_PATCH,
    )
    missing_path = wire.send(
        "PATCH",
        path,
        [{"op": "remove", "path": "/metadata/labels/zzz"}],
        content_type=JSON_PATCH,
    )
    immutable = wire.send(
        "PATCH", path, {"spec": {"restartPolicy": "Never"}}, content_type=STRATEGIC
    )
    missing_object = wire.send(
        "PATCH", f"/api/v1/namespaces/{ns}/pods/nope", {"metadata": {}}, content_type=MERGE
    )
    containers = strategic.field("spec", "containers") or []
    return {
        "merge": {"status": merge.status, "labels": merge.field("metadata", "labels")},
        "strategic": {
            "status": strategic.status,
            "containers": [(c.get("name"), c.get("image")) for c in containers],
        },
        "json_patch": {
            "status": json_patch.status,
            "labels": json_patch.field("metadata", "labels"),
        },
        "failed_test": status_of(failed_test),
        "missing_path": status_of(missing_path),
        "immutable_field": {"status": immutable.status, "reason": immutable.field("reason")},
        "missing_object": status_of(missing_object),
    }


@case
def cordon_and_taint(wire: Wire) -> Observed:
    wire.send("POST", "/api/v1/nodes", {"metadata": {"name": "corpus-cordon"}, "spec": {}})
    path = "/api/v1/nodes/corpus-cordon"
    cordon = wire.send("PATCH", path, {"spec": {"unschedulable": True}}, content_type=STRATEGIC)
    taint = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    tainted = wire.send("PATCH", path, {"spec": {"taints": [taint]}}, content_type=STRATEGIC)
    other = {"key": "gpu", "effect": "NoExecute"}
    replaced = wire.send("PATCH", path, {"spec": {"taints": [other]}}, content_type=STRATEGIC)
    uncordon = wire.send("PATCH", path, {"spec": {"unschedulable": None}}, content_type=STRATEGIC)
    return {
        "cordon": (cordon.status, cordon.field("spec", "unschedulable")),
        "taints_after_second_patch": [
            (t.get("key"), t.get("effect")) for t in replaced.field("spec", "taints") or []
        ],
        "first_taint": tainted.status,
        "uncordon": (uncordon.status, uncordon.field("spec", "unschedulable")),
    }


def _evict(wire: Wire, ns: str, pod: str) -> Answer:
    return wire.send(
        "POST",
        f"/api/v1/namespaces/{ns}/pods/{pod}/eviction",
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": ns},
        },
    )


def _budget(wire: Wire, ns: str, name: str, app: str, status: dict[str, int] | None) -> None:
    created = wire.send(
        "POST",
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        {
            "metadata": {"name": name},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        },
    ).body
    if status is not None:
        created["status"] = dict(status, observedGeneration=created["metadata"]["generation"])
        wire.send(
            "PUT",
            f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}/status",
            created,
        )


def _deleting(wire: Wire, ns: str, pod: str) -> Observed:
    got = wire.send("GET", f"/api/v1/namespaces/{ns}/pods/{pod}")
    return {
        "status": got.status,
        "deleting": got.field("metadata", "deletionTimestamp") is not None,
    }


@case
def eviction(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-eviction")
    seen: Observed = {}
    running_pod(wire, ns, "free", "corpus-n1", {"app": "free"})
    seen["no_budget"] = status_of(_evict(wire, ns, "free"))
    seen["no_budget_after"] = _deleting(wire, ns, "free")

    running_pod(wire, ns, "unobserved", "corpus-n1", {"app": "unobserved"})
    _budget(wire, ns, "unobserved", "unobserved", None)
    seen["budget_not_observed"] = status_of(_evict(wire, ns, "unobserved"))

    healthy = {"currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    running_pod(wire, ns, "guarded", "corpus-n1", {"app": "guarded"})
    _budget(wire, ns, "guarded", "guarded", dict(healthy, disruptionsAllowed=0))
    seen["budget_exhausted"] = status_of(_evict(wire, ns, "guarded"))
    seen["budget_exhausted_after"] = _deleting(wire, ns, "guarded")

    running_pod(wire, ns, "allowed", "corpus-n1", {"app": "allowed"})
    _budget(wire, ns, "allowed", "allowed", dict(healthy, disruptionsAllowed=1))
    seen["budget_allows"] = status_of(_evict(wire, ns, "allowed"))
    seen["budget_allows_after"] = _deleting(wire, ns, "allowed")

    running_pod(wire, ns, "double", "corpus-n1", {"app": "double"})
    _budget(wire, ns, "double-a", "double", dict(healthy, disruptionsAllowed=1))
    _budget(wire, ns, "double-b", "double", dict(healthy, disruptionsAllowed=1))
    seen["two_budgets"] = status_of(_evict(wire, ns, "double"))

    wire.send("POST", f"/api/v1/namespaces/{ns}/pods", pod_body("pending", "", {"app": "guarded"}))
    seen["pending_pod_under_exhausted_budget"] = status_of(_evict(wire, ns, "pending"))
    seen["pending_pod_after"] = _deleting(wire, ns, "pending")

    seen["missing_pod"] = status_of(_evict(wire, ns, "nope"))
    return seen


@case
def access_reviews(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-access")

    def review(as_user: str | None, verb: str, resource: str) -> Observed:
        answer = wire.send(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource}
                },
            },
            as_user=as_user,
        )
        return {"status": answer.status, "allowed": answer.field("status", "allowed")}

    forbidden = wire.send("GET", f"/api/v1/namespaces/{ns}/pods", as_user=UNPRIVILEGED)
    cluster_forbidden = wire.send("GET", "/api/v1/nodes", as_user=UNPRIVILEGED)
    return {
        "admin_create_pods": review(None, "create", "pods"),
        "nobody_delete_pods": review(UNPRIVILEGED, "delete", "pods"),
        "nobody_list": status_of(forbidden),
        "nobody_list_nodes": status_of(cluster_forbidden),
    }


RBAC = "/apis/rbac.authorization.k8s.io/v1"
GROUP = "rbac.authorization.k8s.io"


@case
def role_with_resource_name(wire: Wire) -> Observed:
    """A Role granting get on one ConfigMap by name, bound to the unprivileged user: the
    request for that name passes, another name and a list are refused, and the self-reviews
    answer from the same rules (SSRR's rules outside the core group are the version's own
    bootstrap roles, so only the core-group rules are compared)."""
    ns = namespace(wire, "corpus-rbac")
    configmap(wire, ns, "allowed", key="value")
    configmap(wire, ns, "other", key="value")
    wire.send(
        "POST",
        f"{RBAC}/namespaces/{ns}/roles",
        {
            "metadata": {"name": "one-configmap"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["allowed"],
                    "verbs": ["get"],
                }
            ],
        },
    )
    wire.send(
        "POST",
        f"{RBAC}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "nobody-reads-one"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "one-configmap",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": UNPRIVILEGED}
            ],
        },
    )

    def review(attributes: dict[str, str], as_user: str | None = UNPRIVILEGED) -> Observed:
        answer = wire.send(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"spec": {"resourceAttributes": attributes}},
            as_user=as_user,
        )
        return {"status": answer.status, "review": answer.field("status")}

    def named(name: str, verb: str = "get") -> dict[str, str]:
        return {"namespace": ns, "verb": verb, "resource": "configmaps", "name": name}

    def rules(in_namespace: str) -> Observed:
        answer = wire.send(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            {"spec": {"namespace": in_namespace}},
            as_user=UNPRIVILEGED,
        )
        core = [
            rule
            for rule in answer.field("status", "resourceRules") or []
            if rule.get("apiGroups") == [""]
        ]
        return {"status": answer.status, "core_rules": core}

    allowed = wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps/allowed", as_user=UNPRIVILEGED)
    return {
        "get_named": {"status": allowed.status, "data": allowed.field("data")},
        "get_other": status_of(
            wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps/other", as_user=UNPRIVILEGED)
        ),
        "list": status_of(
            wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps", as_user=UNPRIVILEGED)
        ),
        "review_named": review(named("allowed")),
        "review_other": review(named("other")),
        "review_delete_named": review(named("allowed", "delete")),
        # system:masters is allowed before RBAC is asked, so its answer names no binding.
        "admin_review": review({"verb": "patch", "resource": "nodes"}, as_user=None),
        "rules_here": rules(ns),
        "rules_elsewhere": rules("default"),
    }


@case
def binding_escalation(wire: Wire) -> Observed:
    """RBAC's escalation check: the unprivileged user, allowed to create RoleBindings and to
    ``bind`` one ClusterRole, binds that one; binding another whose rules it does not hold is
    refused with the rules it lacks; and it cannot write a Role granting more than it holds."""
    ns = namespace(wire, "corpus-escalation")

    def cluster_role(name: str, rules: list[dict[str, Any]]) -> None:
        wire.send("POST", f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": rules})

    cluster_role("corpus-bindable", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    cluster_role(
        "corpus-powerful",
        [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        ],
    )
    cluster_role(
        "corpus-binder",
        [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"],
             "verbs": ["create"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
             "verbs": ["bind"], "resourceNames": ["corpus-bindable"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ],
    )  # fmt: skip
    wire.send(
        "POST",
        f"{RBAC}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "nobody-binds"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "corpus-binder"},
            "subjects": [{"apiGroup": GROUP, "kind": "User", "name": UNPRIVILEGED}],
        },
    )

    def bind(name: str, role: str) -> Answer:
        return wire.send(
            "POST",
            f"{RBAC}/namespaces/{ns}/rolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": GROUP, "kind": "User", "name": "someone"}],
            },
            as_user=UNPRIVILEGED,
        )

    def role(name: str, rules: list[dict[str, Any]]) -> Answer:
        body = {"metadata": {"name": name}, "rules": rules}
        return wire.send("POST", f"{RBAC}/namespaces/{ns}/roles", body, as_user=UNPRIVILEGED)

    allowed = bind("binds-bindable", "corpus-bindable")
    held = role("held", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    return {
        "bind_allowed": {"status": allowed.status, "role": allowed.field("roleRef", "name")},
        "bind_escalating": status_of(bind("binds-powerful", "corpus-powerful")),
        "role_held": {"status": held.status},
        "role_escalating": status_of(
            role("more", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}])
        ),
    }


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@case
def token_request(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-tokens")
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"

    def request(seconds: int, account_path: str = path) -> Answer:
        return wire.send(
            "POST",
            account_path,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": seconds},
            },
        )

    issued = request(3600)
    claims = _claims(issued.field("status", "token") or "e30.e30.")
    return {
        "status": issued.status,
        "kind": issued.field("kind"),
        "has_expiration": issued.field("status", "expirationTimestamp") is not None,
        "spec_expiration": issued.field("spec", "expirationSeconds"),
        "claim_keys": sorted(claims),
        "aud": claims.get("aud"),
        "sub": claims.get("sub"),
        "lifetime": claims.get("exp", 0) - claims.get("iat", 0),
        "kubernetes_io_keys": sorted(claims.get("kubernetes.io", {})),
        "too_short": status_of(request(60)),
        "missing_account": status_of(
            request(3600, f"/api/v1/namespaces/{ns}/serviceaccounts/nope/token")
        ),
    }


#: Resources of the core and policy groups that clustergate or kubectl drain use.
_LIBRARY_RESOURCES = {
    "/api/v1": (
        "pods",
        "pods/eviction",
        "pods/log",
        "pods/status",
        "nodes",
        "nodes/proxy",
        "namespaces",
        "configmaps",
        "services",
        "events",
        "serviceaccounts",
        "serviceaccounts/token",
        "endpoints",
    ),
    "/apis/policy/v1": ("poddisruptionbudgets", "poddisruptionbudgets/status"),
    "/apis/apps/v1": ("deployments", "daemonsets", "replicasets", "deployments/scale"),
    "/apis/coordination.k8s.io/v1": ("leases",),
}


@case
def discovery(wire: Wire) -> Observed:
    seen: Observed = {"api_versions": wire.send("GET", "/api").field("versions")}
    groups = wire.send("GET", "/apis").field("groups") or []
    # Group names only: which versions a group serves is a matter of the minor.
    seen["groups"] = {group["name"]: "served" for group in groups}
    for path, wanted in _LIBRARY_RESOURCES.items():
        listed = {r["name"]: r for r in wire.send("GET", path).field("resources") or []}
        seen[path] = {
            name: {
                "namespaced": listed[name].get("namespaced"),
                "kind": listed[name].get("kind"),
                "verbs": sorted(listed[name].get("verbs") or []),
                "shortNames": sorted(listed[name].get("shortNames") or []),
            }
            if name in listed
            else None
            for name in wanted
        }
    version = wire.send("GET", "/version")
    seen["version_keys"] = sorted(version.body) if isinstance(version.body, dict) else None
    return seen


@case
def watch_events(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-watch")
    listed = wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps")
    since = listed.field("metadata", "resourceVersion")
    path = f"/api/v1/namespaces/{ns}/configmaps/w"
    configmap(wire, ns, "w", a="1")
    wire.send("PATCH", path, {"data": {"a": "2"}}, content_type=MERGE)
    wire.send("DELETE", path)
    status, events = wire.watch(
        f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={since}",
        until=lambda seen: len(seen) >= 3,
    )
    return {
        "status": status,
        "events": [(e["type"], e["object"]["metadata"]["name"]) for e in events],
        "data": [e["object"].get("data") for e in events],
    }


@case
def watch_too_old(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-watch-old")
    since = wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps").field(
        "metadata", "resourceVersion"
    )
    configmap(wire, ns, "a")
    configmap(wire, ns, "b")
    wire.compact()
    status, events = wire.watch(
        f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={since}",
        until=lambda seen: len(seen) >= 1,
    )
    first = events[0] if events else {}
    return {
        "status": status,
        "first_type": first.get("type"),
        "first_object": status_of(Answer(status, first.get("object")))
        if first.get("type") == "ERROR"
        else None,
    }


@case
def delete_semantics(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-delete")
    configmap(wire, ns, "gone")
    path = f"/api/v1/namespaces/{ns}/configmaps/gone"
    deleted = wire.send("DELETE", path)
    again = wire.send("DELETE", path)
    configmap(wire, ns, "guarded")
    precondition = wire.send(
        "DELETE",
        f"/api/v1/namespaces/{ns}/configmaps/guarded",
        {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )
    return {
        "deleted": {"status": deleted.status, "kind": deleted.field("kind")},
        "again": status_of(again),
        "wrong_uid": status_of(precondition),
    }


@case
def dry_run(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-dry-run")
    created = wire.send(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps?dryRun=All",
        {"metadata": {"name": "ghost"}},
    )
    after = wire.send("GET", f"/api/v1/namespaces/{ns}/configmaps/ghost")
    return {"created": created.status, "stored": after.status}


def _spec_of(answer: Answer) -> Any:
    return answer.field("spec") if answer.status < 300 else status_of(answer)


@case
def horizontal_pod_autoscalers(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-hpa")
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    defaulted = wire.send(
        "POST",
        path,
        {"metadata": {"name": "web"}, "spec": {"scaleTargetRef": target, "maxReplicas": 3}},
    )
    inverted = wire.send(
        "POST",
        path,
        {
            "metadata": {"name": "bad"},
            "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": 3, "maxReplicas": 2},
        },
    )
    return {"defaulted": _spec_of(defaulted), "inverted": status_of(inverted)}


@case
def networking_objects(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-networking")
    ingresses = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"
    backend = {"service": {"name": "web", "port": {"number": 80}}}

    def ingress(name: str, paths: list[dict[str, Any]] | None) -> Answer:
        spec = {"rules": [{"http": {"paths": paths}}]} if paths is not None else {}
        return wire.send("POST", ingresses, {"metadata": {"name": name}, "spec": spec})

    policies = f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
    ingress_only = wire.send(
        "POST",
        policies,
        {"metadata": {"name": "in"}, "spec": {"ingress": [{"ports": [{"port": 80}]}]}},
    )
    both = wire.send("POST", policies, {"metadata": {"name": "both"}, "spec": {"egress": [{}]}})
    return {
        "ingress_empty": status_of(ingress("empty", None)),
        "ingress_no_path_type": status_of(ingress("nopath", [{"path": "/", "backend": backend}])),
        "ingress_bad_path_type": status_of(
            ingress("badpath", [{"path": "/", "pathType": "Regex", "backend": backend}])
        ),
        "ingress_made": _spec_of(
            ingress("web", [{"path": "/", "pathType": "Prefix", "backend": backend}])
        ),
        "ingress_class_no_controller": status_of(
            wire.send(
                "POST", "/apis/networking.k8s.io/v1/ingressclasses", {"metadata": {"name": "x"}}
            )
        ),
        "policy_ingress_only": _spec_of(ingress_only),
        "policy_with_egress": _spec_of(both),
    }


@case
def priority_classes(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-priority")
    classes = "/apis/scheduling.k8s.io/v1/priorityclasses"
    builtin = {}
    for name in ("system-node-critical", "system-cluster-critical"):
        got = wire.send("GET", f"{classes}/{name}")
        builtin[name] = {key: got.field(key) for key in ("value", "preemptionPolicy")}
    made = wire.send("POST", classes, {"metadata": {"name": "corpus-high"}, "value": 1000})
    changed = dict(made.body)
    changed["value"] = 2000
    reserved = wire.send("POST", classes, {"metadata": {"name": "system-corpus"}, "value": 1000})
    too_high = wire.send(
        "POST", classes, {"metadata": {"name": "corpus-huge"}, "value": 2000000000}
    )
    pods = f"/api/v1/namespaces/{ns}/pods"
    critical = pod_body("critical")
    critical["spec"]["priorityClassName"] = "system-node-critical"
    unknown = pod_body("unknown")
    unknown["spec"]["priorityClassName"] = "nope"
    made_pod = wire.send("POST", pods, critical)
    return {
        "builtin": builtin,
        "made": {"value": made.field("value"), "preemptionPolicy": made.field("preemptionPolicy")},
        "value_changed": status_of(wire.send("PUT", f"{classes}/corpus-high", changed)),
        "reserved_prefix": status_of(reserved),
        "too_high": status_of(too_high),
        "pod_critical": {
            "status": made_pod.status,
            "priority": made_pod.field("spec", "priority"),
            "preemptionPolicy": made_pod.field("spec", "preemptionPolicy"),
        },
        "pod_unknown_class": status_of(wire.send("POST", pods, unknown)),
    }


@case
def storage_node_and_certificates(wire: Wire) -> Observed:
    classes = "/apis/storage.k8s.io/v1/storageclasses"
    made = wire.send(
        "POST", classes, {"metadata": {"name": "corpus-gp3"}, "provisioner": "ebs.csi.aws.com"}
    )
    moved = wire.send(
        "PATCH", f"{classes}/corpus-gp3", {"provisioner": "other"}, content_type=MERGE
    )
    runtime = wire.send(
        "POST", "/apis/node.k8s.io/v1/runtimeclasses", {"metadata": {"name": "kata"}}
    )
    csr = wire.send(
        "POST",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        {"metadata": {"name": "corpus-csr"}, "spec": {"signerName": "example.com/x"}},
    )
    return {
        "storage_class": {
            key: made.field(key) for key in ("reclaimPolicy", "volumeBindingMode", "provisioner")
        },
        "provisioner_changed": status_of(moved),
        "runtime_class_no_handler": status_of(runtime),
        "csr_no_request": status_of(csr),
    }


@case
def endpoint_slices(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-slices")
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    no_type = wire.send("POST", slices, {"metadata": {"name": "bare"}, "endpoints": []})
    made = wire.send(
        "POST",
        slices,
        {
            "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"port": 80}],
        },
    )
    return {
        "no_address_type": status_of(no_type),
        "made": {
            "status": made.status,
            "ports": made.field("ports"),
            "endpoints": made.field("endpoints"),
        },
    }


# ---- server-side apply

APPLY = "application/apply-patch+yaml"


def _managed(answer: Answer) -> list[Observed]:
    """managedFields as recorded, without the times, in a stable order."""
    entries = answer.field("metadata", "managedFields") or []
    seen = [
        {key: entry.get(key) for key in ("manager", "operation", "fieldsType", "fieldsV1")}
        | ({"subresource": entry["subresource"]} if entry.get("subresource") else {})
        for entry in entries
    ]
    return sorted(seen, key=lambda entry: (entry["manager"], entry["operation"]))


def _applied(answer: Answer, *path: str) -> Observed:
    return {"status": answer.status, "value": answer.field(*path), "managed": _managed(answer)}


@case
def server_side_apply(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-apply")
    configmaps = f"/api/v1/namespaces/{ns}/configmaps"

    def apply(data: dict[str, str], manager: str, force: bool = False) -> Answer:
        query = f"?fieldManager={manager}" + ("&force=true" if force else "")
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}
        return wire.send("PATCH", f"{configmaps}/c{query}", body, content_type=APPLY)

    no_manager = wire.send(
        "PATCH",
        f"{configmaps}/c",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        content_type=APPLY,
    )
    created = apply({"a": "1", "b": "2"}, "alice")
    again = apply({"a": "1", "b": "2"}, "alice")
    edited = wire.send(
        "PATCH",
        f"{configmaps}/c?fieldManager=kubectl-edit",
        {"data": {"b": "3"}},
        content_type=MERGE,
    )
    one_conflict = apply({"b": "4"}, "bob")
    two_conflicts = apply({"a": "5", "b": "4"}, "bob")
    shared = apply({"a": "1"}, "carol")
    forced = apply({"a": "6"}, "bob", force=True)
    owned = apply({"y": "1"}, "dave")
    released = apply({}, "dave")
    posted = wire.send(
        "POST",
        configmaps,
        {"metadata": {"name": "posted", "labels": {"l": "1"}}, "data": {"k": "v"}},
    )
    put_body = dict(posted.body)
    put_body["data"] = {"k": "w", "n": "1"}
    put = wire.send("PUT", f"{configmaps}/posted?fieldManager=kubectl-client-side-apply", put_body)
    return {
        "no_field_manager": status_of(no_manager),
        "created": _applied(created, "data"),
        "reapplied": _applied(again, "data"),
        "edited": _applied(edited, "data"),
        "one_conflict": status_of(one_conflict),
        "two_conflicts": status_of(two_conflicts),
        "shared": _applied(shared, "data"),
        "forced": _applied(forced, "data"),
        "owned": _applied(owned, "data"),
        "released": _applied(released, "data"),
        "posted": _applied(posted, "data"),
        "put": _applied(put, "data"),
    }


def _web_deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            **spec,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    }


@case
def server_side_apply_lists(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-apply-lists")
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"

    def apply(body: dict[str, Any], manager: str) -> Answer:
        return wire.send("PATCH", f"{path}?fieldManager={manager}", body, content_type=APPLY)

    app = {
        "name": "app",
        "image": "registry.k8s.io/pause:3.9",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1"}],
    }
    created = apply(
        _web_deployment([app], replicas=2, selector={"matchLabels": {"app": "web"}}), "alice"
    )
    sidecar = {"name": "sidecar", "image": "registry.k8s.io/pause:3.9"}
    merged = apply(_web_deployment([sidecar]), "bob")
    more_env = {"name": "app", "env": [{"name": "B", "value": "2"}]}
    env_merged = apply(_web_deployment([sidecar, more_env]), "bob")
    image = {"name": "app", "image": "registry.k8s.io/pause:3.10"}
    image_conflict = apply(_web_deployment([image]), "carol")
    replicas = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    replicas_conflict = apply({**replicas, "spec": {"replicas": 5}}, "carol")
    containers = env_merged.field("spec", "template", "spec", "containers") or []
    return {
        "created": {"status": created.status, "managed": _managed(created)},
        "merged": {
            "status": merged.status,
            "containers": [
                c.get("name") for c in merged.field("spec", "template", "spec", "containers") or []
            ],
            "managed": _managed(merged),
        },
        "env_merged": {
            "status": env_merged.status,
            "env": [c.get("env") for c in containers],
            "ports": [c.get("ports") for c in containers],
        },
        "image_conflict": status_of(image_conflict),
        "replicas_conflict": status_of(replicas_conflict),
    }


# ---- custom resource definitions

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
_WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "replicas": {"type": "integer"},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer"},
                        },
                    },
                },
                "hosts": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {"ready": {"type": "boolean"}, "replicas": {"type": "integer"}},
        },
    },
}


def _crd(plural: str, kind: str, scope: str, schema: Any, **subresources: Any) -> Observed:
    group = "corpus.example.com"
    version: Observed = {"name": "v1", "served": True, "storage": True}
    if schema is not None:
        version["schema"] = {"openAPIV3Schema": schema}
    if subresources:
        version["subresources"] = subresources
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [plural[:2]],
            },
            "versions": [version],
        },
    }


def _established(wire: Wire, name: str, condition: str = "Established") -> Answer:
    """The CRD once its controllers set ``condition`` True (Established), or decided
    NamesAccepted either way (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        got = wire.send("GET", f"{CRDS}/{name}")
        conditions = got.field("status", "conditions") or []
        decided = any(
            c.get("type") == condition and (c.get("status") == "True" or condition != "Established")
            for c in conditions
        )
        if decided or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _conditions(answer: Answer) -> list[Observed]:
    return sorted(
        (
            {key: c.get(key) for key in ("type", "status", "reason", "message")}
            for c in answer.field("status", "conditions") or []
        ),
        key=lambda c: c["type"],
    )


def _definitions(wire: Wire) -> Observed:
    scale = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    made = wire.send(
        "POST",
        CRDS,
        _crd("widgets", "Widget", "Namespaced", _WIDGET_SCHEMA, status={}, scale=scale),
    )
    established = _established(wire, "widgets.corpus.example.com")
    cluster = wire.send("POST", CRDS, _crd("gadgets", "Gadget", "Cluster", {"type": "object"}))
    _established(wire, "gadgets.corpus.example.com")
    clash = _crd("clashes", "Widget", "Namespaced", {"type": "object"})
    clash["spec"]["names"]["shortNames"] = ["wi"]
    clashing = wire.send("POST", CRDS, clash)
    clashed = _established(wire, "clashes.corpus.example.com", "NamesAccepted")
    wire.send("DELETE", f"{CRDS}/clashes.corpus.example.com")
    no_schema = wire.send("POST", CRDS, _crd("nones", "None", "Namespaced", None))
    not_structural = wire.send(
        "POST",
        CRDS,
        _crd("loose", "Loose", "Namespaced", {"properties": {"spec": {"type": "object"}}}),
    )
    wrong_name = _crd("things", "Thing", "Namespaced", {"type": "object"})
    wrong_name["metadata"]["name"] = "stuff.corpus.example.com"
    groups = wire.send("GET", "/apis").field("groups") or []
    resources = wire.send("GET", "/apis/corpus.example.com/v1").field("resources") or []
    return {
        "created": {"status": made.status, "names": made.field("status", "acceptedNames")},
        "conditions": _conditions(established),
        "accepted_names": established.field("status", "acceptedNames"),
        "stored_versions": established.field("status", "storedVersions"),
        "cluster_scoped": cluster.status,
        "names_clash": {
            "status": clashing.status,
            "conditions": _conditions(clashed),
            "accepted_names": clashed.field("status", "acceptedNames"),
        },
        "no_schema": status_of(no_schema),
        "not_structural": status_of(not_structural),
        "wrong_name": status_of(wire.send("POST", CRDS, wrong_name)),
        "group_listed": [
            g.get("versions") for g in groups if g.get("name") == "corpus.example.com"
        ],
        "resources": sorted(
            (
                {
                    key: r.get(key)
                    for key in ("name", "singularName", "namespaced", "kind", "shortNames")
                }
                | {"verbs": sorted(r.get("verbs") or [])}
                for r in resources
            ),
            key=lambda r: r["name"],
        ),
    }


def _objects(wire: Wire) -> Observed:
    ns = namespace(wire, "corpus-custom")
    widgets = f"/apis/corpus.example.com/v1/namespaces/{ns}/widgets"

    def widget(name: str, spec: Any, **extra: Any) -> Answer:
        body = {
            "apiVersion": "corpus.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
            **extra,
        }
        return wire.send("POST", widgets, body)

    valid = widget(
        "w",
        {
            "size": 3,
            "color": "red",
            "name": "abc",
            "unknown": 1,
            "labels": {"a": "b"},
            "extra": {"anything": {"goes": [1]}},
        },
        status={"ready": True},
        top="level",
    )
    invalid = {
        "too_small": widget("a", {"size": 0}),
        "too_big": widget("b", {"size": 11}),
        "not_in_enum": widget("c", {"size": 1, "color": "green"}),
        "missing_required": widget("d", {"color": "red"}),
        "wrong_type": widget("e", {"size": "three"}),
        "pattern": widget("f", {"size": 1, "name": "ABC"}),
        "too_long": widget("g", {"size": 1, "name": "abcdefghij"}),
        "too_many": widget("h", {"size": 1, "tags": ["a", "b", "c"]}),
        "map_value_type": widget("i", {"size": 1, "labels": {"a": 1}}),
    }
    # Several errors: kube-openapi walks properties in Go map order, so only the causes (sorted)
    # are stable, not the order they are joined in the message.
    several = status_of(widget("j", {"size": 20, "color": "green", "tags": [1]}))
    several.pop("message")
    path = f"{widgets}/w"
    got = wire.send("GET", path)
    status_body = dict(got.body)
    status_body["status"] = {"ready": True, "replicas": 2}
    status_body["spec"] = {"size": 9}
    status_put = wire.send("PUT", f"{path}/status", status_body)
    main_body = dict(status_put.body)
    main_body["spec"] = {**main_body["spec"], "size": 4}
    main_body["status"] = {"ready": False}
    main_put = wire.send("PUT", path, main_body)
    merged = wire.send("PATCH", path, {"spec": {"color": "blue"}}, content_type=MERGE)
    strategic = wire.send("PATCH", path, {"spec": {"color": "red"}}, content_type=STRATEGIC)
    bad_patch = wire.send("PATCH", path, {"spec": {"size": 100}}, content_type=MERGE)
    listed = wire.send("GET", widgets)
    gadget = wire.send(
        "POST",
        "/apis/corpus.example.com/v1/gadgets",
        {"apiVersion": "corpus.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}},
    )
    applied = f"{widgets}/applied"

    def apply(spec: Observed, manager: str) -> Answer:
        body = {
            "apiVersion": "corpus.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "applied"},
            "spec": spec,
        }
        return wire.send("PATCH", f"{applied}?fieldManager={manager}", body, content_type=APPLY)

    first = apply(
        {"size": 1, "ports": [{"name": "a", "port": 1}], "hosts": ["x"], "tags": ["t"]}, "alice"
    )
    second = apply({"ports": [{"name": "b", "port": 2}], "hosts": ["y"]}, "bob")
    clash = apply({"size": 2, "tags": ["u"]}, "bob")  # tags is an atomic list: alice's whole
    seen_apply = {
        "created": {"status": first.status, "managed": _managed(first)},
        "merged": {
            "status": second.status,
            "spec": second.field("spec"),
            "managed": _managed(second),
        },
        "conflict": status_of(clash),
    }
    deleted = wire.send("DELETE", path)
    return {
        "valid": {
            "status": valid.status,
            "spec": valid.field("spec"),
            "status_field": valid.field("status"),
            "top": valid.field("top"),
            "generation": valid.field("metadata", "generation"),
        },
        "invalid": {name: status_of(answer) for name, answer in invalid.items()},
        "several_invalid": several,
        "status_put": {
            "status": status_put.status,
            "spec": status_put.field("spec"),
            "status_field": status_put.field("status"),
            "generation": status_put.field("metadata", "generation"),
        },
        "main_put": {
            "status": main_put.status,
            "spec": main_put.field("spec"),
            "status_field": main_put.field("status"),
            "generation": main_put.field("metadata", "generation"),
        },
        "merge_patch": {"status": merged.status, "spec": merged.field("spec")},
        "strategic_patch": status_of(strategic),
        "invalid_patch": status_of(bad_patch),
        "listed": {"kind": listed.field("kind"), "names": names(listed)},
        "cluster_scoped": {
            "status": gadget.status,
            "namespace": gadget.field("metadata", "namespace"),
        },
        "server_side_apply": seen_apply,
        "deleted": deleted.status,
        "gone": status_of(wire.send("GET", path)),
    }


def _gone(wire: Wire, name: str) -> int:
    """The status of GET on CRD ``name`` once it is deleted, or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        got = wire.send("GET", f"{CRDS}/{name}")
        if got.status == 404 or time.monotonic() > deadline:
            return got.status
        time.sleep(0.1)


@case
def custom_resources(wire: Wire) -> Observed:
    """A CRD's life: created, established, served (discovery, CRUD, schema, status), deleted
    with its objects. One case, because cases replay in another order than recorded."""
    seen = {"definitions": _definitions(wire), "objects": _objects(wire)}
    deleted = {}
    for name in ("widgets.corpus.example.com", "gadgets.corpus.example.com"):
        answer = wire.send("DELETE", f"{CRDS}/{name}")
        deleted[name] = {
            "status": answer.status,
            "finalizers": answer.field("metadata", "finalizers"),
        }
        deleted[name]["then"] = _gone(wire, name)
    seen["deleted"] = deleted
    groups = wire.send("GET", "/apis").field("groups") or []
    seen["group_after_delete"] = [g["name"] for g in groups if g["name"] == "corpus.example.com"]
    return seen
