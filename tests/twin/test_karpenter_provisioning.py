"""Karpenter's decisions on the twin as tables: which instance types a NodePool's requirements
allow, how pending pods are packed onto new NodeClaims within the pool's limits, a claim's
conditions as its node comes, and how many nodes the disruption budgets let go."""

from __future__ import annotations

import pytest

from clustergate.twin.karpenter import lifecycle, provisioner
from clustergate.twin.karpenter.conditions import Condition

NONE = provisioner.PendingPod("daemonsets", 0, 0)
GI = 2**30


def _names(requirements: list[dict]) -> list[str]:
    return [kind.name for kind in provisioner.allowed_types(requirements)]


@pytest.mark.parametrize(
    ("requirements", "names"),
    [
        (
            [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["m"]}],
            ["m5.large", "m5.xlarge", "m5.2xlarge"],
        ),
        (
            [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["r5.large"]}],
            ["r5.large"],
        ),
        (
            [
                {
                    "key": "karpenter.k8s.aws/instance-category",
                    "operator": "NotIn",
                    "values": ["m", "r"],
                },
            ],
            ["c5.large", "c5.xlarge"],
        ),
        ([{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}], []),
        ([{"key": "example.com/team", "operator": "In", "values": ["a"]}], None),
    ],
)
def test_requirements_choose_instance_types(requirements: list[dict], names: list | None) -> None:
    if names is None:  # a key the instance types do not carry leaves every type in
        assert len(_names(requirements)) == 7
    else:
        assert _names(requirements) == names


def test_pods_are_packed_onto_the_cheapest_type_that_holds_them() -> None:
    pods = [provisioner.PendingPod(f"ns/p{i}", 1500, GI) for i in range(3)]
    plan = provisioner.plan(pods, "default", [], {}, {}, NONE)
    assert [node.instance_type.name for node in plan.nodes] == ["c5.large"] * 3
    assert plan.unplaced == {}
    small = [provisioner.PendingPod(f"ns/s{i}", 400, GI // 4) for i in range(4)]
    packed = provisioner.plan(small, "default", [], {}, {}, NONE)
    assert [len(node.pods) for node in packed.nodes] == [4]


@pytest.mark.parametrize(
    ("limits", "used", "nodes", "unplaced"),
    [
        ({"cpu": "0"}, {"cpu": "0"}, 0, 2),
        ({"cpu": "4"}, {"cpu": "2"}, 1, 1),
        ({"cpu": "100"}, {"cpu": "2"}, 2, 0),
        ({"memory": "4Gi"}, {}, 1, 1),
    ],
)
def test_limits_hold_back_launches(limits: dict, used: dict, nodes: int, unplaced: int) -> None:
    pods = [provisioner.PendingPod(f"ns/p{i}", 1500, GI) for i in range(2)]
    requirements = [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["c5.large"]}
    ]
    plan = provisioner.plan(pods, "default", requirements, limits, used, NONE)
    assert len(plan.nodes) == nodes
    assert len(plan.unplaced) == unplaced
    for message in plan.unplaced.values():
        assert message == (
            "Failed to schedule pod, all available instance types exceed limits "
            'for nodepool: "default"'
        )


def test_a_pod_no_type_holds_is_incompatible() -> None:
    plan = provisioner.plan(
        [provisioner.PendingPod("ns/huge", 64000, GI)], "default", [], {}, {}, NONE
    )
    assert plan.nodes == []
    assert "incompatible with nodepool 'default'" in plan.unplaced["ns/huge"]


def test_daemonset_overhead_is_kept_free_on_new_nodes() -> None:
    pod = provisioner.PendingPod("ns/p", 1800, GI)
    assert provisioner.plan([pod], "d", [], {}, {}, NONE).nodes[0].instance_type.name == "c5.large"
    heavy = provisioner.PendingPod("daemonsets", 500, GI)
    assert (
        provisioner.plan([pod], "d", [], {}, {}, heavy).nodes[0].instance_type.name == "c5.xlarge"
    )


READY_NODE = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
BOOTING_NODE = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}


@pytest.mark.parametrize(
    ("launched", "node", "statuses"),
    [
        (Condition("Launched", True), None, (True, False, False, False)),
        (Condition("Launched", True), BOOTING_NODE, (True, True, False, False)),
        (Condition("Launched", True), READY_NODE, (True, True, True, True)),
        (
            Condition("Launched", False, "NodeClassNotReady", "m"),
            None,
            (False, False, False, False),
        ),
    ],
)
def test_claim_conditions_follow_the_node(
    launched: Condition, node: dict | None, statuses: tuple[bool, ...]
) -> None:
    conditions = lifecycle.claim_conditions(launched, node)
    assert [c.type for c in conditions] == ["Launched", "Registered", "Initialized", "Ready"]
    assert tuple(c.status for c in conditions) == statuses


@pytest.mark.parametrize(
    ("budgets", "nodes", "allowed"),
    [
        ([{"nodes": "10%"}], 1, 1),
        ([{"nodes": "10%"}], 25, 3),
        ([], 25, 3),
        ([{"nodes": "0"}], 5, 0),
        ([{"nodes": "10%"}, {"nodes": "2"}], 50, 2),
        ([{"nodes": "0", "schedule": "@daily", "duration": "10m"}], 5, 5),
        ([{"nodes": "100%"}], 0, 0),
    ],
)
def test_disruption_budgets(budgets: list[dict], nodes: int, allowed: int) -> None:
    assert lifecycle.allowed_disruptions(budgets, nodes) == allowed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60.0), ("1h30m", 5400.0), ("10s", 10.0), ("Never", None), (None, None)],
)
def test_durations(text: str | None, seconds: float | None) -> None:
    assert lifecycle.duration_s(text) == seconds
