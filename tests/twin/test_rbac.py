"""The twin's RBAC authorizer: rule matching as a table of (rule, request) → allowed, and the
bootstrap policy read back from the store as the API server wrote it."""

from __future__ import annotations

from typing import Any

import pytest

from clustergate.twin.apiserver.auth import Attributes, Identity
from clustergate.twin.apiserver.groups import rbac_authorization_k8s_io as bootstrap
from clustergate.twin.apiserver.rbac import RbacAuthorizer, breakdown, rule_allows, rule_covers
from clustergate.twin.apiserver.registry import Registry
from clustergate.twin.apiserver.resources import resource
from clustergate.twin.apiserver.store import Store
from clustergate.twin.controllers.clusterroleaggregation import aggregated_rules
from clustergate.twin.settings import TwinSettings


def rule(verbs: str, resources: str = "", groups: str = "", **extra: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs.split(), **extra}
    if resources:
        out |= {"apiGroups": groups.split() or [""], "resources": resources.split()}
    return out


def ask(verb: str, resource: str, sub: str = "", name: str = "", group: str = "") -> Attributes:
    return Attributes(verb, group, resource, sub, "a", name)


def url(path: str) -> Attributes:
    return Attributes(verb="get", path=path)


#: (rule, request, allowed): rbacv1helpers' matching, one property per row.
RULE_TABLE: list[tuple[dict[str, Any], Attributes, bool]] = [
    (rule("get", "pods"), ask("get", "pods"), True),
    (rule("get", "pods"), ask("list", "pods"), False),
    (rule("get", "pods"), ask("get", "pods", group="apps"), False),
    (rule("*", "*", "*"), ask("create", "pods", "eviction"), True),
    # a resource does not cover its subresources, nor "pods/*" any of them
    (rule("get", "pods"), ask("get", "pods", "log"), False),
    (rule("get", "pods/*"), ask("get", "pods", "log"), False),
    (rule("get", "pods/log"), ask("get", "pods", "log"), True),
    (rule("create", "*/eviction"), ask("create", "pods", "eviction"), True),
    (rule("create", "pods/eviction"), ask("create", "pods", "eviction"), True),
    (rule("patch", "nodes/status"), ask("patch", "nodes"), False),
    # resourceNames narrow; a rule with names never allows a request without one (list)
    (rule("get", "pods", resourceNames=["x"]), ask("get", "pods", name="x"), True),
    (rule("get", "pods", resourceNames=["x"]), ask("get", "pods", name="y"), False),
    (rule("list", "pods", resourceNames=["x"]), ask("list", "pods"), False),
    # non-resource URLs: exact, or a prefix ending in *; never from a resource rule
    (rule("get", nonResourceURLs=["/healthz"]), url("/healthz"), True),
    (rule("get", nonResourceURLs=["/healthz"]), url("/healthz/etcd"), False),
    (rule("get", nonResourceURLs=["/apis/*"]), url("/apis/apps"), True),
    (rule("get", nonResourceURLs=["*"]), url("/metrics"), True),
    (rule("get", "pods"), url("/api"), False),
]


@pytest.mark.parametrize(("rule", "attrs", "allowed"), RULE_TABLE)
def test_rule_matching(rule: dict[str, Any], attrs: Attributes, allowed: bool) -> None:
    assert rule_allows(rule, attrs) is allowed


@pytest.fixture(scope="module")
def authorizer(tmp_path_factory: pytest.TempPathFactory) -> RbacAuthorizer:
    registry = Registry(Store(), TwinSettings(state_dir=str(tmp_path_factory.mktemp("rbac"))))
    registry.bootstrap("127.0.0.1", 443)
    return RbacAuthorizer(registry.store)


AUTHENTICATED = Identity("someone", ("system:authenticated",))


def test_bootstrap_bindings_let_every_authenticated_user_discover_and_ask(
    authorizer: RbacAuthorizer,
) -> None:
    assert authorizer.decide(AUTHENTICATED, Attributes(verb="get", path="/apis/apps/v1")) == (
        True,
        'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole '
        '"system:discovery" to Group "system:authenticated"',
    )
    review = Attributes(
        verb="create", group="authorization.k8s.io", resource="selfsubjectaccessreviews"
    )
    assert authorizer.decide(AUTHENTICATED, review)[0]
    assert authorizer.decide(AUTHENTICATED, Attributes(verb="list", resource="pods")) == (False, "")
    anonymous = Identity("system:anonymous", ("system:unauthenticated",))
    assert authorizer.decide(anonymous, Attributes(verb="get", path="/version"))[0]
    assert not authorizer.decide(anonymous, Attributes(verb="get", path="/apis"))[0]


def test_controller_roles_bind_their_kube_system_service_accounts(
    authorizer: RbacAuthorizer,
) -> None:
    deployments = Identity(
        "system:serviceaccount:kube-system:deployment-controller",
        ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
    )
    create_rs = Attributes(verb="create", group="apps", resource="replicasets", namespace="x")
    allowed, reason = authorizer.decide(deployments, create_rs)
    assert allowed
    assert reason.endswith('to ServiceAccount "deployment-controller/kube-system"')
    assert not authorizer.decide(deployments, Attributes(verb="patch", resource="nodes"))[0]
    manager = Identity("system:kube-controller-manager", ("system:authenticated",))
    assert authorizer.decide(
        manager, Attributes(verb="watch", group="apps", resource="daemonsets")
    )[0]


def test_every_bootstrap_binding_names_a_bootstrap_role() -> None:
    roles = {
        obj["metadata"]["name"]
        for plural, obj in bootstrap.GROUP.bootstrap
        if plural == "clusterroles"
    }
    bound = {
        obj["roleRef"]["name"]
        for plural, obj in bootstrap.GROUP.bootstrap
        if plural == "clusterrolebindings"
    }
    assert bound <= roles
    assert resource("rbac.authorization.k8s.io", "v1", "clusterroles").group == bootstrap.GROUP_NAME


#: (owner's rule, wanted rule, covered): validation.Covers, one broken-down rule at a time.
COVERS_TABLE: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    (rule("get list", "pods"), rule("get", "pods"), True),
    (rule("get", "pods"), rule("get list", "pods"), False),
    (rule("*", "*", "*"), rule("delete", "nodes"), True),
    (rule("get", "*/scale", "apps"), rule("get", "deployments/scale", "apps"), True),
    (rule("get", "pods"), rule("get", "pods/log"), False),
    (rule("get", "pods", resourceNames=["x"]), rule("get", "pods"), False),
    (rule("get", "pods"), rule("get", "pods", resourceNames=["x"]), True),
    (rule("get", nonResourceURLs=["/api/*"]), rule("get", nonResourceURLs=["/api/v1"]), True),
]


@pytest.mark.parametrize(("owner", "wanted", "covered"), COVERS_TABLE)
def test_escalation_coverage(owner: dict[str, Any], wanted: dict[str, Any], covered: bool) -> None:
    assert all(rule_covers(owner, piece) for piece in breakdown(wanted)) is covered


def test_an_aggregated_cluster_role_gathers_the_rules_of_the_roles_its_selectors_match() -> None:
    def role(name: str, labels: dict[str, str], *rules: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}, "rules": list(rules)}

    selector = {"matchLabels": {"aggregate-to-monitoring": "true"}}
    monitoring = {
        **role("monitoring", {}),
        "aggregationRule": {"clusterRoleSelectors": [selector]},
    }
    pods, nodes = rule("get list", "pods"), rule("get", "nodes")
    roles = [
        monitoring,
        role("b-nodes", {"aggregate-to-monitoring": "true"}, nodes, pods),
        role("a-pods", {"aggregate-to-monitoring": "true"}, pods),
        role("unlabelled", {}, rule("*", "*", "*")),
    ]
    assert aggregated_rules(monitoring, roles) == [pods, nodes]
    assert aggregated_rules({**monitoring, "aggregationRule": {}}, roles) == []
