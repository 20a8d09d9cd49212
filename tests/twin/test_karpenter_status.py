"""The twin's Karpenter status controllers as tables: selector terms as EC2 filters, the
EC2NodeClass and NodePool conditions with upstream reasons and messages, and the CRDs served
with their printer columns and defaults (the kubectl test in tests/test_karpenter.py)."""

from __future__ import annotations

import pytest

from clustergate.twin.apiserver.groups.apiextensions_k8s_io import validate_crd
from clustergate.twin.karpenter import nodeclass, nodepool
from clustergate.twin.karpenter.conditions import Condition, render, root_ready
from clustergate.twin.karpenter.crds import CRDS

SUBNET = {"id": "subnet-1", "zone": "us-west-2a", "zoneID": "usw2-az2"}
GROUP = {"id": "sg-1", "name": "default"}
AMI = {"id": "ami-1", "name": "amazon-eks-node-1.31-v20241106"}


@pytest.mark.parametrize(
    ("term", "arguments"),
    [
        (
            {"tags": {"karpenter.sh/discovery": "c"}},
            {"Filters": [{"Name": "tag:karpenter.sh/discovery", "Values": ["c"]}]},
        ),
        ({"tags": {"team": "*"}}, {"Filters": [{"Name": "tag-key", "Values": ["team"]}]}),
        ({"id": "subnet-0abc"}, {"Filters": [{"Name": "subnet-id", "Values": ["subnet-0abc"]}]}),
        ({"id": "sg-0abc"}, {"Filters": [{"Name": "group-id", "Values": ["sg-0abc"]}]}),
        ({"name": "web"}, {"Filters": [{"Name": "group-name", "Values": ["web"]}]}),
        (
            {"tags": {"b": "2", "a": "1"}},
            {
                "Filters": [
                    {"Name": "tag:a", "Values": ["1"]},
                    {"Name": "tag:b", "Values": ["2"]},
                ]
            },
        ),
    ],
)
def test_selector_terms_are_ec2_filters(term: dict, arguments: dict) -> None:
    assert nodeclass.ec2_filters(term) == arguments


@pytest.mark.parametrize(
    ("resolved", "failing"),
    [
        (nodeclass.Resolved([SUBNET], [GROUP], [AMI], "p"), None),
        (
            nodeclass.Resolved([], [GROUP], [AMI], "p"),
            ("SubnetsReady", "SubnetsNotFound", "SubnetSelector did not match any Subnets"),
        ),
        (
            nodeclass.Resolved([SUBNET], [], [AMI], "p"),
            (
                "SecurityGroupsReady",
                "SecurityGroupsNotFound",
                "SecurityGroupSelector did not match any SecurityGroups",
            ),
        ),
        (
            nodeclass.Resolved([SUBNET], [GROUP], [], "p"),
            ("AMIsReady", "AMINotFound", "AMISelector did not match any AMIs"),
        ),
    ],
)
def test_node_class_conditions(
    resolved: nodeclass.Resolved, failing: tuple[str, str, str] | None
) -> None:
    conditions = {c.type: c for c in nodeclass.conditions(resolved)}
    ready = conditions["Ready"]
    if failing is None:
        assert all(c.status for c in conditions.values())
        return
    kind, reason, message = failing
    assert conditions[kind] == Condition(kind, False, reason, message)
    assert ready == Condition("Ready", False, f"{kind}False", message)


READY_CLASS = {"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.mark.parametrize(
    ("node_class", "reason", "message"),
    [
        (READY_CLASS, None, None),
        (None, "NodeClassNotFound", "NodeClass not found on cluster"),
        ({"metadata": {}, "status": {}}, "NodeClassNotReady", "NodeClass is NotReady"),
        (
            {**READY_CLASS, "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},
            "NodeClassTerminating",
            "NodeClass is Terminating",
        ),
    ],
)
def test_node_pool_readiness_follows_its_node_class(
    node_class: dict | None, reason: str | None, message: str | None
) -> None:
    conditions = {c.type: c for c in nodepool.conditions(node_class)}
    if reason is None:
        assert conditions["Ready"].status
        assert conditions["NodeClassReady"].status
        return
    assert conditions["NodeClassReady"] == Condition("NodeClassReady", False, reason, message)
    assert conditions["Ready"] == Condition("Ready", False, "NodeClassReadyFalse", message)


def test_node_pool_resources_sum_its_claims() -> None:
    claims = [
        {"status": {"capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"}}},
        {"status": {"capacity": {"cpu": "1500m", "memory": "4Gi", "pods": "29"}}},
        {"status": {}},
    ]
    assert nodepool.resources(claims) == {
        "cpu": "3500m",
        "memory": str(12 * 2**30),
        "pods": "58",
        "ephemeral-storage": "0",
        "nodes": "3",
    }


def test_transition_time_moves_only_when_status_changes() -> None:
    first = render([], [Condition("SubnetsReady", True)], 1)
    stale = [{**first[0], "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    assert render(stale, [Condition("SubnetsReady", True)], 2)[0]["lastTransitionTime"] == (
        "2020-01-01T00:00:00Z"
    )
    flipped = render(stale, [Condition("SubnetsReady", False, "SubnetsNotFound", "m")], 2)
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert root_ready([]) == Condition("Ready", True, "Ready")


@pytest.mark.parametrize("crd", CRDS, ids=lambda crd: crd["metadata"]["name"])
def test_karpenter_crds_are_valid_structural_crds(crd: dict) -> None:
    assert validate_crd(crd) == []
