"""The disruption lease keeps two runs apart; waits say what they awaited and what they saw.

Against a running twin's API server, through the official client, as against a cluster.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from clustergate import progress
from clustergate.kube import connect
from clustergate.lease import LEASE_NAME, LEASE_NAMESPACE, ClusterBusy, disruption_lease
from clustergate.wait import WaitTimeout, poll_until, wait_for_objects


@pytest.fixture
def cluster(twin):
    return connect(str(twin.kubeconfig), None)


def test_a_second_run_is_refused_while_the_first_holds_the_lease(cluster) -> None:
    with disruption_lease(cluster, "cg-run-a", duration_s=30):
        held = cluster.coordination().read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
        assert held.spec.holder_identity == "cg-run-a"
        with (
            pytest.raises(ClusterBusy, match="run cg-run-a holds lease kube-system/"),
            disruption_lease(cluster, "cg-run-b", duration_s=30),
        ):
            pytest.fail("run b must not get the lease")
    with disruption_lease(cluster, "cg-run-b", duration_s=30):
        held = cluster.coordination().read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
        assert held.spec.holder_identity == "cg-run-b"
    leases = cluster.coordination().list_namespaced_lease(LEASE_NAMESPACE).items
    assert LEASE_NAME not in [lease.metadata.name for lease in leases], "released at the end"


def test_an_expired_lease_of_a_killed_run_is_taken_over(cluster) -> None:
    coordination = cluster.coordination()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    stale = client.V1Lease(
        metadata=client.V1ObjectMeta(name=LEASE_NAME),
        spec=client.V1LeaseSpec(
            holder_identity="cg-killed", lease_duration_seconds=60, renew_time=long_ago
        ),
    )
    coordination.create_namespaced_lease(LEASE_NAMESPACE, stale)
    with disruption_lease(cluster, "cg-run-c", duration_s=30):
        held = coordination.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
        assert held.spec.holder_identity == "cg-run-c"


def test_wait_returns_as_soon_as_a_watched_change_satisfies_it(cluster) -> None:
    core = cluster.core()
    name = "wait-target"
    core.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"state": "old"}),
    )
    try:
        timer = threading.Timer(
            1.0,
            lambda: core.patch_namespaced_config_map(name, "default", {"data": {"state": "new"}}),
        )
        timer.start()
        started = time.monotonic()
        found = wait_for_objects(
            core.list_namespaced_config_map,
            lambda maps: bool(maps) and maps[0].data["state"] == "new",
            what=f"configmap default/{name} to say new",
            timeout_s=30,
            describe=lambda maps: f"state {maps[0].data['state']}" if maps else "absent",
            namespace="default",
            field_selector=f"metadata.name={name}",
        )
        assert found[0].data["state"] == "new"
        assert time.monotonic() - started < 10, "a watch wakes on the change, not on a poll"
    finally:
        core.delete_namespaced_config_map(name, "default")


def test_a_timeout_says_what_was_awaited_and_what_was_last_seen(cluster) -> None:
    """Also while nothing changes: each watch request ends when a progress line is due."""
    core, lines = cluster.core(), []
    with progress.sink(lines.append), pytest.raises(WaitTimeout) as caught:
        wait_for_objects(
            core.list_namespaced_config_map,
            lambda maps: bool(maps),
            what="configmap default/never to appear",
            timeout_s=3,
            describe=lambda maps: f"{len(maps)} configmap(s) named never",
            progress_every_s=1,
            namespace="default",
            field_selector="metadata.name=never",
        )
    message = str(caught.value)
    assert message.startswith("timed out after 3s waiting for configmap default/never to appear")
    assert "last seen: 0 configmap(s) named never" in message
    assert len(lines) >= 2, lines
    assert lines[0].startswith("waiting for configmap default/never to appear: 0 configmap(s)")


def test_a_bounded_poll_gives_up_at_its_deadline_with_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"waiting for the count to reach 10; last seen: 3"):
        poll_until(
            lambda: 3,
            lambda value: value >= 10,
            what="the count to reach 10",
            timeout_s=0.5,
            describe=str,
            interval_s=0.1,
        )
    assert time.monotonic() - started < 2
