"""The RBAC authorizer, reading Role, ClusterRole and their bindings from the store
(plugin/pkg/auth/authorizer/rbac/rbac.go and pkg/registry/rbac/validation/rule.go).

Bindings are visited as upstream visits them: every ClusterRoleBinding, then the RoleBindings of
the request's namespace; the first rule that allows the request decides, and names its binding
in the reason ("RBAC: allowed by ..."). A denial has no reason of its own: the 403 text is
the request's attributes (auth.denial). Rules match as rbacv1helpers matches them: ``*`` for
verbs, groups and resources, ``*/sub`` for a subresource of any resource, resourceNames only
narrowing, and nonResourceURLs exact or by a trailing ``*`` prefix (only from cluster roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from clustergate.twin.apiserver.auth import Attributes, Identity
from clustergate.twin.apiserver.store import Store

Obj = dict[str, Any]
GROUP = "rbac.authorization.k8s.io"
ROLES = f"roles.{GROUP}"
CLUSTER_ROLES = f"clusterroles.{GROUP}"
ROLE_BINDINGS = f"rolebindings.{GROUP}"
CLUSTER_ROLE_BINDINGS = f"clusterrolebindings.{GROUP}"


@dataclass(frozen=True)
class Grant:
    """A rule and where it comes from, as upstream's describers write it."""

    source: str
    rule: Obj


def _covers(allowed: list[str], value: str) -> bool:
    return "*" in allowed or value in allowed


def _resource_matches(resources: list[str], combined: str, subresource: str) -> bool:
    for resource in resources:
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _url_matches(urls: list[str], path: str) -> bool:
    return any(
        url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])) for url in urls
    )


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    """RuleAllows: the request's attributes against one PolicyRule."""
    if not _covers(rule.get("verbs") or [], attrs.verb):
        return False
    if attrs.path is not None:
        return _url_matches(rule.get("nonResourceURLs") or [], attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    names = rule.get("resourceNames") or []
    return (
        _covers(rule.get("apiGroups") or [], attrs.group)
        and _resource_matches(rule.get("resources") or [], combined, attrs.subresource)
        and (not names or attrs.name in names)
    )


def _describe_subject(subject: Obj, binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f'{kind} "{name}"'


def _applies(subject: Obj, identity: Identity, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return identity.user == name
    if kind == "Group":
        return name in identity.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and identity.user == f"system:serviceaccount:{namespace}:{name}"
    return False


class RbacAuthorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            role = self.store.get(CLUSTER_ROLES, "", ref.get("name", ""))
        elif ref.get("kind") == "Role" and namespace:
            role = self.store.get(ROLES, namespace, ref.get("name", ""))
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def grants(self, identity: Identity, namespace: str) -> Iterator[Grant]:
        """VisitRulesFor: the rules bound to ``identity`` that hold in ``namespace``."""
        visits = [(CLUSTER_ROLE_BINDINGS, "", "ClusterRoleBinding")]
        if namespace:
            visits.append((ROLE_BINDINGS, namespace, "RoleBinding"))
        for resource, scan_namespace, kind in visits:
            for binding in self.store.scan(resource, scan_namespace):
                meta = binding["metadata"]
                bound_in = meta.get("namespace") or ""
                subject = next(
                    (s for s in binding.get("subjects") or [] if _applies(s, identity, bound_in)),
                    None,
                )
                if subject is None:
                    continue
                ref = binding.get("roleRef") or {}
                name = f"{meta['name']}/{bound_in}" if bound_in else meta["name"]
                source = (
                    f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to '
                    f"{_describe_subject(subject, bound_in)}"
                )
                for rule in self._role_rules(ref, bound_in):
                    yield Grant(source, rule)

    def decide(self, identity: Identity, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason names the binding that allowed, "" for a denial."""
        namespace = "" if attrs.path is not None else attrs.namespace
        for grant in self.grants(identity, namespace):
            if rule_allows(grant.rule, attrs):
                return True, f"RBAC: allowed by {grant.source}"
        return False, ""

    def rules_for(self, identity: Identity, namespace: str) -> tuple[list[Obj], list[Obj]]:
        """RulesFor: (resourceRules, nonResourceRules) as SelfSubjectRulesReview lists them."""
        resource_rules: list[Obj] = []
        non_resource_rules: list[Obj] = []
        for grant in self.grants(identity, namespace):
            rule = grant.rule
            if rule.get("nonResourceURLs"):
                non_resource_rules.append(
                    {"verbs": list(rule["verbs"]), "nonResourceURLs": list(rule["nonResourceURLs"])}
                )
            if rule.get("resources"):
                entry: Obj = {
                    "verbs": list(rule.get("verbs") or []),
                    "apiGroups": list(rule.get("apiGroups") or []),
                    "resources": list(rule["resources"]),
                }
                if rule.get("resourceNames"):
                    entry["resourceNames"] = list(rule["resourceNames"])
                resource_rules.append(entry)
        return resource_rules, non_resource_rules
