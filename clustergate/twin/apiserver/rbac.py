"""The RBAC authorizer, reading Role, ClusterRole and their bindings from the store
(plugin/pkg/auth/authorizer/rbac/rbac.go and pkg/registry/rbac/validation/rule.go).

Bindings are visited as upstream visits them: every ClusterRoleBinding, then the RoleBindings of
the request's namespace; the first rule that allows the request decides, and names its binding
in the reason ("RBAC: allowed by ..."). A denial has no reason of its own: the 403 text is
the request's attributes (auth.denial). Rules match as rbacv1helpers matches them: ``*`` for
verbs, groups and resources, ``*/sub`` for a subresource of any resource, resourceNames only
narrowing, and nonResourceURLs exact or by a trailing ``*`` prefix (only from cluster roles).

EscalationCheck is the RBAC registry's own guard on writes of roles and bindings: nobody grants
through RBAC what they do not hold, unless they may ``escalate`` (roles) or ``bind`` (bindings).
"""

from __future__ import annotations

import json
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

    def role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
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
                for rule in self.role_rules(ref, bound_in):
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


# ---- escalation prevention (pkg/registry/rbac: policybased storage, validation.Covers)

#: The role kinds a binding's roleRef names, by the resource that stores them.
ROLE_RESOURCES = {"Role": "roles", "ClusterRole": "clusterroles"}


def breakdown(rule: Obj) -> Iterator[Obj]:
    """BreakdownRule: one rule per group, resource, verb and name (or URL and verb)."""
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in rule.get("verbs") or []:
                for name in rule.get("resourceNames") or [None]:
                    piece: Obj = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                    if name is not None:
                        piece["resourceNames"] = [name]
                    yield piece
    for url in rule.get("nonResourceURLs") or []:
        for verb in rule.get("verbs") or []:
            yield {"nonResourceURLs": [url], "verbs": [verb]}


def _resource_covers(owned: list[str], wanted: str) -> bool:
    if "*" in owned or wanted in owned:
        return True
    sub = wanted.partition("/")[2]
    return bool(sub) and f"*/{sub}" in owned


def rule_covers(owner: Obj, piece: Obj) -> bool:
    """ruleCovers: ``owner`` grants everything ``piece`` (one broken-down rule) grants."""
    if not ("*" in owner.get("verbs", []) or piece["verbs"][0] in owner.get("verbs", [])):
        return False
    if "nonResourceURLs" in piece:
        return _url_matches(owner.get("nonResourceURLs") or [], piece["nonResourceURLs"][0])
    groups = owner.get("apiGroups") or []
    if not ("*" in groups or piece["apiGroups"][0] in groups):
        return False
    if not _resource_covers(owner.get("resources") or [], piece["resources"][0]):
        return False
    names = owner.get("resourceNames") or []
    return not names or piece.get("resourceNames", [None])[0] in names


def _compact_string(rule: Obj) -> str:
    """rbacv1helpers.CompactString: Go's %q of each list, space-separated."""
    parts = []
    for key, label in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ):
        if rule.get(key):
            parts.append(f"{label}:[{' '.join(json.dumps(v) for v in rule[key])}]")
    return "{" + ", ".join(parts) + "}"


def _compact(rules: list[Obj]) -> list[Obj]:
    """CompactRules: rules of one group, one resource and at most one name merge their verbs."""
    merged: dict[tuple[str, str, str], Obj] = {}
    out: list[Obj] = []
    for rule in rules:
        if "nonResourceURLs" in rule:
            out.append(rule)
            continue
        key = (rule["apiGroups"][0], rule["resources"][0], *(rule.get("resourceNames") or [""]))
        if key in merged:
            merged[key]["verbs"] = [*merged[key]["verbs"], *rule["verbs"]]
        else:
            merged[key] = dict(rule)
    return out + list(merged.values())


class EscalationCheck:
    """Who may write a role or a binding: system:masters; whoever holds ``escalate`` on the
    role (``bind`` on the referenced role, for a binding); else only someone who already holds
    every permission it grants (ConfirmNoEscalation)."""

    def __init__(self, authorizer: RbacAuthorizer) -> None:
        self.authorizer = authorizer

    def refusal(self, identity: Identity, plural: str, namespace: str, obj: Obj) -> str | None:
        """None when the write may go on; else the reason of its 403."""
        rbac = self.authorizer
        if plural in ("roles", "clusterroles"):
            name = (obj.get("metadata") or {}).get("name", "")
            escalate = Attributes("escalate", GROUP, plural, "", namespace, name)
            if rbac.decide(identity, escalate)[0]:
                return None
            granted = list(obj.get("rules") or [])
        else:
            ref = obj.get("roleRef") or {}
            resource = ROLE_RESOURCES.get(ref.get("kind", ""), "")
            bind = Attributes("bind", GROUP, resource, "", namespace, ref.get("name", ""))
            if resource and rbac.decide(identity, bind)[0]:
                return None
            granted = rbac.role_rules(ref, namespace)
        owned = [grant.rule for grant in rbac.grants(identity, namespace)]
        missing = [
            piece
            for rule in granted
            for piece in breakdown(rule)
            if not any(rule_covers(owner, piece) for owner in owned)
        ]
        if not missing:
            return None
        lines = sorted({_compact_string(rule) for rule in _compact(missing)})
        groups = "[" + " ".join(json.dumps(group) for group in identity.groups) + "]"
        return (
            f'user "{identity.user}" (groups={groups}) is attempting to grant RBAC permissions '
            "not currently held:\n" + "\n".join(lines)
        )
