"""The twin's controllers and kubelets end to end: an API server, the controller manager and
three kubelets in a background event loop, driven with the official client and kubectl."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from clustergate.twin.addons import AddonRegistry
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.cloud import InstanceSpec
from clustergate.twin.controllers import ControllerManager
from clustergate.twin.kubeclient import ApiError, KubeClient
from clustergate.twin.kubelet import KubeletPool
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Timings, TwinSettings
from tests.loop_thread import LoopThread

T = TypeVar("T")
PROBE_IMAGE = "ghcr.io/clustergate/clustergate-probe:0.1.0"


def instance(settings: TwinSettings, index: int, **extra: Any) -> InstanceSpec:
    group = settings.node_groups[index % len(settings.node_groups)]
    ip = settings.network.node_ip(index)
    return InstanceSpec(
        instance_id=f"i-{index:017x}",
        node_name=f"ip-{ip.replace('.', '-')}.{settings.network.region}.compute.internal",
        node_ip=ip,
        nodegroup=group.name,
        zone=group.zone,
        instance_type=group.instance_type,
        kubelet_version="v1.31.2-eks-7f9249a",
        release_version="1.31.2-20241106",
        cpu_millis=group.cpu_millis,
        memory_mib=group.memory_mib,
        max_pods=group.max_pods,
        imds_hop_limit=group.imds_hop_limit,
        **extra,
    )


@dataclass
class TwinCluster:
    loop: LoopThread
    settings: TwinSettings
    server: ApiServer
    pool: KubeletPool
    kubeconfig: Path
    api: kubernetes.client.ApiClient

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api)

    @property
    def policy(self) -> kubernetes.client.PolicyV1Api:
        return kubernetes.client.PolicyV1Api(self.api)

    @property
    def batch(self) -> kubernetes.client.BatchV1Api:
        return kubernetes.client.BatchV1Api(self.api)

    def namespace(self) -> str:
        """A fresh namespace, once its default ServiceAccount exists (pods need it)."""
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name}})
        wait_for(
            lambda: self.core.list_namespaced_service_account(name).items,
            f"the default ServiceAccount of {name}",
        )
        return name

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def wait_for(check: Callable[[], T], what: str, timeout: float = 20.0, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")


def start_cluster(
    tmp: Path, nodes: int = 3, faults: frozenset[str] = frozenset(), api_fault_rate: float = 0.0
) -> tuple[TwinCluster, Callable[[], None]]:
    settings = TwinSettings(
        state_dir=str(tmp),
        timings=Timings(
            node_boot=0.2,
            pod_start=0.2,
            slow_factor=5.0,
            slow_start=2.0,
            node_heartbeat=0.5,
            node_monitor_grace=2.0,
        ),
        faults=faults,
        api_fault_rate=api_fault_rate,
    )
    loop = LoopThread()
    netmap, hub, addons = Netmap(), KubeletHub(), AddonRegistry()

    async def start() -> tuple[ApiServer, ControllerManager, KubeletPool]:
        server = ApiServer(settings, netmap, hub)
        await server.start()

        def factory() -> KubeClient:
            return KubeClient(server.url, server.ca_pem_path, server.admin_token)

        manager = ControllerManager(settings, factory)
        await manager.start()
        pool = KubeletPool(settings, factory, hub, netmap, addons)
        specs = [instance(settings, i) for i in range(nodes)]
        for spec in specs:
            await pool.launch(spec)
        for spec in specs:
            await pool.booted(spec.instance_id)
        return server, manager, pool

    server, manager, pool = loop.run(start())
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "twin",
                        "cluster": {
                            "server": server.url,
                            "certificate-authority": server.ca_pem_path,
                        },
                    }
                ],
                "users": [{"name": "admin", "user": {"token": server.admin_token}}],
                "contexts": [{"name": "twin", "context": {"cluster": "twin", "user": "admin"}}],
                "current-context": "twin",
            }
        )
    )
    configuration = kubernetes.client.Configuration(
        host=server.url,
        api_key={"authorization": f"Bearer {server.admin_token}"},
    )
    configuration.ssl_ca_cert = server.ca_pem_path
    api = kubernetes.client.ApiClient(configuration)
    cluster = TwinCluster(loop, settings, server, pool, kubeconfig, api)

    def stop() -> None:
        api.close()

        async def shutdown() -> None:
            await pool.stop()
            await manager.stop()
            await server.stop()

        loop.run(shutdown())
        loop.close()

    return cluster, stop


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinCluster]:
    cluster, stop = start_cluster(tmp_path_factory.mktemp("twin"))
    try:
        yield cluster
    finally:
        stop()


def deployment(name: str, replicas: int, image: str = "nginx:1.27", **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
    }


def pods_of(twin: TwinCluster, namespace: str, app: str) -> list[Any]:
    return twin.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def available(twin: TwinCluster, namespace: str, name: str, replicas: int) -> bool:
    status = twin.apps.read_namespaced_deployment_status(name, namespace).status
    if status is None:
        return False
    return (status.available_replicas or 0) == replicas and (
        status.updated_replicas or 0
    ) == replicas


def node_names(twin: TwinCluster) -> list[str]:
    return sorted(node.metadata.name for node in twin.core.list_node().items)


def test_nodes_register_as_eks_nodes(twin: TwinCluster) -> None:
    nodes = twin.core.list_node().items
    assert len(nodes) == 3
    node = nodes[0]
    labels = node.metadata.labels
    assert labels["kubernetes.io/hostname"] == node.metadata.name
    assert labels["eks.amazonaws.com/capacityType"] == "ON_DEMAND"
    assert labels["eks.amazonaws.com/nodegroup-image"].startswith("ami-")
    assert node.spec.provider_id.startswith(f"aws:///{labels['topology.kubernetes.io/zone']}/i-")
    assert node.status.node_info.kubelet_version == "v1.31.2-eks-7f9249a"
    assert node.status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert node.status.allocatable["pods"] == "29"
    lease = kubernetes.client.CoordinationV1Api(twin.api).read_namespaced_lease(
        node.metadata.name, "kube-node-lease"
    )
    assert lease.spec.holder_identity == node.metadata.name
    assert (
        wait_for(lambda: twin.core.list_namespaced_service_account("default").items, "default SA")[
            0
        ].metadata.name
        == "default"
    )


def test_deployment_becomes_ready_and_rolls_on_image_change(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.apps.create_namespaced_deployment(
        ns,
        deployment(
            "web",
            3,
            strategy={
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
        ),
    )
    wait_for(lambda: available(twin, ns, "web", 3), "3 available replicas of web")
    first = twin.apps.list_namespaced_replica_set(ns).items
    assert [rs.metadata.name for rs in first] == [
        f"web-{first[0].metadata.labels['pod-template-hash']}"
    ]
    assert {p.spec.node_name for p in pods_of(twin, ns, "web")} == set(node_names(twin))

    lowest_ready = [3]
    rolling = threading.Event()

    def watch_ready() -> None:
        while rolling.is_set():
            pods = pods_of(twin, ns, "web")
            ready = sum(
                1
                for p in pods
                if p.metadata.deletion_timestamp is None
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            )
            lowest_ready[0] = min(lowest_ready[0], ready)

    rolling.set()
    watcher = threading.Thread(target=watch_ready)
    watcher.start()
    try:
        twin.apps.patch_namespaced_deployment(
            "web",
            ns,
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}
                }
            },
        )

        def rolled() -> bool:
            d = twin.apps.read_namespaced_deployment("web", ns)
            return (
                d.metadata.annotations.get("deployment.kubernetes.io/revision") == "2"
                and d.status.observed_generation == d.metadata.generation
                and (d.status.updated_replicas, d.status.replicas) == (3, 3)
                and d.status.available_replicas == 3
            )

        wait_for(rolled, "web to roll to revision 2")
    finally:
        rolling.clear()
        watcher.join()
    assert lowest_ready[0] >= 3, "maxUnavailable 0 was violated during the rollout"
    sets = {
        rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs
        for rs in twin.apps.list_namespaced_replica_set(ns).items
    }
    assert sets["1"].spec.replicas == 0
    assert sets["2"].spec.replicas == 3
    images = {
        p.spec.containers[0].image
        for p in pods_of(twin, ns, "web")
        if not p.metadata.deletion_timestamp
    }
    assert images == {"nginx:1.28"}
    conditions = {
        c.type: c for c in twin.apps.read_namespaced_deployment("web", ns).status.conditions
    }
    assert conditions["Available"].status == "True"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"
    twin.core.delete_namespace(ns)


def test_daemonset_covers_every_node_but_a_tainted_one(twin: TwinCluster) -> None:
    tainted = instance(
        twin.settings, 3, taints=({"key": "dedicated", "value": "infra", "effect": "NoSchedule"},)
    )
    twin.loop.run(twin.pool.launch(tainted))
    twin.loop.run(twin.pool.booted(tainted.instance_id))
    ns = twin.namespace()
    try:
        twin.apps.create_namespaced_daemon_set(
            ns,
            {
                "metadata": {"name": "agent"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": {
                        "metadata": {"labels": {"app": "agent"}},
                        "spec": {"containers": [{"name": "agent", "image": "busybox:1.36"}]},
                    },
                },
            },
        )

        def settled() -> Any:
            status = twin.apps.read_namespaced_daemon_set_status("agent", ns).status
            return status if status and status.number_ready == 3 else None

        status = wait_for(settled, "3 ready agent pods")
        assert status.desired_number_scheduled == 3
        assert status.current_number_scheduled == 3
        assert status.updated_number_scheduled == 3
        assert status.number_available == 3
        pods = pods_of(twin, ns, "agent")
        assert sorted(p.spec.node_name for p in pods) == sorted(
            set(node_names(twin)) - {tainted.node_name}
        )
        terms = pods[
            0
        ].spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        assert terms.node_selector_terms[0].match_fields[0].values == [pods[0].spec.node_name]
        twin.apps.patch_namespaced_daemon_set(
            "agent",
            ns,
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "agent", "image": "busybox:1.37"}]}
                    }
                }
            },
        )

        def rolled() -> bool:
            current = [p for p in pods_of(twin, ns, "agent") if not p.metadata.deletion_timestamp]
            status = twin.apps.read_namespaced_daemon_set_status("agent", ns).status
            return (
                len(current) == 3
                and {p.spec.containers[0].image for p in current} == {"busybox:1.37"}
                and (status.updated_number_scheduled, status.number_ready) == (3, 3)
            )

        wait_for(rolled, "the agent DaemonSet to roll to busybox:1.37")
    finally:
        twin.loop.run(twin.pool.terminate(tainted.instance_id))
        twin.core.delete_namespace(ns)
    assert tainted.node_name not in node_names(twin)


def test_endpoints_follow_ready_pods(twin: TwinCluster) -> None:
    ns = twin.namespace()
    body = deployment("api", 2)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": 8080}]
    container["readinessProbe"] = {"httpGet": {"port": 8080}, "initialDelaySeconds": 1}
    twin.core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "api"},
            "spec": {
                "selector": {"app": "api"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            },
        },
    )
    twin.apps.create_namespaced_deployment(ns, body)

    def subsets(field: str) -> list[Any]:
        try:
            found = twin.core.read_namespaced_endpoints("api", ns).subsets or []
        except ApiException as error:
            if error.status == 404:
                return []
            raise
        return [a for subset in found for a in getattr(subset, field) or []]

    not_ready = wait_for(
        lambda: len(subsets("not_ready_addresses")) == 2 and subsets("not_ready_addresses"),
        "2 not-ready addresses",
    )
    assert {a.target_ref.kind for a in not_ready} == {"Pod"}
    ready = wait_for(
        lambda: len(subsets("addresses")) == 2 and subsets("addresses"), "2 ready addresses"
    )
    pods = {p.status.pod_ip: p.metadata.name for p in pods_of(twin, ns, "api")}
    assert {a.ip: a.target_ref.name for a in ready} == pods
    port = twin.core.read_namespaced_endpoints("api", ns).subsets[0].ports[0]
    assert (port.name, port.port, port.protocol) == ("web", 8080, "TCP")

    discovery = kubernetes.client.DiscoveryV1Api(twin.api)

    def slices() -> list[Any]:
        return discovery.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=api"
        ).items

    ready_slices = wait_for(
        lambda: (
            (found := slices())
            and sum(e.conditions.ready for s in found for e in s.endpoints or []) == 2
            and found
        ),
        "an EndpointSlice with 2 ready endpoints",
    )
    (only,) = ready_slices
    assert only.metadata.labels["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslice-controller.k8s.io"
    )
    assert only.metadata.owner_references[0].kind == "Service"
    assert {e.addresses[0]: e.target_ref.name for e in only.endpoints} == pods
    assert {e.node_name for e in only.endpoints} <= set(node_names(twin))
    assert [(p.name, p.port, p.protocol) for p in only.ports] == [("web", 8080, "TCP")]
    twin.core.delete_namespaced_service("api", ns, _preload_content=False)
    wait_for(lambda: not slices(), "the Service's slices collected with it")
    twin.core.delete_namespace(ns)


def test_hpa_keeps_its_target_within_bounds_and_reports_status(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.apps.create_namespaced_deployment(ns, deployment("scaled", 1))
    autoscaling = kubernetes.client.AutoscalingV2Api(twin.api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        ns,
        {
            "metadata": {"name": "scaled"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
                "minReplicas": 2,
                "maxReplicas": 4,
            },
        },
    )
    wait_for(lambda: available(twin, ns, "scaled", 2), "the HPA to raise replicas to 2")

    def status() -> Any:
        return autoscaling.read_namespaced_horizontal_pod_autoscaler("scaled", ns).status

    seen = wait_for(
        lambda: (found := status()) and found.current_replicas == 2 and found, "HPA status"
    )
    assert seen.desired_replicas == 2
    conditions = {c.type: (c.status, c.reason) for c in seen.conditions}
    # No metrics API in the twin: the real controller says so the same way.
    assert conditions["ScalingActive"] == ("False", "FailedGetResourceMetric")
    assert conditions["AbleToScale"][0] == "True"
    twin.core.delete_namespace(ns)


def test_silent_node_goes_unknown_and_its_pods_go_with_it(twin: TwinCluster) -> None:
    spec = instance(twin.settings, 4)
    twin.loop.run(twin.pool.launch(spec))
    twin.loop.run(twin.pool.booted(spec.instance_id))
    ns = twin.namespace()
    twin.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "pinned"},
            "spec": {"nodeName": spec.node_name, "containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    wait_for(
        lambda: twin.core.read_namespaced_pod("pinned", ns).status.phase == "Running",
        "pinned running",
    )
    kubelet = twin.pool.kubelets[spec.instance_id]
    twin.loop.run(kubelet.stop())  # the kubelet dies; its Node stays

    def unknown() -> Any:
        node = twin.core.read_node(spec.node_name)
        ready = {c.type: c for c in node.status.conditions}["Ready"]
        return (ready, node.spec.taints) if ready.status == "Unknown" and node.spec.taints else None

    ready, taints = wait_for(unknown, "the silent node to go Unknown", timeout=10)
    assert ready.reason == "NodeStatusUnknown"
    assert ready.message == "Kubelet stopped posting node status."
    assert {(t.key, t.effect) for t in taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    twin.loop.run(twin.pool.terminate(spec.instance_id))
    wait_for(
        lambda: not twin.core.list_namespaced_pod(ns).items,
        "the pod of the gone node to be collected",
    )
    twin.core.delete_namespace(ns)


def test_pdb_status(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.apps.create_namespaced_deployment(ns, deployment("db", 3))
    wait_for(lambda: available(twin, ns, "db", 3), "3 available replicas of db")
    selector = {"matchLabels": {"app": "db"}}
    twin.policy.create_namespaced_pod_disruption_budget(
        ns, {"metadata": {"name": "min"}, "spec": {"minAvailable": 2, "selector": selector}}
    )
    twin.policy.create_namespaced_pod_disruption_budget(
        ns, {"metadata": {"name": "pct"}, "spec": {"maxUnavailable": "50%", "selector": selector}}
    )

    def numbers(name: str) -> tuple[int, ...] | None:
        pdb = twin.policy.read_namespaced_pod_disruption_budget_status(name, ns)
        status = pdb.status
        if status is None or status.observed_generation != pdb.metadata.generation:
            return None
        allowed = {c.type: c.status for c in status.conditions or []}.get("DisruptionAllowed")
        return (status.current_healthy, status.desired_healthy, status.expected_pods,
                status.disruptions_allowed, allowed)  # fmt: skip

    assert wait_for(lambda: numbers("min") == (3, 2, 3, 1, "True"), "min's status") is True
    assert wait_for(lambda: numbers("pct") == (3, 1, 3, 2, "True"), "pct's status") is True
    twin.apps.patch_namespaced_deployment_scale("db", ns, {"spec": {"replicas": 4}})
    wait_for(lambda: numbers("pct") == (4, 2, 4, 2, "True"), "pct after scaling to 4")
    twin.core.delete_namespace(ns)


def test_scheduler_explains_unschedulable_pods(twin: TwinCluster) -> None:
    ns = twin.namespace()
    cordoned = node_names(twin)[0]
    twin.core.patch_node(cordoned, {"spec": {"unschedulable": True}})
    try:
        twin.core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "huge"},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "64"}}}
                    ]
                },
            },
        )
        expected = (
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. "
            "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
            "2 No preemption victims found for incoming pod."
        )

        def condition() -> Any:
            pod = twin.core.read_namespaced_pod_status("huge", ns)
            found = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
            return found[0] if found and found[0].message == expected else found

        scheduled = wait_for(condition, "PodScheduled=False with the real message")
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
        events = wait_for(
            lambda: [
                e
                for e in twin.core.list_namespaced_event(ns).items
                if e.reason == "FailedScheduling"
            ],
            "a FailedScheduling event",
        )
        assert events[0].type == "Warning"
        assert events[0].involved_object.name == "huge"
        twin.core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "picky"},
                "spec": {
                    "nodeSelector": {"pool": "special"},
                    "containers": [{"name": "c", "image": "nginx"}],
                },
            },
        )
        wait_for(
            lambda: (
                "2 node(s) didn't match Pod's node affinity/selector"
                in " ".join(
                    c.message or ""
                    for c in twin.core.read_namespaced_pod_status("picky", ns).status.conditions
                    or []
                )
            ),
            "picky to be unschedulable for its selector",
        )
        target = node_names(twin)[1]
        twin.core.patch_node(target, {"metadata": {"labels": {"pool": "special"}}})
        assert (
            wait_for(
                lambda: twin.core.read_namespaced_pod("picky", ns).spec.node_name, "picky bound"
            )
            == target
        )
    finally:
        twin.core.patch_node(cordoned, {"spec": {"unschedulable": None}})
        twin.core.delete_namespace(ns)


def test_scheduler_gives_a_deleted_pods_room_to_the_next(twin: TwinCluster) -> None:
    ns = twin.namespace()
    node = node_names(twin)[2]

    def pod(name: str) -> dict[str, Any]:
        container = {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "1200m"}}}
        return {
            "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container]},
        }

    try:
        twin.core.create_namespaced_pod(ns, pod("first"))
        wait_for(lambda: twin.core.read_namespaced_pod("first", ns).spec.node_name, "first bound")
        twin.core.create_namespaced_pod(ns, pod("second"))
        wait_for(
            lambda: (
                "Insufficient cpu"
                in " ".join(
                    c.message or ""
                    for c in twin.core.read_namespaced_pod_status("second", ns).status.conditions
                    or []
                )
            ),
            "second to wait for room on the node",
        )
        twin.core.delete_namespaced_pod("first", ns, grace_period_seconds=0)
        bound = wait_for(
            lambda: twin.core.read_namespaced_pod("second", ns).spec.node_name, "second bound"
        )
        assert bound == node
    finally:
        twin.core.delete_namespace(ns)


def test_deployment_that_cannot_progress_reports_the_deadline(twin: TwinCluster) -> None:
    ns = twin.namespace()
    body = deployment("stuck", 1, progressDeadlineSeconds=1)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "64"}}
    twin.apps.create_namespaced_deployment(ns, body)

    def progressing() -> Any:
        status = twin.apps.read_namespaced_deployment_status("stuck", ns).status
        found = [
            c for c in (status.conditions if status else None) or [] if c.type == "Progressing"
        ]
        return found[0] if found and found[0].status == "False" else None

    condition = wait_for(progressing, "Progressing=False", timeout=10)
    assert condition.reason == "ProgressDeadlineExceeded"
    assert condition.message.endswith("has timed out progressing.")
    twin.core.delete_namespace(ns)


def test_garbage_collection_of_a_deleted_deployment(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.apps.create_namespaced_deployment(ns, deployment("gone", 2))
    twin.apps.create_namespaced_deployment(ns, deployment("kept", 1))
    wait_for(
        lambda: available(twin, ns, "gone", 2) and available(twin, ns, "kept", 1), "both ready"
    )
    twin.apps.delete_namespaced_deployment("gone", ns)
    wait_for(lambda: not pods_of(twin, ns, "gone"), "gone's pods to be collected")
    assert not [
        rs
        for rs in twin.apps.list_namespaced_replica_set(ns).items
        if rs.metadata.name.startswith("gone-")
    ]
    twin.apps.delete_namespaced_deployment("kept", ns, propagation_policy="Orphan")
    wait_for(
        lambda: not twin.apps.list_namespaced_deployment(ns).items,
        "kept to go with the orphan policy",
    )
    orphan = twin.apps.list_namespaced_replica_set(ns).items
    assert len(orphan) == 1
    assert not orphan[0].metadata.owner_references
    assert len(pods_of(twin, ns, "kept")) == 1
    twin.apps.create_namespaced_deployment(ns, deployment("front", 2))
    wait_for(lambda: available(twin, ns, "front", 2), "front ready")
    twin.apps.delete_namespaced_deployment("front", ns, propagation_policy="Foreground")
    held = twin.apps.read_namespaced_deployment("front", ns)
    assert "foregroundDeletion" in held.metadata.finalizers
    wait_for(
        lambda: not twin.apps.list_namespaced_deployment(ns).items,
        "front to go after its dependents",
    )
    assert not pods_of(twin, ns, "front")
    assert not [
        rs
        for rs in twin.apps.list_namespaced_replica_set(ns).items
        if rs.metadata.name.startswith("front-")
    ]
    twin.core.delete_namespace(ns)


def test_job_completes_and_a_failing_job_fails(twin: TwinCluster) -> None:
    ns = twin.namespace()

    def job(name: str, code: int, **spec: Any) -> dict:
        command = ["python", "-c", f"print('job {name}'); raise SystemExit({code})"]
        return {
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "run", "image": PROBE_IMAGE, "command": command}],
                    }
                },
                **spec,
            },
        }

    twin.batch.create_namespaced_job(ns, job("ok", 0, completions=2, parallelism=1))
    twin.batch.create_namespaced_job(ns, job("brief", 0, ttlSecondsAfterFinished=0))
    twin.batch.create_namespaced_job(ns, job("bad", 3, backoffLimit=1))

    def finished(name: str) -> Any:
        status = twin.batch.read_namespaced_job_status(name, ns).status
        if status is None or not any(c.status == "True" for c in status.conditions or []):
            return None
        return status

    ok = wait_for(lambda: finished("ok"), "job ok to finish", timeout=30)
    assert ok.succeeded == 2
    assert [(c.type, c.reason) for c in ok.conditions] == [("Complete", "CompletionsReached")]
    bad = wait_for(lambda: finished("bad"), "job bad to finish", timeout=30)
    assert bad.failed == 2
    assert [(c.type, c.reason) for c in bad.conditions] == [("Failed", "BackoffLimitExceeded")]
    wait_for(
        lambda: not twin.batch.list_namespaced_job(ns, field_selector="metadata.name=brief").items,
        "the brief job to expire after its TTL",
    )
    twin.core.delete_namespace(ns)


def test_kubectl_drain_waits_for_the_budget(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.apps.create_namespaced_deployment(ns, deployment("guarded", 2))
    wait_for(lambda: available(twin, ns, "guarded", 2), "2 available replicas of guarded")
    twin.policy.create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "guard"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )
    wait_for(
        lambda: (
            (s := twin.policy.read_namespaced_pod_disruption_budget_status("guard", ns).status)
            and s.current_healthy == 2
        ),
        "the guard budget's status",
    )
    victim = pods_of(twin, ns, "guarded")[0]
    node = victim.spec.node_name
    drain = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(twin.kubeconfig), "drain", node, "--ignore-daemonsets",
         "--delete-emptydir-data", "--force", "--timeout=60s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        assert drain.poll() is None, "drain finished although the budget allows no disruption"
        assert (
            twin.core.read_namespaced_pod(victim.metadata.name, ns).metadata.deletion_timestamp
            is None
        )
        twin.apps.patch_namespaced_deployment_scale("guarded", ns, {"spec": {"replicas": 3}})
        output, _ = drain.communicate(timeout=40)
    finally:
        if drain.poll() is None:
            drain.kill()
        twin.kubectl("uncordon", node)
        twin.core.delete_namespace(ns)
    assert drain.returncode == 0, output
    assert re.search(r"Cannot evict pod as it would violate the pod's disruption budget", output), (
        output
    )
    assert f"node/{node} drained" in output


def test_controllers_and_kubelets_ride_out_api_faults(tmp_path: Path) -> None:
    """With 10 % of API requests failing (429, 500, dropped connections), the control loops
    still converge: a Deployment becomes available and a probe Job completes."""
    cluster, stop = start_cluster(tmp_path, nodes=2, api_fault_rate=0.1)
    client = cluster.loop.run(_client(cluster))

    def call(coro_factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        def attempt() -> Any:
            try:
                return cluster.loop.run(coro_factory()) or True
            except (ApiError, OSError) as error:
                if isinstance(error, ApiError) and error.status == 409:
                    return True  # an earlier attempt went through before its answer was lost
                return None

        return wait_for(attempt, "an API call to get through", timeout=10)

    try:
        base = "/apis/apps/v1/namespaces/default/deployments"
        call(lambda: client.create(base, deployment("sturdy", 4)))
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "sturdy"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "run", "image": PROBE_IMAGE, "command": ["python", "-c", "0"]}
                        ],
                    }
                }
            },
        }
        call(lambda: client.create("/apis/batch/v1/namespaces/default/jobs", job))

        def converged() -> bool:
            d = call(lambda: client.get(f"{base}/sturdy"))
            j = call(lambda: client.get("/apis/batch/v1/namespaces/default/jobs/sturdy"))
            conditions = (j.get("status") or {}).get("conditions") or []
            return (d.get("status") or {}).get("availableReplicas") == 4 and any(
                c["type"] == "Complete" for c in conditions
            )

        wait_for(converged, "the deployment and the job under API faults", timeout=40)
    finally:
        cluster.loop.run(client.close())
        stop()


async def _client(cluster: TwinCluster) -> KubeClient:
    server = cluster.server
    return KubeClient(server.url, server.ca_pem_path, server.admin_token)
