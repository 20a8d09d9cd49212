"""Checks made once per run, before any check: can this run work at all?

The API server must answer, accept the credentials and allow every verb the selected suites
use (asked with SelfSubjectAccessReview, so nothing is tried for real), each named with the
ClusterRole of deploy/rbac.yaml that grants it; a gate run also asks what its identity must
NOT be able to do, and says whether it is proven read-only; AWS must resolve an
identity when a suite that uses AWS is selected. Every problem found is listed, each naming
what is missing, so one run tells a person everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client.exceptions import ApiException

from clustergate import input_errors
from clustergate.access import RBAC_GROUP, RUN_ROLE, Permission, can
from clustergate.kube import Cluster

SUITES = ("hygiene", "irsa", "dns", "autoscaler", "drain", "upgrade", "cutover")
#: Suites that call AWS APIs (IAM, STS, EKS, Auto Scaling, ELBv2, Route 53).
AWS_SUITES = frozenset({"irsa", "autoscaler", "upgrade", "cutover"})


#: The ClusterRoles of deploy/rbac.yaml: what every run needs, and what disruption adds.
GATE_ROLE = "clustergate-gate"
DISRUPTIVE_ROLE = "clustergate-disruptive"
IRSA_PROBE_ROLE = "clustergate-irsa-probe"
#: The Role (in runs.heartbeat_namespace) that lets a run hold its heartbeat Lease there.
HEARTBEAT_ROLE = "clustergate-gate-heartbeat"


def _perms(
    verbs: str, resource: str, group: str = "", subresource: str = "", **where: str
) -> list[Permission]:
    return [Permission(verb, resource, group, subresource, **where) for verb in verbs.split()]


#: What every run needs (clustergate-gate): its namespace, the grant of clustergate-run inside
#: it (which then allows the probe pods, services and service accounts there), reads, and what
#: the leftovers check reads (every run's leases, restore records, labelled pods). The run's
#: heartbeat Lease is written in runs.heartbeat_namespace only (see :func:`heartbeat_needs`).
BASE = [
    *_perms("list", "leases", "coordination.k8s.io"),
    *_perms("list", "configmaps"),
    *_perms("create delete get list patch", "namespaces"),
    *_perms("create", "rolebindings", RBAC_GROUP),
    *_perms("bind", "clusterroles", RBAC_GROUP, name=RUN_ROLE),
    *_perms("get list watch", "pods"),
    *_perms("get", "pods", subresource="log"),
    *_perms("get list", "serviceaccounts"),
    *_perms("get list", "nodes"),
    *_perms("list watch", "events"),
]
#: What each suite's gate checks read (clustergate-gate).
NEEDS: dict[str, list[Permission]] = {
    "irsa": [],
    "dns": [
        *_perms("get list", "daemonsets", "apps"),
        *_perms("get", "services"),
        *_perms("get", "pods", subresource="proxy", namespace="kube-system"),
    ],
    "autoscaler": [
        *_perms("get", "configmaps"),
        *_perms("get list", "deployments", "apps"),
        *_perms("list watch", "nodes"),
    ],
    "drain": [*_perms("list", "poddisruptionbudgets", "policy")],
    "upgrade": [*_perms("watch", "nodes")],
    "cutover": [],
}
#: What each suite's disruptive checks add (clustergate-disruptive), beyond the run namespace.
DISRUPTIVE_NEEDS: dict[str, list[Permission]] = {
    "dns": [*_perms("delete", "pods", namespace="kube-system")],
    "drain": [*_perms("patch", "nodes"), *_perms("create", "pods", subresource="eviction")],
    "upgrade": [*_perms("patch", "nodes"), *_perms("create", "pods", subresource="eviction")],
}
DISRUPTIVE = [*_perms("create get update delete", "leases", "coordination.k8s.io")]
SWEEP = [
    *_perms("get list delete", "configmaps"),
    *_perms("delete", "pods"),
    *_perms("list delete", "leases", "coordination.k8s.io"),
    *_perms("patch", "nodes"),
    *_perms("delete", "namespaces"),
]
#: What a gate identity must NOT be able to do, asked of the API server: no change to a node,
#: and no change to a workload outside the run's namespace.
READ_ONLY_PROOF = [
    *_perms("patch update delete", "nodes"),
    *_perms("patch", "nodes", subresource="status"),
    *_perms("delete", "pods", namespace="kube-system"),
    *_perms("create", "pods", subresource="eviction", namespace="kube-system"),
    *_perms("update patch delete", "deployments", "apps", namespace="kube-system"),
    *_perms("update patch", "daemonsets", "apps", namespace="kube-system"),
]


class PreflightError(input_errors.InputError):
    """The run cannot start; the message lists every problem found."""


@dataclass(frozen=True)
class Required:
    permission: Permission
    role: str


def required_permissions(
    suites: Iterable[str],
    disruptive: bool,
    sweep: bool = False,
    irsa_namespaces: Iterable[str] = (),
    heartbeat_namespace: str = "kube-system",
) -> list[Required]:
    """Every permission the selected checks need, each with the ClusterRole that grants it.
    The IRSA probes run in each mapped namespace, as its service account: there the gate
    needs clustergate-irsa-probe, bound by a RoleBinding in that namespace. The heartbeat Lease
    is written in ``heartbeat_namespace`` only, by Role clustergate-gate-heartbeat there."""
    suites = list(suites)
    wanted: dict[Permission, str] = dict.fromkeys(BASE, GATE_ROLE)
    heartbeat = _perms(
        "create patch delete", "leases", "coordination.k8s.io", namespace=heartbeat_namespace
    )
    wanted.update(dict.fromkeys(heartbeat, f"Role {HEARTBEAT_ROLE} in {heartbeat_namespace}"))
    for suite in suites:
        wanted.update(dict.fromkeys(NEEDS.get(suite, []), GATE_ROLE))
    if "irsa" in suites:
        for namespace in dict.fromkeys(irsa_namespaces):
            probes = _perms("create delete", "pods", namespace=namespace)
            wanted.update((p, f"{IRSA_PROBE_ROLE} (RoleBinding in {namespace})") for p in probes)
    if disruptive or sweep:
        extra = [*DISRUPTIVE, *(SWEEP if sweep else [])]
        if disruptive:
            extra += [p for suite in suites for p in DISRUPTIVE_NEEDS.get(suite, [])]
        wanted.update((p, DISRUPTIVE_ROLE) for p in extra if p not in wanted)
    return [Required(permission, role) for permission, role in wanted.items()]


def profile_roles(disruptive: bool) -> list[str]:
    """The ClusterRoles of deploy/rbac.yaml the selected profile needs."""
    return [GATE_ROLE, DISRUPTIVE_ROLE] if disruptive else [GATE_ROLE]


def _grant(role: str) -> str:
    return role if role.startswith("Role ") else f"ClusterRole {role}"


def _ask(cluster: Cluster, permission: Permission) -> bool:
    try:
        return can(cluster, permission)
    except ApiException as error:
        raise PreflightError(_unusable(cluster, error)) from None


def check_cluster(cluster: Cluster, required: list[Required]) -> str:
    """Raise naming every missing permission and the role that grants it, or return the
    server's version."""
    try:
        info = cluster.version().get_code(_request_timeout=15)
    except Exception as error:
        raise PreflightError(_unusable(cluster, error)) from None
    missing: dict[str, list[str]] = {}
    for need in required:
        if not _ask(cluster, need.permission):
            missing.setdefault(need.role, []).append(need.permission.describe())
    if missing:
        count = sum(len(names) for names in missing.values())
        by_role = "; ".join(
            f"{_grant(role)} grants {', '.join(names)}" for role, names in missing.items()
        )
        # The profile's ClusterRoles first, then the namespaced grants beside them.
        roles = sorted({need.role for need in required}, key=lambda r: (r.startswith("Role "), r))
        raise PreflightError(
            f"the credentials for {cluster.server} (context {cluster.context}, Kubernetes "
            f"{info.git_version}) lack {count} permission(s) the selected checks need "
            f"(this profile needs {' and '.join(roles)}): {by_role}. Apply deploy/rbac.yaml "
            "and bind the runner's identity to "
            + " and ".join(role for role in roles if role in missing)
            + " (docs/permissions.md)."
        )
    return str(info.git_version)


def _unusable(cluster: Cluster, error: BaseException) -> str:
    return input_errors.unusable_server(error, cluster.server, cluster.context, cluster.kubeconfig)


@dataclass(frozen=True)
class ReadOnlyProof:
    """What SelfSubjectAccessReview said of each change a gate identity must not make."""

    denied: list[str]
    allowed: list[str]

    @property
    def proven(self) -> bool:
        return not self.allowed

    def describe(self) -> str:
        if self.proven:
            return f"read-only proven: the identity cannot {'; '.join(self.denied)}"
        return (
            f"NOT read-only: the identity can {'; '.join(self.allowed)}; a gate should run as "
            f"ClusterRole {GATE_ROLE} alone (deploy/rbac.yaml, docs/permissions.md)"
        )


def prove_read_only(cluster: Cluster) -> ReadOnlyProof:
    denied, allowed = [], []
    for permission in READ_ONLY_PROOF:
        (allowed if _ask(cluster, permission) else denied).append(permission.describe())
    return ReadOnlyProof(denied, allowed)


def check_aws(
    session: boto3.Session,
    endpoint_url: str | None,
    account_id: str | None = None,
    config: str = "the cluster config",
) -> str:
    """Return the caller ARN, or raise naming why no identity resolves, or why it is not one of
    ``account_id`` (the account ``config`` names)."""
    try:
        sts = session.client("sts", endpoint_url=endpoint_url)
        caller = sts.get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        raise PreflightError(input_errors.unusable_aws(error)) from None
    if account_id and caller["Account"] != account_id:
        raise PreflightError(
            input_errors.wrong_account(caller["Arn"], caller["Account"], account_id, config)
        )
    return str(caller["Arn"])
