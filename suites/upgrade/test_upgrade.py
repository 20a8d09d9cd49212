"""A node-group upgrade replaces every node while workloads stay within their budgets.

The gate reads versions: kubelets against the control plane (skew policy), each managed node
group's release against its nodes, and one version per node group. The nightly check puts a
workload with a tight budget on a node group, starts a managed node-group update through the
EKS API (or, with ``--observe-upgrade``, follows one started elsewhere), watches the nodes and
the workload's pods throughout, and checks that each old node was cordoned, drained and replaced
by a Ready node at the target version, that the budget held at every moment and that no pod
waited Pending too long.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from clustergate import eks_upgrade, nodes, workloads
from clustergate.availability import AvailabilityWatch
from clustergate.config import ClusterConfig
from clustergate.kube import Cluster, list_all
from clustergate.results import Recorder
from clustergate.runctx import RunContext
from clustergate.wait import WaitTimeout, wait_for_objects

pytestmark = [pytest.mark.upgrade]


@pytest.mark.gate
def test_kubelets_are_within_the_skew_policy(cluster: Cluster) -> None:
    control_plane = nodes.control_plane_version(cluster)
    skewed = nodes.skewed_nodes(list_all(cluster.core().list_node), control_plane)
    assert not skewed, (
        f"{len(skewed)} node(s) outside the version skew policy (kubelet never newer than the "
        "API server, at most 3 minors older from 1.28, 2 before): " + "; ".join(skewed)
    )


@pytest.mark.gate
def test_each_node_group_runs_one_version(cluster: Cluster) -> None:
    mixed = nodes.mixed_groups(list_all(cluster.core().list_node))
    assert not mixed, (
        "node groups half-way through an upgrade (or with hand-replaced nodes): " + "; ".join(mixed)
    )


def _nodegroup_names(eks: Any, cluster_config: ClusterConfig) -> list[str]:
    if cluster_config.node_groups:
        return [group.name for group in cluster_config.node_groups]
    return list(eks.list_nodegroups(clusterName=cluster_config.cluster.name)["nodegroups"])


@pytest.mark.gate
def test_node_groups_run_their_release(
    cluster: Cluster, cluster_config: ClusterConfig, aws: boto3.Session
) -> None:
    eks = aws.client("eks")
    control_plane = nodes.control_plane_version(cluster)
    by_group = nodes.versions_by_group(list_all(cluster.core().list_node))
    problems = []
    groups = _nodegroup_names(eks, cluster_config)
    assert groups, f"cluster {cluster_config.cluster.name} has no managed node groups to check"
    for name in groups:
        group = eks_upgrade.describe_nodegroup(eks, cluster_config.cluster.name, name)
        release, version = group.get("releaseVersion"), group.get("version")
        issues = (group.get("health") or {}).get("issues") or []
        if issues:
            problems.append(
                f"node group {name} reports health issues: "
                + "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues)
            )
        if version and (problem := nodes.skew_problem(version, control_plane)):
            problems.append(f"node group {name} version {version}: {problem}")
        if not release:
            continue
        for kubelet, members in by_group.get(name, {}).items():
            if nodes.patch_of(kubelet) != nodes.patch_of(release):
                problems.append(
                    f"node group {name} is at release {release} but {', '.join(sorted(members))} "
                    f"run kubelet {kubelet}"
                )
    assert not problems, "; ".join(problems)


def _chosen_nodegroup(eks: Any, cluster_config: ClusterConfig) -> str:
    if cluster_config.upgrade.nodegroup:
        return cluster_config.upgrade.nodegroup
    names = _nodegroup_names(eks, cluster_config)
    assert names, "no node group to upgrade: set upgrade.nodegroup in the cluster config"
    return names[0]


def _group_nodes(cluster: Cluster, nodegroup: str) -> list[Any]:
    selector = f"{nodes.NODEGROUP_LABEL}={nodegroup}"
    return list(cluster.core().list_node(label_selector=selector).items)


def _describe_nodes(node_list: list[Any]) -> str:
    return (
        ", ".join(
            f"{n.metadata.name} {'Ready' if nodes.node_ready(n) else 'NotReady'} "
            f"{nodes.kubelet_version(n)}{' cordoned' if nodes.cordoned_now(n) else ''}"
            for n in sorted(node_list, key=lambda n: n.metadata.name)
        )
        or "no nodes"
    )


@pytest.mark.nightly
@pytest.mark.disruptive
def test_nodegroup_upgrade_replaces_every_node_within_budget(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    cluster_config: ClusterConfig,
    aws: boto3.Session,
    run: RunContext,
    measure: Recorder,
) -> None:
    eks = aws.client("eks")
    name = cluster_config.cluster.name
    settings, timeouts = cluster_config.upgrade, cluster_config.timeouts
    nodegroup = _chosen_nodegroup(eks, cluster_config)
    old = {node.metadata.name for node in _group_nodes(cluster, nodegroup)}
    assert old, f"node group {nodegroup} has no nodes in the cluster"
    # One more replica than nodes: some node holds two pods, so a drain that skips the budget
    # (or no drain at all) takes the workload below it.
    replicas = max(cluster_config.drain.replicas, len(old) + 1)
    workload = workloads.deploy(
        run,
        "upgrade-budget",
        replicas=replicas,
        affinity={nodes.NODEGROUP_LABEL: [nodegroup]},
        min_available=replicas - 1,
        timeout_s=timeouts.pod_ready_s,
    )
    observe = request.config.getoption("observe_upgrade", default=False)
    with (
        nodes.NodeWatch(cluster) as node_watch,
        AvailabilityWatch(cluster, run.namespace, workload.selector) as watch,
    ):
        if observe:
            update = eks_upgrade.find_update_in_progress(eks, name, nodegroup)
            assert update is not None, (
                f"--observe-upgrade: node group {nodegroup} has no update InProgress"
            )
            update_id, target = update["id"], eks_upgrade.target_of(update)
        else:
            update_id, target = eks_upgrade.start_update(
                eks, name, nodegroup, settings.version, settings.release_version
            )
        started = watch.now()
        try:
            update = eks_upgrade.follow_update(
                eks,
                name,
                nodegroup,
                update_id,
                timeouts.upgrade_s,
                nodes_now=lambda: eks_upgrade.replaced(
                    old, (n.metadata.name for n in _group_nodes(cluster, nodegroup))
                ),
            )
        except WaitTimeout as timeout:
            now = _describe_nodes(_group_nodes(cluster, nodegroup))
            pytest.fail(
                f"{timeout}; nodes of {nodegroup} now: {now}",
                pytrace=False,
            )
        finished = watch.now()
        if update["status"] != "Successful":
            pytest.fail(
                f"update {update_id} of node group {nodegroup} ({target.describe()}) ended "
                f"{update['status']}: {eks_upgrade.describe_errors(update)}; nodes of {nodegroup} "
                f"now: {_describe_nodes(_group_nodes(cluster, nodegroup))}",
                pytrace=False,
            )
        if not (target.version or target.release_version):
            release = eks_upgrade.describe_nodegroup(eks, name, nodegroup).get("releaseVersion")
            target = eks_upgrade.Target(None, release)
        new_nodes = wait_for_objects(
            cluster.core().list_node,
            lambda listed: (
                not ({n.metadata.name for n in listed} & old)
                and all(nodes.node_ready(n) for n in listed)
            ),
            what=f"the old nodes of {nodegroup} to leave the cluster and the new ones to be Ready",
            timeout_s=timeouts.pod_ready_s,
            describe=_describe_nodes,
            label_selector=f"{nodes.NODEGROUP_LABEL}={nodegroup}",
        )
        workloads.wait_ready(run, workload, timeouts.pod_ready_s)
        end = watch.now()
    lives = node_watch.nodes
    measure(
        "upgrade_duration", finished - started, "s", nodegroup=nodegroup, target=target.describe()
    )
    replaced_in = {
        node: lives[node].deleted_at - lives[node].cordoned_at
        for node in sorted(old)
        if lives[node].cordoned_at is not None and lives[node].deleted_at is not None
    }
    for node, seconds in replaced_in.items():
        measure("node_replacement_time", seconds, "s", node=node, nodegroup=nodegroup)
    lowest = watch.timeline.minimum(0.0, end)
    assert lowest is not None, f"the watch on {workload.selector} saw no pods"
    measure("min_availability", lowest[0], "pods", budget=workload.min_available, replicas=replicas)

    problems = []
    never_cordoned = sorted(node for node in old if lives[node].cordoned_at is None)
    if never_cordoned:
        problems.append(
            f"old node(s) removed without being cordoned first: {', '.join(never_cordoned)}"
        )
    undrained = []
    for life in watch.pods.values():
        node = lives.get(life.node or "")
        if node is None or life.node not in old or node.deleted_at is None:
            continue
        went = life.terminating_at or life.deleted_at
        if went is None or went > node.deleted_at:
            undrained.append(f"{life.name} on {life.node}")
    if undrained:
        problems.append(
            "old nodes were terminated with pods still running on them (not drained; the pods "
            f"vanished with the node): {', '.join(sorted(undrained))}"
        )
    wrong = [
        f"{n.metadata.name} runs {nodes.kubelet_version(n)}"
        for n in new_nodes
        if not target.kubelet_matches(nodes.kubelet_version(n))
    ]
    if wrong:
        problems.append(f"new nodes are not at the target {target.describe()}: {', '.join(wrong)}")
    if len(new_nodes) < len(old):
        problems.append(
            f"node group {nodegroup} had {len(old)} nodes and now has {len(new_nodes)}: "
            f"{_describe_nodes(new_nodes)}"
        )
    if lowest[0] < workload.min_available:
        problems.append(
            f"availability fell below PDB {run.namespace}/{workload.pdb} (minAvailable "
            f"{workload.min_available}): {watch.describe_dips(workload.min_available, 0.0, end)}"
        )
    longest = watch.longest_pending()
    if longest is not None and longest[1] > settings.max_pending_s:
        life, seconds = longest
        problems.append(
            f"pod {life.name} stayed Pending for {seconds:.0f}s (bound upgrade.max_pending_s "
            f"{settings.max_pending_s:.0f}s)"
        )
    if watch.gaps or node_watch.gaps:
        problems.append(
            f"a watch broke, unproven for: pods {watch.describe_gaps() or '-'}; "
            f"nodes {node_watch.describe_gaps() or '-'}"
        )
    assert not problems, (
        f"update {update_id} of node group {nodegroup} ({target.describe()}): "
        + "; ".join(problems)
    )
