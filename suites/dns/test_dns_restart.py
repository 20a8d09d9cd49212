"""Pods keep resolving while their node's NodeLocal DNSCache restarts.

One node's cache pod is deleted while a probe pod on that node resolves a cluster name in a
loop; the DaemonSet brings a new one. The longest time between two answers must stay within
``dns.restart_gap_max_s``.
"""

from __future__ import annotations

import random

import pytest

from clustergate import dnscheck
from clustergate.config import ClusterConfig
from clustergate.dnscheck import NodePlace
from clustergate.kube import Cluster
from clustergate.results import Recorder
from clustergate.runctx import RunContext

pytestmark = [pytest.mark.dns]

#: The loop runs at least this long, or ten gaps' worth: the restart must fall inside it.
LOOP_MIN_S = 20.0
QUERIED_NAME = "kubernetes.default"


@pytest.mark.signoff
@pytest.mark.disruptive
def test_resolution_survives_a_cache_restart(
    cluster: Cluster,
    cluster_config: ClusterConfig,
    run: RunContext,
    cache_nodes: list[NodePlace],
    measure: Recorder,
) -> None:
    pods = dnscheck.list_cache_pods(cluster)
    ready = sorted(
        (
            pods[place.name]
            for place in cache_nodes
            if place.name in pods and pods[place.name].ready
        ),
        key=lambda pod: pod.node,
    )
    assert ready, "no node has a ready NodeLocal DNSCache pod to restart"
    cache = random.Random(run.run_id).choice(ready)
    limit = cluster_config.dns.restart_gap_max_s
    outcome = dnscheck.restart_cache_under_queries(
        run,
        cluster_config.probe.image,
        cache,
        QUERIED_NAME,
        max(LOOP_MIN_S, 10 * limit),
        cluster_config.timeouts.pod_ready_s,
    )
    measure("dns_restart_gap", outcome.longest_gap_s, "s", node=outcome.node)
    measure("dns_cache_replaced_after", outcome.replaced_after_s, "s", node=outcome.node)
    loop = outcome.loop
    assert outcome.covered, (
        f"the query loop on node {outcome.node} did not span the restart (first answer at "
        f"{loop.get('first_answer_at')}, deletion at {outcome.deleted_at:.3f}, replacement "
        f"Ready at {outcome.ready_at:.3f}, loop ended at {loop['ended_at']}): the gap is unproven"
    )
    assert outcome.longest_gap_s <= limit, (
        f"while node-local-dns pod {outcome.old_pod} on node {outcome.node} restarted "
        f"(replacement {outcome.new_pod} Ready after {outcome.replaced_after_s:.1f} s), "
        f"{QUERIED_NAME} went unanswered for {outcome.longest_gap_s:.2f} s (limit {limit:g} s; "
        f"{loop['failures']} of {loop['queries']} queries failed); check the cache's "
        "teardown of its interception rules (-skipteardown) and its readiness"
    )
