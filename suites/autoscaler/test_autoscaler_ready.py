"""The autoscaler is there and able to act: running, reporting, and with room to grow."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest

from clustergate import autoscaling
from clustergate.config import ClusterConfig
from clustergate.kube import Cluster

pytestmark = [pytest.mark.autoscaler]


def _require(cluster_config: ClusterConfig, *kinds: str) -> None:
    kind = cluster_config.autoscaler.kind
    if kind not in kinds:
        pytest.skip(f"autoscaler.kind is {kind!r}; this check is for {' or '.join(kinds)}")


@pytest.mark.gate
def test_autoscaler_deployment_is_running(cluster: Cluster, cluster_config: ClusterConfig) -> None:
    _require(cluster_config, "cluster-autoscaler", "karpenter")
    problem = autoscaling.deployment_problem(cluster, cluster_config.autoscaler)
    assert problem is None, problem


@pytest.mark.gate
def test_cluster_autoscaler_status_is_fresh_and_healthy(
    cluster: Cluster, cluster_config: ClusterConfig
) -> None:
    _require(cluster_config, "cluster-autoscaler")
    section = cluster_config.autoscaler
    status = autoscaling.read_status(cluster, section)
    where = f"ConfigMap {section.namespace}/{section.status_configmap}"
    problems = autoscaling.status_problems(
        status, dt.datetime.now(dt.UTC), section.status_max_age_s, where
    )
    assert not problems, "; ".join(problems)


@pytest.mark.gate
def test_node_group_asgs_carry_the_auto_discovery_tags(
    cluster: Cluster, cluster_config: ClusterConfig, aws: boto3.Session
) -> None:
    _require(cluster_config, "cluster-autoscaler")
    if not cluster_config.node_groups:
        pytest.skip("no node_groups in the config")
    name = cluster_config.cluster.name
    groups = autoscaling.node_group_asgs(aws, name, cluster_config.node_groups)
    problems = [p for g in groups for p in autoscaling.discovery_tag_problems(g, name)]
    assert not problems, "; ".join(problems)
    status = autoscaling.read_status(cluster, cluster_config.autoscaler)
    if status.groups:
        unmanaged = [g.asg for g in groups if status.group(g.asg) is None]
        assert not unmanaged, (
            f"the autoscaler's status lists no node group for ASG(s) {', '.join(unmanaged)} "
            f"although they are tagged; it manages: {', '.join(g.name for g in status.groups)}"
        )


@pytest.mark.gate
def test_node_group_sizes_are_sane_and_leave_headroom(
    cluster_config: ClusterConfig, aws: boto3.Session
) -> None:
    _require(cluster_config, "cluster-autoscaler")
    if not cluster_config.node_groups:
        pytest.skip("no node_groups in the config")
    groups = autoscaling.node_group_asgs(
        aws, cluster_config.cluster.name, cluster_config.node_groups
    )
    problems = [p for g in groups for p in autoscaling.size_problems(g)]
    assert not problems, "; ".join(problems)


@pytest.mark.gate
def test_karpenter_nodepools_are_ready(cluster: Cluster, cluster_config: ClusterConfig) -> None:
    _require(cluster_config, "karpenter")
    nodepools = autoscaling.read_nodepools(cluster)
    node_classes = autoscaling.node_classes_of(cluster, nodepools)
    problems = autoscaling.nodepool_problems(nodepools, node_classes)
    assert not problems, "; ".join(problems)
