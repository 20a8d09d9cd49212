"""Checks made once per run, before any check: can this run work at all?

The API server must answer, accept the credentials and allow every verb the selected suites
use (asked with SelfSubjectAccessReview, so nothing is tried for real); AWS must resolve an
identity when a suite that uses AWS is selected. Every problem found is listed, each naming
what is missing, so one run tells a person everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate import input_errors
from clustergate.kube import Cluster

SUITES = ("hygiene", "irsa", "dns", "autoscaler", "drain", "upgrade", "cutover")
#: Suites that call AWS APIs (IAM, STS, EKS, Auto Scaling, ELBv2, Route 53).
AWS_SUITES = frozenset({"irsa", "autoscaler", "upgrade", "cutover"})


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""

    def describe(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = self.group or "core"
        return f"{self.verb} {resource} ({group})"


def _perms(verbs: str, resource: str, group: str = "", subresource: str = "") -> list[Permission]:
    return [Permission(verb, resource, group, subresource) for verb in verbs.split()]


#: What every run needs: its namespace, probe pods and their results, its heartbeat Lease, and
#: what the leftovers check reads (every run's leases, restore records, labelled pods).
BASE = [
    *_perms("create patch delete list", "leases", "coordination.k8s.io"),
    *_perms("list", "configmaps"),
    *_perms("create delete get list", "namespaces"),
    *_perms("create delete get list watch", "pods"),
    *_perms("get", "pods", subresource="log"),
    *_perms("create delete get", "serviceaccounts"),
    *_perms("get list", "nodes"),
    *_perms("list watch", "events"),
]
NEEDS: dict[str, list[Permission]] = {
    "irsa": [*_perms("get list", "serviceaccounts"), *_perms("list", "pods")],
    "dns": [
        *_perms("get list", "daemonsets", "apps"),
        *_perms("get create delete", "services"),
        *_perms("get", "pods", subresource="proxy"),
        *_perms("get", "nodes", subresource="proxy"),
        *_perms("delete", "pods"),
    ],
    "autoscaler": [
        *_perms("get", "configmaps"),
        *_perms("get list", "deployments", "apps"),
        *_perms("create delete", "deployments", "apps"),
        *_perms("patch", "deployments", "apps", "scale"),
        *_perms("list watch", "nodes"),
    ],
    "drain": [
        *_perms("list", "poddisruptionbudgets", "policy"),
        *_perms("create delete", "poddisruptionbudgets", "policy"),
        *_perms("create delete get list watch", "deployments", "apps"),
        *_perms("patch", "nodes"),
        *_perms("create", "pods", subresource="eviction"),
    ],
    "upgrade": [
        *_perms("list create delete", "poddisruptionbudgets", "policy"),
        *_perms("create delete get list watch", "deployments", "apps"),
        *_perms("watch", "nodes"),
    ],
    "cutover": [*_perms("create delete", "configmaps")],
}
DISRUPTIVE = [*_perms("create get update delete", "leases", "coordination.k8s.io")]
SWEEP = [
    *_perms("get list delete", "configmaps"),
    *_perms("delete", "pods"),
    *_perms("list delete", "leases", "coordination.k8s.io"),
    *_perms("patch", "nodes"),
    *_perms("delete", "namespaces"),
]


class PreflightError(input_errors.InputError):
    """The run cannot start; the message lists every problem found."""


def required_permissions(
    suites: Iterable[str], disruptive: bool, sweep: bool = False
) -> list[Permission]:
    wanted: dict[Permission, None] = dict.fromkeys(BASE)
    if sweep:
        wanted.update(dict.fromkeys(SWEEP))
    for suite in suites:
        wanted.update(dict.fromkeys(NEEDS.get(suite, [])))
    if disruptive:
        wanted.update(dict.fromkeys(DISRUPTIVE))
    return list(wanted)


def check_cluster(cluster: Cluster, permissions: list[Permission]) -> str:
    """Raise naming every problem, or return the server's version."""
    try:
        info = cluster.version().get_code(_request_timeout=15)
    except Exception as error:
        raise PreflightError(_unusable(cluster, error)) from None
    missing = []
    authorization = cluster.authorization()
    for permission in permissions:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=permission.verb,
                    group=permission.group,
                    resource=permission.resource,
                    subresource=permission.subresource or None,
                )
            )
        )
        try:
            answer = authorization.create_self_subject_access_review(review, _request_timeout=15)
        except ApiException as error:
            raise PreflightError(_unusable(cluster, error)) from None
        if not answer.status.allowed:
            missing.append(permission.describe())
    if missing:
        raise PreflightError(
            f"the credentials for {cluster.server} (context {cluster.context}, Kubernetes "
            f"{info.git_version}) lack {len(missing)} permission(s) the selected checks need: "
            + "; ".join(missing)
            + ". Apply deploy/rbac.yaml or grant these verbs to the runner's identity."
        )
    return str(info.git_version)


def _unusable(cluster: Cluster, error: BaseException) -> str:
    return input_errors.unusable_server(error, cluster.server, cluster.context, cluster.kubeconfig)


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
