"""Kubelet version skew, node-group grouping and release matching, on client model objects."""

from __future__ import annotations

import pytest
from kubernetes import client

from clustergate.config import ExpectedTaint
from clustergate.eks_upgrade import Target
from clustergate.nodes import (
    NO_GROUP,
    allowed_kubelet_lag,
    minor_of,
    mixed_groups,
    patch_of,
    skew_problem,
    skewed_nodes,
    unexpected_unschedulable,
    versions_by_group,
)


def _node(name: str, kubelet: str, group: str | None = "ng-a") -> client.V1Node:
    labels = {"eks.amazonaws.com/nodegroup": group} if group else {}
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        status=client.V1NodeStatus(
            node_info=client.V1NodeSystemInfo(
                kubelet_version=kubelet,
                architecture="amd64",
                boot_id="b",
                container_runtime_version="c",
                kernel_version="k",
                kube_proxy_version=kubelet,
                machine_id="m",
                operating_system="linux",
                os_image="al2023",
                system_uuid="s",
            )
        ),
    )


def test_versions_parse() -> None:
    assert minor_of("v1.31.2-eks-7f9249a") == (1, 31)
    assert minor_of("1.29") == (1, 29)
    assert patch_of("1.31.2-20241106") == "1.31.2"
    assert patch_of("v1.31.2-eks-7f9249a") == "1.31.2"
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        minor_of("latest")
    with pytest.raises(ValueError, match="patch"):
        patch_of("1.31")


@pytest.mark.parametrize(
    ("kubelet", "server", "problem"),
    [
        ("v1.31.2-eks-1", "v1.31.4-eks-2", None),
        ("v1.28.15-eks-1", "v1.31.0", None),  # 3 older, allowed from 1.28 on
        ("v1.27.16-eks-1", "v1.31.0", "4 minor versions older"),
        ("v1.25.0", "v1.27.3", None),  # 2 older before 1.28
        ("v1.24.0", "v1.27.3", "3 minor versions older than the control plane v1.27.3 (at most 2"),
        ("v1.32.0-eks-1", "v1.31.2-eks-2", "newer than the control plane"),
    ],
)
def test_skew_policy(kubelet: str, server: str, problem: str | None) -> None:
    found = skew_problem(kubelet, server)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_lag_allowed_changes_at_1_28() -> None:
    assert allowed_kubelet_lag((1, 27)) == 2
    assert allowed_kubelet_lag((1, 28)) == 3


def test_skewed_nodes_name_node_and_group() -> None:
    lines = skewed_nodes([_node("n1", "v1.31.2"), _node("n2", "v1.32.0", "ng-b")], "v1.31.2")
    assert lines == ["node n2 (ng-b): kubelet v1.32.0 is newer than the control plane v1.31.2"]


def test_groups_with_two_versions_are_named_with_their_nodes() -> None:
    nodes = [
        _node("n1", "v1.30.6-eks-a"),
        _node("n2", "v1.31.2-eks-b"),
        _node("n3", "v1.31.2-eks-b", "ng-b"),
        _node("self", "v1.29.0", None),
        _node("self2", "v1.30.0", None),
    ]
    assert versions_by_group(nodes)[NO_GROUP] == {"v1.29.0": ["self"], "v1.30.0": ["self2"]}
    assert mixed_groups(nodes) == [
        "node group ng-a runs 2 versions: v1.30.6-eks-a on n1; v1.31.2-eks-b on n2"
    ]


def test_upgrade_targets_match_kubelets() -> None:
    assert Target("1.31", None).kubelet_matches("v1.31.2-eks-7f9249a")
    assert not Target("1.31", None).kubelet_matches("v1.3.1")
    release = Target(None, "1.31.2-20241106")
    assert release.kubelet_matches("v1.31.2-eks-7f9249a")
    assert not release.kubelet_matches("v1.31.1-eks-7f9249a")
    assert "forces a node roll" in Target(None, "1.31.2-20241106", reapplied=True).describe()


def _spec(name: str, cordoned: bool, taints: list[tuple[str, str | None, str]], owner=None):
    node = _node(name, "v1.31.2")
    node.metadata.annotations = {"clustergate.io/cordoned-by": owner} if owner else None
    node.spec = client.V1NodeSpec(
        unschedulable=cordoned or None,
        taints=[client.V1Taint(key=k, value=v, effect=e) for k, v, e in taints] or None,
    )
    return node


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (_spec("a", False, []), []),
        (
            _spec("a", True, [("node.kubernetes.io/unschedulable", None, "NoSchedule")]),
            ["node a (ng-a) is cordoned (not by clustergate)"],
        ),
        (
            _spec("a", True, [], owner="cg-1"),
            ["node a (ng-a) is cordoned (by clustergate run cg-1)"],
        ),
        (_spec("quiet", True, []), []),
        (_spec("a", False, [("dedicated", "gpu", "NoSchedule")]), []),
        (
            _spec("a", False, [("dedicated", "db", "NoSchedule")]),
            ["node a (ng-a) has taint dedicated=db:NoSchedule"],
        ),
        (_spec("a", False, [("spot", None, "NoSchedule")]), []),
        (_spec("a", False, [("other", "x", "PreferNoSchedule")]), []),
        (
            _spec("a", False, [("other", None, "NoSchedule")]),
            ["node a (ng-a) has taint other:NoSchedule"],
        ),
    ],
)
def test_unexpected_cordons_and_taints_are_reported_unless_the_config_lists_them(
    node, expected: list[str]
) -> None:
    allowed = [ExpectedTaint(key="dedicated", value="gpu"), ExpectedTaint(key="spot")]
    assert unexpected_unschedulable([node], ["quiet"], allowed) == expected
