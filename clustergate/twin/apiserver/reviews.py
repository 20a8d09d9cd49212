"""authorization.k8s.io self-reviews and authentication.k8s.io TokenReview."""

from __future__ import annotations

from typing import Any

from clustergate.twin.apiserver import errors
from clustergate.twin.apiserver.auth import Attributes, Identity, authorize
from clustergate.twin.apiserver.rbac import RbacAuthorizer

Obj = dict[str, Any]


def _body(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    return body


def self_subject_access_review(rbac: RbacAuthorizer, identity: Identity, body: Any) -> Obj:
    """Answered by the same authorizer chain as every request."""
    review = _body(body)
    spec = review.get("spec") or {}
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource:
        attrs = Attributes(
            verb=resource.get("verb", ""),
            group=resource.get("group", ""),
            resource=resource.get("resource", ""),
            subresource=resource.get("subresource", ""),
            namespace=resource.get("namespace", ""),
            name=resource.get("name", ""),
        )
    elif non_resource:
        attrs = Attributes(verb=non_resource.get("verb", ""), path=non_resource.get("path", ""))
    else:
        raise errors.ApiError(
            422,
            "Invalid",
            'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: '
            'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes '
            "must be specified",
        )
    allowed, reason = authorize(rbac, identity, attrs)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }


def self_subject_rules_review(rbac: RbacAuthorizer, identity: Identity, body: Any) -> Obj:
    """The rules RBAC binds to the caller in the namespace; system:masters gets them from its
    cluster-admin binding, as from the real server."""
    review = _body(body)
    namespace = (review.get("spec") or {}).get("namespace", "")
    resource_rules, non_resource_rules = rbac.rules_for(identity, namespace)
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": review.get("spec") or {},
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        },
    }


def self_subject_review(identity: Identity) -> Obj:
    """authentication.k8s.io/v1 SelfSubjectReview: who the request's credentials are."""
    user: Obj = {"username": identity.user, "groups": list(identity.groups)}
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user},
    }


def token_review(identity: Identity | None, body: Any) -> Obj:
    """``identity`` is what the reviewed token authenticates as, or None."""
    review = _body(body)
    status: Obj = {"authenticated": identity is not None}
    if identity is not None:
        status["user"] = {"username": identity.user, "groups": list(identity.groups)}
        status["audiences"] = (review.get("spec") or {}).get("audiences") or []
    else:
        status["error"] = "invalid bearer token"
    return {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": review.get("spec") or {},
        "status": status,
    }
