"""Who a request is (Identity), what it asks (Attributes), and the authorizer chain.

kube-apiserver authorizes with a chain: the privileged-groups authorizer allows system:masters
outright (before RBAC, so no binding can take cluster-admin away from it), then RBAC
(clustergate.twin.apiserver.rbac) decides from the Role, ClusterRole and binding objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str | None = None  # non-resource request when set


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return PRIVILEGED_GROUP in self.groups


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))
PRIVILEGED_GROUP = "system:masters"


class Authorizer(Protocol):
    """The chain's last link (RBAC): (allowed, reason) for a request."""

    def decide(self, identity: Identity, attrs: Attributes) -> tuple[bool, str]: ...


def authorize(rbac: Authorizer, identity: Identity, attrs: Attributes) -> tuple[bool, str]:
    """(allowed, reason) from the chain: privileged groups, then RBAC."""
    if identity.is_admin:
        return True, ""
    return rbac.decide(identity, attrs)


def denial(identity: Identity, attrs: Attributes) -> str:
    """The reason text of a 403, word for word as the real authorizer chain writes it."""
    if attrs.path is not None:
        return f'User "{identity.user}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'User "{identity.user}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}" {where}'
    )
