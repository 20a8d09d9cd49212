"""A cluster is judged only when it is clean: a dead clustergate run's cordons, weights and
workloads would make every other check measure the wrong cluster, and a node that takes no
pods is capacity the other checks silently do without.

These checks run first in every profile (the collection puts them at the front). What a dead
run left (its heartbeat expired, or a namespace kept by --keep-on-failure) is listed with the
run and since when; ``pytest --sweep`` removes all of it. A cordon or a NoSchedule taint may be
put there on purpose by a person or another tool: the config's ``nodes.expected_cordoned`` and
``nodes.expected_taints`` list the ones that are.
"""

from __future__ import annotations

import pytest

from clustergate import heartbeat, leftovers, nodes
from clustergate.config import ClusterConfig
from clustergate.kube import Cluster, list_all
from clustergate.results import Recorder
from clustergate.runctx import RunContext

pytestmark = [pytest.mark.hygiene, pytest.mark.gate]


def test_no_dead_run_left_anything_behind(
    cluster: Cluster, cluster_config: ClusterConfig, run: RunContext, measure: Recorder
) -> None:
    runs = heartbeat.read_runs(
        cluster, own=run.run_id, grace_s=cluster_config.runs.no_heartbeat_grace_s
    )
    found = leftovers.find(cluster, runs)
    measure("leftovers", len(found), "count")
    assert not found, leftovers.describe(
        found, f"--kubeconfig={cluster.kubeconfig} --context={cluster.context}"
    )


def test_every_node_takes_pods_unless_the_config_says_otherwise(
    cluster: Cluster, cluster_config: ClusterConfig, measure: Recorder
) -> None:
    expected = cluster_config.nodes
    found = nodes.unexpected_unschedulable(
        list_all(cluster.core().list_node), expected.expected_cordoned, expected.expected_taints
    )
    measure("unexpected_unschedulable_nodes", len(found), "count")
    assert not found, (
        f"{len(found)} node(s) take no ordinary pods and the config does not expect it: "
        + "; ".join(found)
        + ". A cordon or taint by another tool or a person may be deliberate: then list the "
        "node in nodes.expected_cordoned or the taint in nodes.expected_taints of the cluster "
        "config; otherwise uncordon (kubectl uncordon NODE) or remove the taint (kubectl taint "
        "nodes NODE KEY:NoSchedule-). A cordon by a clustergate run that is no longer alive is "
        "removed by pytest --sweep."
    )
