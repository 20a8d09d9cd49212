"""EKS managed node-group updates on the twin, end to end.

A real AWS side (moto behind the gateway, the instance fleet), API server, controller manager
and kubelet pool run in a background event loop, wired as the twin's composition wires them.
The test drives them as the upgrade suite drives EKS: boto3 against the gateway
(update_nodegroup_version, describe_update, list_updates) and the official Kubernetes client
(workloads, PodDisruptionBudgets, a watch on the nodes).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import kubernetes
import pytest
import urllib3
from botocore.exceptions import ClientError

from clustergate.twin import outputs
from clustergate.twin.addons import AddonRegistry
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.aws import AwsSide
from clustergate.twin.aws.releases import kubelet_version
from clustergate.twin.controllers import ControllerManager
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.kubelet import KubeletPool
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import NodeGroupShape, Timings, TwinSettings
from tests.loop_thread import LoopThread

T = TypeVar("T")
CLUSTER = "clustergate-twin"
OLD_RELEASE = "1.31.2-20241106"
EXCLUDE_FROM_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
TIMINGS = Timings(
    node_boot=0.2,
    pod_start=0.2,
    upgrade_eviction_limit=3.0,
    max_node_provision=3.0,
)


def wait_for(check: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")


class NodeWatch:
    """Every node's last state before it was deleted, from a watch on the nodes."""

    def __init__(self, core: kubernetes.client.CoreV1Api) -> None:
        self.last: dict[str, Any] = {}
        self.deleted: set[str] = set()
        self._stopped = False
        self._watch = kubernetes.watch.Watch()
        self._core = core
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self._core.list_node, timeout_seconds=120):
                node = event["object"]
                self.last[node.metadata.name] = node
                if event["type"] == "DELETED":
                    self.deleted.add(node.metadata.name)
        except urllib3.exceptions.ProtocolError:
            if not self._stopped:
                raise  # the stream broke while the test still needed it

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


@pytest.fixture(scope="module", autouse=True)
def no_public_amis() -> Iterator[None]:
    """moto loads ~1300 public AMIs per EC2 region reset; the twin registers its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        yield


class UpdateTwin:
    def __init__(self, tmp: Path, faults: frozenset[str], groups: tuple[NodeGroupShape, ...]):
        self.settings = TwinSettings(
            state_dir=str(tmp), node_groups=groups, faults=faults, timings=TIMINGS
        )
        self.loop = LoopThread()
        netmap, hub = Netmap(), KubeletHub()
        self.api = ApiServer(self.settings, netmap, hub)
        self.aws = AwsSide(self.settings, netmap)
        self._stops: list[Callable[[], Coroutine[Any, Any, None]]] = []

        async def start() -> None:
            await self.api.start()
            self._stops.append(self.api.stop)
            manager = ControllerManager(self.settings, self.client)
            await manager.start()
            self._stops.append(manager.stop)
            pool = KubeletPool(self.settings, self.client, hub, netmap, AddonRegistry())
            self._stops.append(pool.stop)
            await self.aws.start()
            self._stops.append(self.aws.stop)
            self.aws.attach_kubernetes(self.client)
            await self.aws.bootstrap(self.api.issuer, pool, self.api.ca_pem_path)

        self.loop.run(start())
        kubeconfig = tmp / "kubeconfig"
        outputs.write_kubeconfig(
            kubeconfig,
            self.api.url,
            self.api.ca_pem_path,
            {outputs.CONTEXT: self.api.admin_token},
        )
        api = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.eks, self.autoscaling, self.ec2 = (
            boto3.client(
                service,
                endpoint_url=self.aws.endpoint_url,
                region_name=self.settings.network.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            for service in ("eks", "autoscaling", "ec2")
        )
        wait_for(
            lambda: len(self.ready_nodes()) == self.settings.node_count,
            f"{self.settings.node_count} Ready nodes",
        )

    def client(self) -> KubeClient:
        return KubeClient(self.api.url, self.api.ca_pem_path, self.api.admin_token)

    def close(self) -> None:
        async def stop() -> None:
            while self._stops:
                await self._stops.pop()()

        self.loop.run(stop())
        self.loop.close()

    def ready_nodes(self, nodegroup: str | None = None) -> list[Any]:
        selector = f"eks.amazonaws.com/nodegroup={nodegroup}" if nodegroup else None
        return [
            node
            for node in self.core.list_node(label_selector=selector).items
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        ]

    def nodes(self, nodegroup: str) -> list[Any]:
        return self.core.list_node(label_selector=f"eks.amazonaws.com/nodegroup={nodegroup}").items

    def nodegroup(self, name: str) -> dict[str, Any]:
        return self.eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=name)["nodegroup"]

    def asg(self, nodegroup: str) -> dict[str, Any]:
        name = self.nodegroup(nodegroup)["resources"]["autoScalingGroups"][0]["name"]
        return self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ][0]

    def guarded_workload(self, nodegroup: str, replicas: int, min_available: int) -> str:
        """A namespace with a Deployment pinned to ``nodegroup`` and a PDB over it; returns the
        namespace once every replica is Ready and the budget is observed."""
        namespace = f"ng-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": namespace}})
        labels = {"app": "web"}
        self.apps.create_namespaced_deployment(
            namespace,
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "nodeSelector": {"eks.amazonaws.com/nodegroup": nodegroup},
                            "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}],
                        },
                    },
                },
            },
        )
        self.policy.create_namespaced_pod_disruption_budget(
            namespace,
            {
                "metadata": {"name": "web"},
                "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}},
            },
        )
        wait_for(
            lambda: len(self.ready_pods(namespace)) == replicas,
            f"{replicas} Ready web pods in {namespace}",
        )
        wait_for(
            lambda: (
                self.policy.read_namespaced_pod_disruption_budget(
                    "web", namespace
                ).status.current_healthy
                == replicas
            ),
            f"the PDB in {namespace} to see {replicas} healthy pods",
        )
        return namespace

    def ready_pods(self, namespace: str) -> list[Any]:
        return [
            pod
            for pod in self.core.list_namespaced_pod(namespace).items
            if pod.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        ]

    def update(self, nodegroup: str, **arguments: Any) -> dict[str, Any]:
        update = self.eks.update_nodegroup_version(
            clusterName=CLUSTER, nodegroupName=nodegroup, **arguments
        )["update"]
        assert update["status"] == "InProgress"
        assert update["type"] == "VersionUpdate"
        return dict(update)

    def finished(self, nodegroup: str, update_id: str, timeout: float = 30) -> dict[str, Any]:
        def describe() -> dict[str, Any] | None:
            update = self.eks.describe_update(
                name=CLUSTER, updateId=update_id, nodegroupName=nodegroup
            )["update"]
            return None if update["status"] == "InProgress" else update

        return wait_for(describe, f"update {update_id} of {nodegroup} to finish", timeout)

    def image_name(self, ami_id: str) -> str:
        return self.ec2.describe_images(ImageIds=[ami_id])["Images"][0]["Name"]


@pytest.fixture(scope="class")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpdateTwin]:
    groups = (
        NodeGroupShape("ng-general-a", 2, min_size=1, max_size=3, zone="us-west-2a"),
        NodeGroupShape("ng-general-b", 1, min_size=1, max_size=3, zone="us-west-2b"),
    )
    twin = UpdateTwin(tmp_path_factory.mktemp("update-healthy"), frozenset(), groups)
    yield twin
    twin.close()


def fault_twin(tmp: Path, fault: str) -> UpdateTwin:
    groups = (NodeGroupShape("ng-general-a", 1, min_size=1, max_size=3, zone="us-west-2a"),)
    return UpdateTwin(tmp, frozenset({fault}), groups)


class TestHealthy:
    def test_rolls_every_node_to_the_new_release(self, healthy: UpdateTwin) -> None:
        twin, group, release = healthy, "ng-general-a", "1.31.2-20241201"
        namespace = twin.guarded_workload(group, replicas=2, min_available=1)
        old = {node.metadata.name: node for node in twin.nodes(group)}
        assert {n.status.node_info.kubelet_version for n in old.values()} == {
            kubelet_version(OLD_RELEASE)
        }
        sizes = (twin.asg(group)["MinSize"], twin.asg(group)["MaxSize"], 2)
        watch = NodeWatch(twin.core)
        try:
            update = twin.update(group, releaseVersion=release)
            assert {p["type"]: p["value"] for p in update["params"]} == {
                "Version": "1.31",
                "ReleaseVersion": release,
            }
            assert twin.nodegroup(group)["status"] == "UPDATING"
            with pytest.raises(ClientError) as second:
                twin.eks.update_nodegroup_version(
                    clusterName=CLUSTER, nodegroupName=group, releaseVersion=release
                )
            assert second.value.response["Error"]["Code"] == "ResourceInUseException"
            assert second.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
            done = twin.finished(group, update["id"])
        finally:
            watch.stop()
        assert (done["status"], done["errors"]) == ("Successful", [])
        listed = twin.eks.list_updates(name=CLUSTER, nodegroupName=group)["updateIds"]
        assert update["id"] in listed

        new = twin.nodes(group)
        assert len(new) == 2
        assert not {n.metadata.name for n in new} & old.keys()
        assert {n.status.node_info.kubelet_version for n in new} == {kubelet_version(release)}
        images = {n.metadata.labels["eks.amazonaws.com/nodegroup-image"] for n in new}
        assert [twin.image_name(ami) for ami in images] == ["amazon-eks-node-1.31-v20241201"]
        assert not any(n.spec.unschedulable for n in new)

        for name in old:
            assert name in watch.deleted, f"old node {name} was not deleted"
            before = watch.last[name]
            assert before.spec.unschedulable, f"{name} was not cordoned before it went"
            assert before.metadata.labels.get(EXCLUDE_FROM_LB) == "true"

        described = twin.nodegroup(group)
        assert (described["status"], described["version"], described["releaseVersion"]) == (
            "ACTIVE",
            "1.31",
            release,
        )
        asg = twin.asg(group)
        assert (asg["MinSize"], asg["MaxSize"], asg["DesiredCapacity"]) == sizes
        pods = twin.ready_pods(namespace)
        assert len(pods) == 2
        assert {pod.spec.node_name for pod in pods} <= {n.metadata.name for n in new}

    def test_budget_that_blocks_the_drain_fails_the_update(self, healthy: UpdateTwin) -> None:
        twin, group = healthy, "ng-general-b"
        namespace = twin.guarded_workload(group, replicas=1, min_available=1)
        (blocked,) = twin.ready_pods(namespace)
        before = twin.nodegroup(group)["releaseVersion"]
        update = twin.update(group, releaseVersion="1.31.2-20241215")
        done = twin.finished(group, update["id"])
        assert done["status"] == "Failed"
        assert done["errors"] == [
            {
                "errorCode": "PodEvictionFailure",
                "errorMessage": "Reached max retries while trying to evict pods from nodes in "
                f"node group {group}",
                "resourceIds": [blocked.spec.node_name],
            }
        ]
        (still,) = twin.ready_pods(namespace)
        assert (still.metadata.uid, still.spec.node_name) == (
            blocked.metadata.uid,
            blocked.spec.node_name,
        )
        assert twin.core.read_node(blocked.spec.node_name).spec.unschedulable
        assert twin.nodegroup(group)["releaseVersion"] == before

    def test_force_replaces_nodes_despite_the_budget(self, healthy: UpdateTwin) -> None:
        twin, group, release = healthy, "ng-general-b", "1.31.2-20241220"
        namespace = twin.guarded_workload(group, replicas=1, min_available=1)
        (guarded,) = twin.ready_pods(namespace)
        old = {node.metadata.name for node in twin.nodes(group)}
        update = twin.update(group, releaseVersion=release, force=True)
        done = twin.finished(group, update["id"])
        assert (done["status"], done["errors"]) == ("Successful", [])
        new = twin.nodes(group)
        assert not {n.metadata.name for n in new} & old
        assert {n.status.node_info.kubelet_version for n in new} == {kubelet_version(release)}
        assert twin.nodegroup(group)["releaseVersion"] == release
        (replacement,) = wait_for(
            lambda: twin.ready_pods(namespace), f"the guarded pod in {namespace} to come back"
        )
        assert replacement.metadata.uid != guarded.metadata.uid
        assert replacement.spec.node_name in {n.metadata.name for n in new}

    def test_invalid_requests_are_refused(self, healthy: UpdateTwin) -> None:
        for arguments, code in (
            ({"version": "1.32"}, "InvalidParameterException"),
            ({"releaseVersion": "1.30.6-20241106"}, "InvalidParameterException"),
            ({"releaseVersion": "latest"}, "InvalidParameterException"),
        ):
            with pytest.raises(ClientError) as refused:
                healthy.eks.update_nodegroup_version(
                    clusterName=CLUSTER, nodegroupName="ng-general-a", **arguments
                )
            assert refused.value.response["Error"]["Code"] == code, arguments
        with pytest.raises(ClientError) as missing:
            healthy.eks.describe_update(name=CLUSTER, updateId=str(uuid.uuid4()))
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_upgrade_skips_drain_fault(tmp_path: Path) -> None:
    twin = fault_twin(tmp_path, "upgrade-skips-drain")
    try:
        group = "ng-general-a"
        namespace = twin.guarded_workload(group, replicas=1, min_available=1)
        (guarded,) = twin.ready_pods(namespace)
        (old,) = (node.metadata.name for node in twin.nodes(group))
        watch = NodeWatch(twin.core)
        try:
            update = twin.update(group, releaseVersion="1.31.2-20241201")
            done = twin.finished(group, update["id"])
        finally:
            watch.stop()
        # The budget would have refused an eviction: the pod went with its node instead.
        assert (done["status"], done["errors"]) == ("Successful", [])
        assert old in watch.deleted
        assert not watch.last[old].spec.unschedulable
        assert EXCLUDE_FROM_LB not in watch.last[old].metadata.labels
        (replacement,) = wait_for(
            lambda: twin.ready_pods(namespace), "the vanished pod's replacement"
        )
        assert replacement.metadata.uid != guarded.metadata.uid
    finally:
        twin.close()


def test_upgrade_stuck_fault(tmp_path: Path) -> None:
    twin = fault_twin(tmp_path, "upgrade-stuck")
    try:
        group = "ng-general-a"
        (old,) = (node.metadata.name for node in twin.nodes(group))
        update = twin.update(group, releaseVersion="1.31.2-20241201")
        done = twin.finished(group, update["id"])
        assert done["status"] == "Failed"
        (error,) = done["errors"]
        assert (error["errorCode"], error["errorMessage"]) == (
            "NodeCreationFailure",
            "Instances failed to join the kubernetes cluster",
        )
        (stuck,) = [n for n in twin.nodes(group) if n.metadata.name != old]
        instance_id = stuck.spec.provider_id.rsplit("/", 1)[1]
        assert error["resourceIds"] == [instance_id, stuck.metadata.name]
        assert [n.metadata.name for n in twin.ready_nodes(group)] == [old]
        assert not twin.core.read_node(old).spec.unschedulable
        assert twin.nodegroup(group)["releaseVersion"] == OLD_RELEASE
    finally:
        twin.close()
