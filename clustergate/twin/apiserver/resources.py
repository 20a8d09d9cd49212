"""The resource types the twin serves, with what discovery and the REST layer need to know."""

from __future__ import annotations

from dataclasses import dataclass, field

from clustergate.twin.apiserver.groups import GROUPS, rbac_authorization_k8s_io
from clustergate.twin.apiserver.resource_type import (
    CRUD,
    STATUS_VERBS,
    ApiGroup,
    ResourceType,
    Subresource,
)

__all__ = ["CRUD", "RESOURCES", "ApiGroup", "ResourceType", "Subresource", "group_of"]


def _status(kind: str) -> Subresource:
    return Subresource("status", kind, STATUS_VERBS)


def _scale() -> Subresource:
    return Subresource("scale", "Scale", STATUS_VERBS, "autoscaling", "v1")


def _proxy(kind: str) -> Subresource:
    verbs = ("create", "delete", "get", "patch", "update")
    return Subresource("proxy", f"{kind}ProxyOptions", verbs)


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

_FIRST_GROUPS: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        ("create", "delete", "get", "list", "patch", "update", "watch"),
        (_status("Namespace"), Subresource("finalize", "Namespace", ("update",))),
        fields=("status.phase",),
    ),
    ResourceType(
        "",
        "v1",
        "nodes",
        "Node",
        False,
        ("no",),
        subresources=(_status("Node"), _proxy("Node")),
        fields=("spec.unschedulable",),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        subresources=(
            _status("Pod"),
            Subresource("binding", "Binding", ("create",)),
            Subresource("eviction", "Eviction", ("create",), "policy", "v1"),
            Subresource("log", "Pod", ("get",)),
            Subresource("exec", "PodExecOptions", ("create", "get")),
            _proxy("Pod"),
        ),
        categories=("all",),
        fields=_POD_FIELDS,
    ),
    ResourceType(
        "",
        "v1",
        "services",
        "Service",
        True,
        ("svc",),
        subresources=(_status("Service"), _proxy("Service")),
        categories=("all",),
        fields=("spec.clusterIP", "spec.type"),
    ),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    ResourceType("", "v1", "bindings", "Binding", True, verbs=("create",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True, fields=("type",)),
    ResourceType(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        True,
        ("sa",),
        subresources=(
            Subresource("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),
        ),
    ),
    ResourceType("", "v1", "events", "Event", True, ("ev",), fields=_EVENT_FIELDS),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        True,
        ("ev",),
        storage="events",
        fields=tuple(
            f.replace("involvedObject.", "regarding.")
            .replace("source", "deprecatedSource")
            .replace("reportingComponent", "reportingController")
            for f in _EVENT_FIELDS
        ),
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        subresources=(_status("Deployment"), _scale()),
        categories=("all",),
        tracks_generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        ("rs",),
        subresources=(_status("ReplicaSet"), _scale()),
        categories=("all",),
        fields=("status.replicas",),
        tracks_generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        ("ds",),
        subresources=(_status("DaemonSet"),),
        categories=("all",),
        tracks_generation=True,
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        subresources=(_status("Job"),),
        categories=("all",),
        fields=("status.successful",),
        tracks_generation=True,
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        subresources=(_status("PodDisruptionBudget"),),
        tracks_generation=True,
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        verbs=("create",),
    ),
    ResourceType(
        "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        verbs=("create",),
    ),
    *rbac_authorization_k8s_io.GROUP.resources,
)

RESOURCES: tuple[ResourceType, ...] = _FIRST_GROUPS + tuple(
    rt for group in GROUPS for rt in group.resources
)
_GROUPS = {group.name: group for group in (*GROUPS, rbac_authorization_k8s_io.GROUP)}

#: Resources that only answer POST and keep nothing (reviews).
VIRTUAL = frozenset(
    {
        "bindings",
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "selfsubjectreviews",
        "tokenreviews",
    }
)


def group_of(rt: ResourceType) -> ApiGroup | None:
    """The room of a group served from clustergate.twin.apiserver.groups, if it is one."""
    return _GROUPS.get(rt.group)


@dataclass(frozen=True)
class GroupVersion:
    group: str
    version: str
    resources: tuple[ResourceType, ...] = field(default=())


def group_versions() -> list[GroupVersion]:
    """Served group versions in discovery order (core first, then groups as the API lists them)."""
    order: list[tuple[str, str]] = []
    for rt in RESOURCES:
        if (rt.group, rt.version) not in order:
            order.append((rt.group, rt.version))
    return [
        GroupVersion(g, v, tuple(rt for rt in RESOURCES if (rt.group, rt.version) == (g, v)))
        for g, v in order
    ]


_BY_PATH = {(rt.group, rt.version, rt.plural): rt for rt in RESOURCES}
_BY_KIND = {(rt.api_version, rt.kind): rt for rt in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def served(group: str, version: str) -> bool:
    return any(rt.group == group and rt.version == version for rt in RESOURCES)


def resource(group: str, version: str, plural: str) -> ResourceType:
    """A resource type the twin is known to serve (a KeyError otherwise)."""
    return _BY_PATH[(group, version, plural)]
