"""What we ship for live use stays in step with what the code asks for.

deploy/rbac.yaml is read with the twin's RBAC rule matching (the same code that authorizes the
twin's requests), so "granted" here means what an API server would grant.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import yaml
from botocore import xform_name

from clustergate.access import RUN_ROLE, Permission
from clustergate.preflight import (
    DISRUPTIVE_ROLE,
    GATE_ROLE,
    IRSA_PROBE_ROLE,
    READ_ONLY_PROOF,
    SUITES,
    required_permissions,
)
from clustergate.twin.apiserver.auth import Attributes
from clustergate.twin.apiserver.rbac import rule_allows

ROOT = Path(__file__).parents[1]
DOCUMENTS = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))


def _role(name: str, kind: str = "ClusterRole") -> dict[str, Any]:
    return next(d for d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name)


def _attrs(p: Permission) -> Attributes:
    return Attributes(p.verb, p.group, p.resource, p.subresource, p.namespace, p.name)


def _grants(rules: list[dict[str, Any]], permission: Permission) -> bool:
    return any(rule_allows(rule, _attrs(permission)) for rule in rules)


def _namespaced_rules(namespace: str) -> list[dict[str, Any]]:
    """Rules of the Roles deploy/rbac.yaml binds inside ``namespace``."""
    return [
        rule
        for doc in DOCUMENTS
        if doc["kind"] == "Role" and doc["metadata"].get("namespace") == namespace
        for rule in doc["rules"]
    ]


def test_each_role_grants_what_the_preflight_says_it_grants() -> None:
    missing = []
    needs = required_permissions(SUITES, disruptive=True, sweep=True, irsa_namespaces=["apps"])
    for need in needs:
        if need.role.startswith("Role "):  # a Role in the namespace the permission names
            role, rules = need.role, _namespaced_rules(need.permission.namespace)
        else:
            role = need.role.split(" ")[0]
            rules = _role(role)["rules"] + _namespaced_rules(need.permission.namespace)
        if not _grants(rules, need.permission):
            missing.append(f"{role}: {need.permission.describe()}")
    assert not missing, f"deploy/rbac.yaml lacks: {missing}"


def test_the_gate_roles_grant_none_of_the_changes_a_gate_must_not_make() -> None:
    """The read-only proof the preflight asks of the API server holds for the shipped roles:
    clustergate-gate (cluster-wide), clustergate-run and clustergate-irsa-probe (bound in one
    namespace, so asked there) and the kube-system Role."""
    for permission in READ_ONLY_PROOF:
        rules = _role(GATE_ROLE)["rules"] + _namespaced_rules(permission.namespace)
        assert not _grants(rules, permission), f"{GATE_ROLE} can {permission.describe()}"
    gate_rules = _role(GATE_ROLE)["rules"]
    for verb in ("patch", "update", "delete", "create"):
        for resource in ("nodes", "deployments", "daemonsets", "clusterroles"):
            group = {"deployments": "apps", "daemonsets": "apps"}.get(resource, "")
            if resource == "clusterroles":
                group = "rbac.authorization.k8s.io"
            assert not _grants(gate_rules, Permission(verb, resource, group)), (verb, resource)
    assert not _grants(gate_rules, Permission("bind", "clusterroles", "rbac.authorization.k8s.io"))
    for name in (RUN_ROLE, IRSA_PROBE_ROLE):
        cluster_scoped = [Permission(v, "nodes") for v in ("patch", "delete")]
        assert not any(_grants(_role(name)["rules"], p) for p in cluster_scoped)


def test_the_roles_are_bound_as_documented() -> None:
    bindings = {d["metadata"]["name"]: d for d in DOCUMENTS if d["kind"] == "ClusterRoleBinding"}
    gate_subjects = {(s["kind"], s["name"]) for s in bindings[GATE_ROLE]["subjects"]}
    assert {("ServiceAccount", GATE_ROLE), ("Group", "clustergate:gate")} <= gate_subjects
    assert ("ServiceAccount", DISRUPTIVE_ROLE) in gate_subjects, "disruption needs the gate too"
    disruptive = {(s["kind"], s["name"]) for s in bindings[DISRUPTIVE_ROLE]["subjects"]}
    assert ("ServiceAccount", GATE_ROLE) not in disruptive
    # clustergate-run and clustergate-irsa-probe are bound per namespace, never cluster-wide
    assert not {RUN_ROLE, IRSA_PROBE_ROLE} & {b["roleRef"]["name"] for b in bindings.values()}


def _policy(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / name).read_text())


def _actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


#: The AWS services the runner calls (the probe's calls are the mapped roles', not the runner's).
SERVICES = ("autoscaling", "eks", "elbv2", "iam", "route53", "sts")
#: Names the scan finds that are another service's call of the same method name.
NOT_CALLED = {"autoscaling:DescribeLoadBalancers": "elbv2's describe_load_balancers"}


def _aws_calls() -> set[str]:
    """``prefix:Operation`` for every operation of those services (botocore's own models)
    whose boto3 method, ``.describe_cluster(`` or a ``get_paginator("list_nodegroups")``,
    appears in clustergate/ outside the twin and the probe."""
    source = "\n".join(
        path.read_text()
        for path in (ROOT / "clustergate").rglob("*.py")
        if not {"twin", "probe"} & set(path.relative_to(ROOT / "clustergate").parts)
    )
    session = botocore.session.get_session()
    calls = set()
    for service in SERVICES:
        model = session.get_service_model(service)
        prefix = model.metadata["endpointPrefix"]
        for operation in model.operation_names:
            method = xform_name(operation)
            if re.search(rf"\.{method}\(|[\"']{method}[\"']", source):
                calls.add(f"{prefix}:{operation}")
    return calls


def test_iam_policies_are_valid_and_scoped() -> None:
    for name in ("iam-policy-gate.json", "iam-policy-disruptive.json"):
        actions = _actions(_policy(name))
        assert actions, name
        assert all(":" in a and "*" not in a for a in actions), name
    read = _actions(_policy("iam-policy-gate.json"))
    writes = ("Update", "Modify", "Change", "Set", "Create", "Delete", "Put")
    assert not {a for a in read if a.split(":")[1].startswith(writes)}
    assert {
        "eks:ListClusters",
        "eks:ListPodIdentityAssociations",
        "elasticloadbalancing:DescribeLoadBalancers",
        "route53:ListHostedZones",
    } <= read, "clustergate init reads these (docs/getting-started.md)"


def test_iam_policies_allow_every_aws_call_the_code_makes() -> None:
    granted = _actions(_policy("iam-policy-gate.json")) | _actions(
        _policy("iam-policy-disruptive.json")
    )
    calls = _aws_calls() - set(NOT_CALLED)
    assert "eks:DescribeCluster" in calls, "the scan must find the calls it checks"
    assert not sorted(calls - granted), f"calls no shipped IAM policy allows: {calls - granted}"
