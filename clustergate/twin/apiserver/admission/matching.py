"""Which admission webhooks and policies a request reaches: rules, scope and selectors.

As k8s.io/apiserver pkg/admission/plugin/webhook/predicates (rules, namespace, object) decide:
a rule matches when operation, API group, version and resource (``pods``, ``pods/status``,
``pods/*``, ``*/status``, ``*``) all match and its scope allows the resource's; the namespace
selector applies to namespaced requests (and to a Namespace itself, by its own labels) and is
ignored for other cluster-scoped ones; the object selector matches the new or the old object's
labels. A missing selector is the empty one, which matches everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustergate.twin.apiserver.selectors import LabelSelector

Obj = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """What admission knows of one request (admission.Attributes upstream)."""

    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    kind: str
    namespaced: bool
    #: The group and version of ``kind`` where they are not the resource's: a scale
    #: subresource's object is an autoscaling/v1 Scale.
    kind_group_version: tuple[str, str] | None = None

    def kind_of(self) -> dict[str, str]:
        group, version = self.kind_group_version or (self.group, self.version)
        return {"group": group, "version": version, "kind": self.kind}


def _wild(values: list[str] | None, value: str) -> bool:
    values = values or []
    return "*" in values or value in values


def _resource_matches(patterns: list[str] | None, resource: str, subresource: str) -> bool:
    """``res/sub`` patterns, each half ``*`` or exact; a bare ``res`` means no subresource."""
    for pattern in patterns or []:
        head, _, tail = pattern.partition("/")
        if head in ("*", resource) and tail in ("*", subresource):
            return True
    return False


def _scope_matches(scope: str | None, namespaced: bool) -> bool:
    scope = scope or "*"
    return scope == "*" or (scope == "Namespaced") == namespaced


def rule_matches(rule: Obj, attrs: Attributes) -> bool:
    """One RuleWithOperations against a request."""
    return (
        _wild(rule.get("operations"), attrs.operation)
        and _wild(rule.get("apiGroups"), attrs.group)
        and _wild(rule.get("apiVersions"), attrs.version)
        and _resource_matches(rule.get("resources"), attrs.resource, attrs.subresource)
        and _scope_matches(rule.get("scope"), attrs.namespaced)
    )


def rules_match(rules: list[Obj] | None, attrs: Attributes) -> bool:
    return any(rule_matches(rule, attrs) for rule in rules or [])


def _selector(selector: Obj | None) -> LabelSelector:
    return LabelSelector.from_object(selector or {}) or LabelSelector(())


def _labels(obj: Obj | None) -> dict[str, str] | None:
    if obj is None:
        return None
    return (obj.get("metadata") or {}).get("labels") or {}


def namespace_matches(selector: Obj | None, attrs: Attributes, namespace: Obj | None) -> bool:
    """``namespace`` is the request's Namespace object (None for cluster-scoped requests)."""
    chosen = _selector(selector)
    if chosen.empty:
        return True
    if attrs.resource == "namespaces" and not attrs.group:
        return chosen.matches(_labels(namespace))
    if not attrs.namespaced:
        return True
    return chosen.matches(_labels(namespace))


def object_matches(selector: Obj | None, obj: Obj | None, old: Obj | None) -> bool:
    chosen = _selector(selector)
    if chosen.empty:
        return True
    return any(
        labels is not None and chosen.matches(labels) for labels in (_labels(obj), _labels(old))
    )
