"""The cluster grows when pods wait for room, and shrinks back when they are gone, in time."""

from __future__ import annotations

import time

import boto3
import pytest
from kubernetes import client

from clustergate import autoscaling
from clustergate.config import ClusterConfig
from clustergate.kube import Cluster, list_all
from clustergate.results import Recorder
from clustergate.runctx import RunContext
from clustergate.wait import WaitTimeout, wait_for_objects

pytestmark = [pytest.mark.autoscaler]
WORKLOAD = "autoscaler-pause"


def _running(pods: list[client.V1Pod]) -> list[client.V1Pod]:
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


@pytest.mark.nightly
@pytest.mark.disruptive
def test_pending_pods_get_new_nodes_and_idle_nodes_go_in_time(
    cluster: Cluster,
    cluster_config: ClusterConfig,
    aws: boto3.Session,
    run: RunContext,
    measure: Recorder,
) -> None:
    section = cluster_config.autoscaler
    if section.kind == "none":
        pytest.skip("autoscaler.kind is 'none'")
    timeouts = cluster_config.timeouts
    # Karpenter adds nodes of its NodePools, not of the configured node groups.
    groups = (
        {group.name for group in cluster_config.node_groups}
        if section.kind == "cluster-autoscaler"
        else set()
    )
    core = cluster.core()
    nodes = list_all(core.list_node)
    original = {node.metadata.name for node in nodes}
    sizes: list[autoscaling.GroupSizes] = []
    if section.kind == "cluster-autoscaler" and cluster_config.node_groups:
        sizes = autoscaling.node_group_asgs(
            aws, cluster_config.cluster.name, cluster_config.node_groups
        )
        autoscaling.guard_desired(run, aws, sizes)
    measured = [
        node
        for node in nodes
        if autoscaling.schedulable(node)
        and (not groups or autoscaling.node_group_of(node) in groups)
    ]
    plan = autoscaling.plan_pause_pods(
        autoscaling.node_capacities(measured, list_all(core.list_pod_for_all_namespaces)),
        section.extra_nodes,
    )
    deployment = autoscaling.pause_deployment(run, WORKLOAD, plan, groups)

    with autoscaling.NodeTimeline(cluster) as timeline:
        try:
            started = time.monotonic()
            cluster.apps().create_namespaced_deployment(run.namespace, deployment)
            try:
                wait_for_objects(
                    core.list_namespaced_pod,
                    lambda pods: len(_running(pods)) >= plan.replicas,
                    what=f"{plan.describe()} to be Running",
                    timeout_s=timeouts.scale_up_s,
                    describe=lambda pods: f"{len(_running(pods))}/{plan.replicas} Running",
                    namespace=run.namespace,
                    label_selector=f"app={WORKLOAD}",
                )
            except WaitTimeout as timeout:
                pods = core.list_namespaced_pod(run.namespace, label_selector=f"app={WORKLOAD}")
                pending = {p.metadata.name for p in pods.items if p.status.phase == "Pending"}
                why = autoscaling.explain_scale_up(cluster, section, run.namespace, pending, sizes)
                pytest.fail(
                    f"the cluster did not grow for pending pods: {timeout}; "
                    f"{len(pending)} pod(s) still Pending in {run.namespace}; {why}",
                    pytrace=False,
                )
            time_to_capacity = time.monotonic() - started
            measure("time_to_capacity", time_to_capacity, "s", pods=plan.replicas)
            added = [n for n in list_all(core.list_node) if n.metadata.name not in original]
            measure("nodes_added", len(added), "nodes", asked=section.extra_nodes)
            names = {p.metadata.name for p in core.list_namespaced_pod(run.namespace).items}
            events = autoscaling.scale_up_events(cluster, run.namespace, names)
            assert added, (
                f"all {plan.replicas} pause pods run but no node was added ({plan.describe()}): "
                "free capacity was larger than computed, or another workload left"
            )
            triggered = autoscaling.TRIGGERED[section.kind]
            assert any(e.reason == triggered for e in events), (
                f"nodes {', '.join(n.metadata.name for n in added)} were added but no pod has a "
                f"{triggered} event: {autoscaling.describe_events(events)}"
            )
            strays = [
                f"{n.metadata.name} ({autoscaling.node_group_of(n) or 'no node-group label'})"
                for n in added
                if groups and autoscaling.node_group_of(n) not in groups
            ]
            assert not strays, (
                f"new node(s) outside the configured node groups {sorted(groups)}: {strays}"
            )

            shrink_started = time.monotonic()
            cluster.apps().patch_namespaced_deployment_scale(
                WORKLOAD, run.namespace, {"spec": {"replicas": 0}}
            )
            try:
                wait_for_objects(
                    core.list_node,
                    lambda listed: len(listed) <= len(original),
                    what=f"the node count to return to {len(original)} after the pods left",
                    timeout_s=timeouts.scale_down_s,
                    describe=lambda listed: (
                        f"{len(listed)} nodes: "
                        + ", ".join(sorted(n.metadata.name for n in listed))
                    ),
                )
            except WaitTimeout as timeout:
                status = ""
                if section.kind == "cluster-autoscaler":
                    found = autoscaling.read_status(cluster, section)
                    status = f"; autoscaler status scaleDown {found.scale_down}"
                pytest.fail(f"idle nodes were not removed: {timeout}{status}", pytrace=False)
            measure("time_to_shrink", time.monotonic() - shrink_started, "s")
        finally:
            timeline.sample()
            for t, count, ready in timeline.points:
                measure("node_count", count, "nodes", t=t, ready=ready)
