"""A node drains without ever breaking a PodDisruptionBudget.

The gate lists budgets that block every drain. The sign-off deploys a workload with a tight
budget, watches its healthy pods continuously, drains one node the way ``kubectl drain`` does
and checks that the budget held at every moment, that the API server enforced it (refused an
eviction with 429 while it was exhausted), that the evicted pods came back elsewhere, Ready
within ``drain.replacement_ready_max_s``, and that the node is schedulable again. A second
drain against a budget that never allows a disruption must fail with a timeout that names that
budget, and still leave the node as it was.
"""

from __future__ import annotations

import math

import pytest

from clustergate import budgets, nodes, workloads
from clustergate.availability import AvailabilityWatch
from clustergate.config import ClusterConfig
from clustergate.drain import DrainOptions, DrainTimeout, drain_node
from clustergate.kube import Cluster
from clustergate.results import Recorder
from clustergate.runctx import CORDONED_BY, RunContext, selector

pytestmark = [pytest.mark.drain]

#: kubectl waits 5 s after a 429. The check retries each second: the budget's refusals are
#: what it measures, and one request per second per pod is no load for an API server.
RETRY_INTERVAL_S = 1.0
#: How long the blocked drain is given. The budget never allows a disruption, so any deadline
#: proves the point; this one is long enough for a dozen refusals.
BLOCKED_DRAIN_S = 15.0


def _own_namespaces(cluster: Cluster) -> set[str]:
    """Namespaces of clustergate runs: their budgets are the checks' own."""
    listed = cluster.core().list_namespace(label_selector=selector())
    return {namespace.metadata.name for namespace in listed.items}


@pytest.mark.gate
def test_no_budget_blocks_every_drain(cluster: Cluster, measure: Recorder) -> None:
    own = _own_namespaces(cluster)
    findings = [f for f in budgets.find_blocking_budgets(cluster) if f.namespace not in own]
    measure("blocking_budgets", len(findings), "count")
    assert not findings, (
        f"{len(findings)} PodDisruptionBudget problem(s) block node drains (and so managed "
        "node-group upgrades and scale-down): "
        + "; ".join(finding.describe() for finding in findings)
        + ". Fix each budget (kubectl get pdb -A -o wide) or the workload's replicas."
    )


def _spread_nodes(cluster: Cluster, replicas: int, disruptions: int) -> list[str]:
    """As many schedulable nodes as possible (at least two, so evicted pods have somewhere to
    go) while one of them is sure to hold more of the workload's pods than the budget lets go
    at once: with the pods pinned to k nodes, some node holds ceil(replicas / k) of them."""
    candidates = [node.metadata.name for node in nodes.schedulable_nodes(cluster)]
    for count in range(min(len(candidates), replicas), 1, -1):
        if math.ceil(replicas / count) > disruptions:
            return candidates[:count]
    raise AssertionError(
        f"cannot set up a drain that proves the budget: need 2+ schedulable nodes (found "
        f"{len(candidates)}: {', '.join(candidates) or 'none'}) and drain.replicas={replicas} "
        f"with drain.min_available leaving fewer than {replicas // 2} disruptions (it leaves "
        f"{disruptions}); raise drain.replicas or drain.min_available in the cluster config"
    )


def _busiest(pods_per_node: dict[str, int]) -> tuple[str, int]:
    return max(sorted(pods_per_node.items()), key=lambda item: item[1])


@pytest.mark.signoff
@pytest.mark.disruptive
def test_drain_keeps_the_budget_at_every_moment(
    cluster: Cluster, cluster_config: ClusterConfig, run: RunContext, measure: Recorder
) -> None:
    replicas = cluster_config.drain.replicas
    min_available = cluster_config.drain.min_available or replicas - 1
    timeouts = cluster_config.timeouts
    # Why a 429 is certain: the budget allows (replicas - min_available) disruptions when every
    # pod is healthy, and the drained node holds more of the pods than that (_spread_nodes).
    # kubectl evicts a node's pods in parallel; each accepted eviction takes one allowed
    # disruption at once (the API server updates the PDB status in the same request, with
    # optimistic concurrency), and a disruption comes back only when a replacement pod is
    # scheduled, started and Ready and the disruption controller has counted it, which takes far
    # longer than sending the remaining evictions. So at least one is refused while the budget
    # is exhausted.
    chosen = _spread_nodes(cluster, replicas, replicas - min_available)
    workload = workloads.deploy(
        run,
        "drain-budget",
        replicas=replicas,
        affinity={workloads.HOSTNAME_LABEL: chosen},
        min_available=min_available,
        timeout_s=timeouts.pod_ready_s,
    )
    with AvailabilityWatch(cluster, run.namespace, workload.selector) as watch:
        node, on_node = _busiest(workloads.pods_per_node(watch.current_pods()))
        assert on_node > replicas - min_available, (
            f"node {node} holds only {on_node} of the {replicas} pods of {workload.name} "
            f"(placement: {workloads.describe_pods(watch.current_pods())}); the drain could not "
            "prove that the budget is enforced"
        )
        ours = {
            pod.metadata.uid: pod.metadata.name
            for pod in watch.current_pods()
            if pod.spec.node_name == node
        }
        with nodes.cordoned(run, node):
            result = drain_node(
                cluster,
                node,
                DrainOptions(timeout_s=timeouts.drain_s, retry_interval_s=RETRY_INTERVAL_S),
            )
            workloads.wait_ready(run, workload, timeouts.pod_ready_s)
        end = watch.now()
        final = watch.current_pods()
    lowest = watch.timeline.minimum(0.0, end)
    assert lowest is not None, f"the watch on {workload.selector} saw no pods at all"
    refused = [r for r in result.refusals if r.pod.startswith(f"{run.namespace}/")]
    slowest = watch.slowest_start(watch.at(result.started))
    ready_max = cluster_config.drain.replacement_ready_max_s
    measure("drain_duration", result.duration_s, "s", node=node)
    measure("evictions_refused", len(refused), "count", node=node, budget=workload.pdb)
    measure("min_availability", lowest[0], "pods", budget=min_available, replicas=replicas)

    problems = []
    if lowest[0] < min_available:
        problems.append(
            f"availability fell below the budget: PDB {run.namespace}/{workload.pdb} requires "
            f"{min_available} healthy pods, the watch saw "
            + watch.describe_dips(min_available, 0.0, end)
            + f" (drain ran from t={watch.at(result.started):.2f}s"
            f" to t={watch.at(result.finished):.2f}s)"
            " - evictions went through without the budget's consent"
        )
    if not refused:
        problems.append(
            f"no eviction was ever refused with 429 although {on_node} pods of {workload.name} on "
            f"{node} were evicted in parallel and the budget allows {replicas - min_available} "
            "at a time: the eviction API does not enforce PodDisruptionBudgets"
        )
    if slowest is not None:
        life, took = slowest
        measure("replacement_ready", took, "s", slo=ready_max, pod=life.name)
        if took > ready_max:
            problems.append(
                f"evicted pods' replacements were slow to start: {life.name} on {life.node} took "
                f"{took:.1f}s from creation to Ready (drain.replacement_ready_max_s is "
                f"{ready_max:g}s); look at its events for image pulls, pod IP allocation or "
                "readiness probes: every drain, node-group upgrade and scale-down waits this long "
                "per pod a budget lets go at a time"
            )
    if watch.gaps:
        problems.append(f"the pod watch broke, the budget is unproven for {watch.describe_gaps()}")
    still_there = [pod.metadata.name for pod in final if pod.spec.node_name == node]
    gone = [name for uid, name in ours.items() if uid not in {p.metadata.uid for p in final}]
    if still_there or len(gone) != len(ours):
        problems.append(
            f"evicted pods were not all rescheduled elsewhere: on {node} still "
            f"{still_there or 'none'}; now {workloads.describe_pods(final)}"
        )
    restored = cluster.core().read_node(node)
    if nodes.cordoned_now(restored) or CORDONED_BY in (restored.metadata.annotations or {}):
        problems.append(f"node {node} is still cordoned after the drain")
    assert not problems, f"drain of node {node}: " + "; ".join(problems)


@pytest.mark.signoff
@pytest.mark.disruptive
def test_drain_blocked_by_budget_times_out_and_restores_the_node(
    cluster: Cluster, cluster_config: ClusterConfig, run: RunContext, measure: Recorder
) -> None:
    chosen = [node.metadata.name for node in nodes.schedulable_nodes(cluster)][:2]
    assert len(chosen) == 2, f"need two schedulable nodes to drain one, found {chosen}"
    workload = workloads.deploy(
        run,
        "drain-blocked",
        replicas=2,
        affinity={workloads.HOSTNAME_LABEL: chosen},
        max_unavailable=0,
        timeout_s=cluster_config.timeouts.pod_ready_s,
    )
    pods = cluster.core().list_namespaced_pod(run.namespace, label_selector=workload.selector)
    node, _ = _busiest(workloads.pods_per_node(pods.items))
    deadline = min(BLOCKED_DRAIN_S, cluster_config.timeouts.drain_s)
    try:
        with nodes.cordoned(run, node):
            drain_node(
                cluster,
                node,
                DrainOptions(timeout_s=deadline, retry_interval_s=RETRY_INTERVAL_S),
            )
    except DrainTimeout as timeout:
        failure = timeout
    else:
        pytest.fail(
            f"the drain of node {node} completed although PDB {run.namespace}/{workload.pdb} "
            "(maxUnavailable 0) never allows a disruption: the eviction API evicted its pods "
            "without consulting the budget",
            pytrace=False,
        )
    measure("evictions_refused", len(failure.refusals), "count", node=node, budget=workload.pdb)
    assert f"PodDisruptionBudget {run.namespace}/{workload.pdb}" in str(failure), (
        f"the drain timed out but its message does not name the blocking budget "
        f"{run.namespace}/{workload.pdb}: {failure}"
    )
    restored = cluster.core().read_node(node)
    assert not nodes.cordoned_now(restored), f"node {node} stayed cordoned after the failed drain"
    assert CORDONED_BY not in (restored.metadata.annotations or {}), (
        f"node {node} still carries {CORDONED_BY} after the failed drain"
    )
