"""Bearer-token authentication and RBAC-style authorization.

The admin token is bound to cluster-admin (group system:masters). Restricted identities carry
their own rules; a rule with ``namespaces`` holds only there (a RoleBinding), one without holds
everywhere (a ClusterRoleBinding). Discovery and self-reviews are open to every authenticated
user, as the system:discovery and system:basic-user bindings make them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PolicyRule:
    verbs: Sequence[str]
    api_groups: Sequence[str] = ("",)
    resources: Sequence[str] = ()
    resource_names: Sequence[str] = ()
    namespaces: Sequence[str] = ()
    non_resource_urls: Sequence[str] = ()

    def allows(self, attrs: Attributes) -> bool:
        if not _covers(self.verbs, attrs.verb):
            return False
        if attrs.path is not None:
            return any(
                url == "*"
                or url == attrs.path
                or (url.endswith("*") and attrs.path.startswith(url[:-1]))
                for url in self.non_resource_urls
            )
        if self.namespaces and attrs.namespace not in self.namespaces:
            return False
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        resource_ok = any(
            r in ("*", resource)
            or (r.startswith("*/") and r[2:] == attrs.subresource)
            or (r.endswith("/*") and r[:-2] == attrs.resource)
            for r in self.resources
        )
        if not resource_ok or not _covers(self.api_groups, attrs.group):
            return False
        return not self.resource_names or attrs.name in self.resource_names

    def as_resource_rule(self) -> dict[str, list[str]]:
        rule = {
            "verbs": list(self.verbs),
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
        }
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule


def _covers(allowed: Sequence[str], value: str) -> bool:
    return "*" in allowed or value in allowed


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
    rules: tuple[PolicyRule, ...] = field(default=())

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))
ADMIN_RULES = (PolicyRule(verbs=("*",), api_groups=("*",), resources=("*",)),)
OPEN_PATHS = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")
#: What system:basic-user lets every authenticated user create.
SELF_REVIEWS = frozenset(
    {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
)


def authorize(identity: Identity, attrs: Attributes) -> bool:
    if identity.is_admin:
        return True
    authenticated = "system:authenticated" in identity.groups
    if attrs.path is not None:
        if authenticated and (attrs.path in OPEN_PATHS or attrs.path.startswith(OPEN_PATHS)):
            return True
    elif authenticated and attrs.resource in SELF_REVIEWS and attrs.verb == "create":
        return True
    return any(rule.allows(attrs) for rule in identity.rules)


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
