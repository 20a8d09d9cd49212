"""drain_node, the availability watch and cordons against a real API server (the twin's),
over HTTPS with the official client. No controllers run: the test plays the kubelet (it
finishes terminating pods) and the disruption controller (it writes the PDB status), so that
each case is exact.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clustergate import nodes
from clustergate.availability import AvailabilityWatch
from clustergate.drain import DrainError, DrainOptions, DrainTimeout, drain_node
from clustergate.kube import Cluster
from clustergate.runctx import CORDONED_BY, RunContext
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

NODES = ("node-a", "node-b")


class Server:
    """The twin's API server on its own event loop in a daemon thread."""

    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = TwinSettings(state_dir=str(state_dir))
        self.server = ApiServer(settings, Netmap(), KubeletHub())
        self.call(self.server.start())
        config = client.Configuration()
        config.host = self.server.url
        config.ssl_ca_cert = self.server.ca_pem_path
        config.api_key = {"authorization": f"Bearer {self.server.admin_token}"}
        self.cluster = Cluster(client.ApiClient(config), self.server.url, "test", "")

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Kubelet(threading.Thread):
    """Finishes the deletion of terminating pods, as a kubelet does once containers stopped."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            for pod in self.core.list_namespaced_pod(self.namespace).items:
                if pod.metadata.deletion_timestamp is not None:
                    try:
                        self.core.delete_namespaced_pod(
                            pod.metadata.name, self.namespace, grace_period_seconds=0
                        )
                    except client.ApiException as error:
                        if error.status != 404:
                            raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("drain-apiserver"))
    core = running.cluster.core()
    for name in NODES:
        core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name})
            )
        )
    yield running
    running.close()


@pytest.fixture
def run(server: Server, request: pytest.FixtureRequest) -> Iterator[RunContext]:
    namespace = request.node.name.replace("_", "-").lower()[:40].strip("-")
    core = server.cluster.core()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    # No service-account controller runs here; pod admission needs the namespace's default SA.
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    context = RunContext(server.cluster, "cg-test-run", namespace, {})
    kubelet = Kubelet(core, namespace)
    kubelet.start()
    yield context
    kubelet.stopped.set()
    kubelet.join(timeout=5)
    assert context.undo_all() == []


def _pod(
    run: RunContext, name: str, node: str, owner: str = "ReplicaSet", app: str = "web"
) -> None:
    core = run.cluster.core()
    ref = client.V1OwnerReference(
        api_version="apps/v1",
        kind=owner,
        name=f"{owner.lower()}-1",
        uid=f"uid-{owner}",
        controller=True,
    )
    core.create_namespaced_pod(
        run.namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": app}, owner_references=[ref]),
            spec=client.V1PodSpec(
                node_name=node, containers=[client.V1Container(name="c", image="pause")]
            ),
        ),
    )
    core.patch_namespaced_pod_status(
        name,
        run.namespace,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )


def _budget(run: RunContext, allowed: int, healthy: int = 3, desired: int = 2) -> None:
    policy = run.cluster.policy()
    status = {
        "status": {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": 3,
            "disruptionsAllowed": allowed,
            "observedGeneration": 1,
        }
    }
    try:
        policy.create_namespaced_pod_disruption_budget(
            run.namespace,
            client.V1PodDisruptionBudget(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1PodDisruptionBudgetSpec(
                    min_available=desired,
                    selector=client.V1LabelSelector(match_labels={"app": "web"}),
                ),
            ),
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
    policy.patch_namespaced_pod_disruption_budget_status("web", run.namespace, status)


def _workload(run: RunContext) -> None:
    _pod(run, "web-1", "node-a")
    _pod(run, "web-2", "node-a")
    _pod(run, "web-3", "node-b")
    _pod(run, "agent-a", "node-a", owner="DaemonSet", app="agent")


def test_drain_retries_refused_evictions_until_the_budget_allows(run: RunContext) -> None:
    _workload(run)
    _budget(run, allowed=1)
    cluster = run.cluster

    def replacement_ready() -> None:
        """Once one pod is gone, its 'replacement' on node-b is Ready: one disruption again."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            names = {
                p.metadata.name for p in cluster.core().list_namespaced_pod(run.namespace).items
            }
            if len(names & {"web-1", "web-2"}) == 1:
                time.sleep(1.5)
                _pod(run, "web-4", "node-b")
                _budget(run, allowed=1)
                return
            time.sleep(0.05)

    helper = threading.Thread(target=replacement_ready, daemon=True)
    with AvailabilityWatch(cluster, run.namespace, "app=web") as watch:
        helper.start()
        with nodes.cordoned(run, "node-a"):
            assert nodes.cordoned_now(cluster.core().read_node("node-a"))
            result = drain_node(cluster, "node-a", DrainOptions(timeout_s=30, retry_interval_s=0.2))
        end = watch.now()
    helper.join(timeout=5)
    assert sorted(e.pod.name for e in result.evicted) == ["web-1", "web-2"]
    assert result.skipped == [(f"{run.namespace}/agent-a", "DaemonSet-managed")]
    assert result.refusals, "the second eviction must have been refused while the budget was used"
    assert {r.budget for r in result.refusals} == {"web"}
    assert "needs 2 healthy pods" in result.refusals[0].message
    # 3 healthy pods, budget 2: down by one at a time, never two at once.
    lowest = watch.timeline.minimum(0.0, end)
    assert lowest is not None
    assert lowest[0] == 2
    assert watch.timeline.dips_below(2, 0.0, end) == []
    assert watch.pods
    assert all(life.node for life in watch.pods.values())
    node = cluster.core().read_node("node-a")
    assert not nodes.cordoned_now(node)
    assert CORDONED_BY not in (node.metadata.annotations or {})


def test_blocked_drain_times_out_naming_the_budget_and_the_node_is_restored(
    run: RunContext,
) -> None:
    _workload(run)
    _budget(run, allowed=0, healthy=3, desired=3)
    with pytest.raises(DrainTimeout) as failure, nodes.cordoned(run, "node-a"):
        drain_node(run.cluster, "node-a", DrainOptions(timeout_s=2, retry_interval_s=0.2))
    message = str(failure.value)
    assert f"PodDisruptionBudget {run.namespace}/web" in message
    assert "did not complete within 2s" in message
    assert "web-1" in message
    assert "web-2" in message
    assert len(failure.value.refusals) >= 2
    assert not nodes.cordoned_now(run.cluster.core().read_node("node-a"))


def test_a_drain_needs_a_cordon_and_never_takes_over_one(run: RunContext) -> None:
    with pytest.raises(DrainError, match="not cordoned"):
        drain_node(run.cluster, "node-b", DrainOptions(timeout_s=5))
    core = run.cluster.core()
    core.patch_node("node-b", {"spec": {"unschedulable": True}})
    try:
        with pytest.raises(AssertionError, match="already cordoned"):
            nodes.cordon(run, "node-b")
        assert not nodes.uncordon(run, "node-b"), "a cordon of someone else is left alone"
        assert nodes.cordoned_now(core.read_node("node-b"))
    finally:
        core.patch_node("node-b", {"spec": {"unschedulable": None}})
