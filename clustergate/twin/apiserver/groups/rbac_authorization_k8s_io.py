"""rbac.authorization.k8s.io/v1: Role, ClusterRole and their bindings, with the bootstrap
policy the API server writes at start (plugin/pkg/auth/authorizer/rbac/bootstrappolicy:
policy.go for the user-facing and component roles, controller_policy.go for the controllers').

The roles are data: (name, rules) with rules written ``(verbs, groups, resources)`` as the
upstream ``rbacv1helpers.NewRule(verbs...).Groups(...).Resources(...)`` builder reads. The
authorizer that evaluates them is clustergate.twin.apiserver.rbac.
"""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Obj, ResourceType

GROUP_NAME = "rbac.authorization.k8s.io"
#: (verbs, apiGroups, resources), each space-separated; the core group "" is "" or "core".
Rule = tuple[str, str, str]
READ = "get list watch"
EVENTS: Rule = ("create patch update", "core events.k8s.io", "events")

#: The discovery paths every authenticated user may read (system:discovery).
DISCOVERY_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
)
PUBLIC_INFO_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")

#: Controllers the twin runs, by the name upstream gives their role and service account.
CONTROLLER_ROLES: dict[str, tuple[Rule, ...]] = {
    "deployment-controller": (
        ("get list watch update", "apps", "deployments"),
        ("update", "apps", "deployments/status deployments/finalizers"),
        ("create delete get list patch update watch", "apps", "replicasets"),
        ("get list update watch", "", "pods"),
        EVENTS,
    ),
    "replicaset-controller": (
        ("get list watch update", "apps", "replicasets"),
        ("update", "apps", "replicasets/status replicasets/finalizers"),
        ("list watch patch create delete", "", "pods"),
        EVENTS,
    ),
    "daemon-set-controller": (
        (READ, "apps", "daemonsets"),
        ("update", "apps", "daemonsets/status daemonsets/finalizers"),
        ("list watch", "", "nodes"),
        ("list watch create delete patch", "", "pods"),
        ("create", "", "pods/binding"),
        ("create delete get list patch update watch", "apps", "controllerrevisions"),
        EVENTS,
    ),
    "disruption-controller": (
        (READ, "apps", "deployments replicasets statefulsets"),
        (READ, "", "replicationcontrollers"),
        (READ, "policy", "poddisruptionbudgets"),
        ("update", "policy", "poddisruptionbudgets/status"),
        ("get", "*", "*/scale"),
        ("patch update", "", "pods/status"),
        EVENTS,
    ),
    "endpointslice-controller": (
        (READ, "", "services pods nodes"),
        ("update", "", "services/finalizers"),
        ("create update delete get list watch", "discovery.k8s.io", "endpointslices"),
        EVENTS,
    ),
    "horizontal-pod-autoscaler": (
        (READ, "autoscaling", "horizontalpodautoscalers"),
        ("update", "autoscaling", "horizontalpodautoscalers/status"),
        ("get update", "*", "*/scale"),
        ("list", "", "pods"),
        ("list", "metrics.k8s.io", "pods"),
        EVENTS,
    ),
    "namespace-controller": (
        ("get list watch delete", "", "namespaces"),
        ("update", "", "namespaces/finalize namespaces/status"),
        ("get list delete deletecollection", "*", "*"),
    ),
    "node-controller": (
        ("get list update delete patch", "", "nodes"),
        ("patch update", "", "nodes/status"),
        ("patch update", "", "pods/status"),
        ("list delete", "", "pods"),
        EVENTS,
    ),
}

#: (name, rules, non-resource URLs) of the cluster roles bound below.
CLUSTER_ROLES: tuple[tuple[str, tuple[Rule, ...], tuple[str, ...]], ...] = (
    ("cluster-admin", (("*", "*", "*"),), ("*",)),
    ("system:discovery", (), DISCOVERY_URLS),
    ("system:public-info-viewer", (), PUBLIC_INFO_URLS),
    (
        "system:basic-user",
        (
            ("create", "authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews"),
            ("create", "authentication.k8s.io", "selfsubjectreviews"),
        ),
        (),
    ),
    (
        "system:kube-controller-manager",
        (
            EVENTS,
            ("create", "coordination.k8s.io", "leases"),
            ("get update", "coordination.k8s.io", "leases"),
            ("create", "", "secrets serviceaccounts"),
            ("delete", "", "secrets"),
            ("get", "", "namespaces secrets serviceaccounts"),
            ("update", "", "secrets serviceaccounts"),
            ("create", "authentication.k8s.io", "tokenreviews"),
            ("create", "authorization.k8s.io", "subjectaccessreviews"),
            ("list watch", "*", "*"),
            ("create", "", "serviceaccounts/token"),
        ),
        (),
    ),
    (
        "system:kube-scheduler",
        (
            EVENTS,
            ("create", "coordination.k8s.io", "leases"),
            ("get update", "coordination.k8s.io", "leases"),
            (READ, "", "nodes"),
            ("get list watch delete", "", "pods"),
            ("create", "", "bindings pods/binding"),
            ("patch update", "", "pods/status"),
            (READ, "", "replicationcontrollers services namespaces"),
            (READ, "apps", "replicasets statefulsets"),
            (READ, "policy", "poddisruptionbudgets"),
            (READ, "", "persistentvolumeclaims persistentvolumes"),
            ("create", "authentication.k8s.io", "tokenreviews"),
            ("create", "authorization.k8s.io", "subjectaccessreviews"),
            (READ, "storage.k8s.io", "csinodes csidrivers csistoragecapacities storageclasses"),
        ),
        (),
    ),
    *((f"system:controller:{name}", rules, ()) for name, rules in sorted(CONTROLLER_ROLES.items())),
)

#: (binding name, role, subject kind, subject name) of the bootstrap ClusterRoleBindings;
#: a controller's binding names its ServiceAccount in kube-system.
CLUSTER_ROLE_BINDINGS: tuple[tuple[str, str, str, str], ...] = (
    ("cluster-admin", "cluster-admin", "Group", "system:masters"),
    ("system:discovery", "system:discovery", "Group", "system:authenticated"),
    ("system:public-info-viewer", "system:public-info-viewer", "Group", "system:authenticated"),
    ("system:public-info-viewer", "system:public-info-viewer", "Group", "system:unauthenticated"),
    ("system:basic-user", "system:basic-user", "Group", "system:authenticated"),
    (
        "system:kube-controller-manager",
        "system:kube-controller-manager",
        "User",
        "system:kube-controller-manager",
    ),
    ("system:kube-scheduler", "system:kube-scheduler", "User", "system:kube-scheduler"),
    *(
        (f"system:controller:{name}", f"system:controller:{name}", "ServiceAccount", name)
        for name in sorted(CONTROLLER_ROLES)
    ),
)


def policy_rules(rules: tuple[Rule, ...], urls: tuple[str, ...]) -> list[Obj]:
    out: list[Obj] = [
        {
            "verbs": verbs.split(),
            "apiGroups": ["" if group == "core" else group for group in groups.split()] or [""],
            "resources": resources.split(),
        }
        for verbs, groups, resources in rules
    ]
    if urls:
        out.append({"verbs": ["*"] if urls == ("*",) else ["get"], "nonResourceURLs": list(urls)})
    return out


def _bootstrap_meta(name: str) -> Obj:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _bindings() -> list[tuple[str, Obj]]:
    merged: dict[str, Obj] = {}
    for name, role, kind, subject_name in CLUSTER_ROLE_BINDINGS:
        subject: Obj = {"kind": kind, "name": subject_name}
        if kind == "ServiceAccount":
            subject["namespace"] = "kube-system"
        else:
            subject["apiGroup"] = GROUP_NAME
        binding = merged.setdefault(
            name,
            {
                "metadata": _bootstrap_meta(name),
                "roleRef": {"apiGroup": GROUP_NAME, "kind": "ClusterRole", "name": role},
                "subjects": [],
            },
        )
        binding["subjects"].append(subject)
    return [("clusterrolebindings", binding) for binding in merged.values()]


GROUP = ApiGroup(
    GROUP_NAME,
    (
        ResourceType(GROUP_NAME, "v1", "clusterroles", "ClusterRole", False),
        ResourceType(GROUP_NAME, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        ResourceType(GROUP_NAME, "v1", "roles", "Role", True),
        ResourceType(GROUP_NAME, "v1", "rolebindings", "RoleBinding", True),
    ),
    bootstrap=(
        *(
            ("clusterroles", {"metadata": _bootstrap_meta(name), "rules": policy_rules(r, u)})
            for name, r, u in CLUSTER_ROLES
        ),
        *_bindings(),
    ),
)
