"""What this run's identity may do, asked with SelfSubjectAccessReview (nothing is tried for
real), and the one grant a run makes itself: ClusterRole ``clustergate-run`` bound inside its
own namespace, so that a gate identity writes there and nowhere else (deploy/rbac.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from clustergate.kube import Cluster
from clustergate.wait import poll_until

#: Bound by each run in its namespace; deploy/rbac.yaml lets the gate bind this role only.
RUN_ROLE = "clustergate-run"
RBAC_GROUP = "rbac.authorization.k8s.io"
GRANT_TIMEOUT_S = 30


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def describe(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        if self.name:
            resource = f"{resource}/{self.name}"
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {resource} ({self.group or 'core'}){where}"


def can(cluster: Cluster, permission: Permission) -> bool:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=permission.verb,
                group=permission.group,
                resource=permission.resource,
                subresource=permission.subresource or None,
                namespace=permission.namespace or None,
                name=permission.name or None,
            )
        )
    )
    answer = cluster.authorization().create_self_subject_access_review(review, _request_timeout=15)
    return bool(answer.status.allowed)


def _subject(username: str) -> client.RbacV1Subject:
    prefix = "system:serviceaccount:"
    if username.startswith(prefix):
        namespace, _, name = username.removeprefix(prefix).partition(":")
        return client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)
    return client.RbacV1Subject(kind="User", name=username, api_group=RBAC_GROUP)


def bind_run_role(cluster: Cluster, namespace: str, labels: dict[str, str]) -> bool:
    """Bind :data:`RUN_ROLE` to this identity in ``namespace`` unless it may already create
    pods there (cluster-admin, or a role bound cluster-wide); True when it bound it. Waits,
    bounded, until the API server's authorizer sees the binding."""
    creates_pods = Permission("create", "pods", namespace=namespace)
    if can(cluster, creates_pods):
        return False
    review = client.AuthenticationV1Api(cluster.api).create_self_subject_review(
        client.V1SelfSubjectReview(), _request_timeout=15
    )
    binding = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=RUN_ROLE, labels=labels),
        role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=RUN_ROLE),
        subjects=[_subject(review.status.user_info.username)],
    )
    client.RbacAuthorizationV1Api(cluster.api).create_namespaced_role_binding(namespace, binding)
    poll_until(
        lambda: can(cluster, creates_pods),
        bool,
        what=f"RoleBinding {namespace}/{RUN_ROLE} to take effect (create pods allowed)",
        timeout_s=GRANT_TIMEOUT_S,
        describe=lambda allowed: "allowed" if allowed else "still denied",
        interval_s=0.5,
    )
    return True
