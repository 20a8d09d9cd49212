"""What we ship for live use stays in step with what the code asks for."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from clustergate.preflight import SUITES, required_permissions

ROOT = Path(__file__).parents[1]


def _granted() -> set[tuple[str, str, str]]:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))
    role = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((verb, group, resource))
    return granted


def test_rbac_manifest_grants_every_permission_the_preflight_requires() -> None:
    granted = _granted()
    missing = []
    for permission in required_permissions(SUITES, disruptive=True, sweep=True):
        resource = permission.resource
        if permission.subresource:
            resource = f"{resource}/{permission.subresource}"
        if (permission.verb, permission.group, resource) not in granted:
            missing.append(permission.describe())
    assert not missing, f"deploy/rbac.yaml lacks: {missing}"


def test_iam_policy_is_valid_json_with_scoped_statements() -> None:
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    actions = [action for statement in policy["Statement"] for action in statement["Action"]]
    assert "sts:GetCallerIdentity" in actions
    assert all(":" in action and "*" not in action for action in actions)
