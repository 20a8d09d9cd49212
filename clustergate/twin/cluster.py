"""The twin, composed: API server, controllers, kubelets, AWS, DNS and traffic in one loop.

Start-up follows an EKS cluster's life: the control plane comes up, the EKS add-ons are
installed as kube-system workloads, the AWS account gets its cluster, node groups and IRSA
roles, the node groups' instances boot and register as nodes, and the traffic edge is put in
front of an "old" and a "new" cluster. The twin is ready when every node is Ready and the
add-ons run; then it writes its kubeconfig, AWS settings and cluster config.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from clustergate.twin import manifests, outputs
from clustergate.twin.addons import AddonRegistry
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.autoscaler import register_autoscaler_addon
from clustergate.twin.aws import AwsSide
from clustergate.twin.cloud import InstanceSpec, NodeLauncher
from clustergate.twin.controllers import ControllerManager
from clustergate.twin.dns import register_dns_addons
from clustergate.twin.karpenter import manifests as karpenter_manifests
from clustergate.twin.karpenter import register_karpenter_addon
from clustergate.twin.kubeclient import ApiError, KubeClient
from clustergate.twin.kubelet import KubeletPool
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.pod_identity_webhook import PodIdentityWebhook
from clustergate.twin.pod_identity_webhook.mutation import Flags
from clustergate.twin.settings import TwinSettings
from clustergate.twin.traffic import TrafficSide

log = logging.getLogger("clustergate.twin")
PROBE_IMAGE = "ghcr.io/clustergate/clustergate-probe:0.1.0"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
#: What the viewer context may do, bound to its user as an operator would bind it.
VIEWER_ROLE = {
    "metadata": {"name": outputs.VIEWER_CONTEXT},
    "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]}],
}
VIEWER_BINDING = {
    "metadata": {"name": outputs.VIEWER_CONTEXT},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": outputs.VIEWER_CONTEXT,
    },
    "subjects": [
        {"kind": "User", "name": outputs.VIEWER_CONTEXT, "apiGroup": "rbac.authorization.k8s.io"}
    ],
}


class Twin:
    def __init__(self, settings: TwinSettings) -> None:
        self.settings = settings
        self.netmap = Netmap()
        self.hub = KubeletHub()
        self.addons = AddonRegistry()
        self.api = ApiServer(settings, self.netmap, self.hub)
        self.aws = AwsSide(settings, self.netmap)
        self._stops: list[Callable[[], Awaitable[None]]] = []

    def client(self) -> KubeClient:
        """For the twin's own components: a token that injected API faults never hit."""
        return KubeClient(self.api.url, self.api.ca_pem_path, self.api.internal_token)

    async def serve(self, ready_file: Path) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            ready = await self.start()
            ready_file.write_text(json.dumps(ready, indent=2))
            log.info("twin ready: %s", ready)
            await stop.wait()
        finally:
            await self.stop()

    async def start(self) -> dict[str, Any]:
        state = Path(self.settings.state_dir)
        await self.api.start()
        self._stops.append(self.api.stop)
        kubeconfig = state / "kubeconfig"
        viewer = secrets.token_urlsafe(24)
        self.api.add_token(viewer, outputs.VIEWER_CONTEXT, [])
        admin = self.client()
        try:
            await admin.create(f"{RBAC}/clusterroles", VIEWER_ROLE)
            await admin.create(f"{RBAC}/clusterrolebindings", VIEWER_BINDING)
        finally:
            await admin.close()
        outputs.write_kubeconfig(
            kubeconfig,
            self.api.url,
            self.api.ca_pem_path,
            {outputs.CONTEXT: self.api.admin_token, outputs.VIEWER_CONTEXT: viewer},
        )

        await self._start_pod_identity_webhook()

        controllers = ControllerManager(self.settings, self.client)
        await controllers.start()
        self._stops.append(controllers.stop)
        register_dns_addons(self.addons, self.settings, self.netmap, self.client)
        if self.settings.autoscaler == "karpenter":
            register_karpenter_addon(self.addons, self.settings, self.netmap, self.client)
        else:
            register_autoscaler_addon(self.addons, self.settings, self.netmap, self.client)

        await self.aws.start()
        self._stops.append(self.aws.stop)
        self.aws.attach_kubernetes(self.client)
        environment = outputs.aws_environment(self.settings, self.aws.endpoint_url)

        client = self.client()
        try:
            pool = KubeletPool(self.settings, self.client, self.hub, self.netmap, self.addons)
            self._stops.append(pool.stop)
            launcher = _TaintOneNode(pool) if self._taint_one_node() else pool
            facts = await self.aws.bootstrap(self.api.issuer, launcher, self.api.ca_pem_path)
            await self._install(client, facts)
            traffic = TrafficSide(
                self.settings, self.netmap, self.aws.endpoint_url, self.settings.cutover_driver
            )
            await traffic.start()
            self._stops.append(traffic.stop)
            traffic_facts = await traffic.bootstrap()
            await self._wait_until_settled(client)
        finally:
            await client.close()

        config_facts = {
            "probe_image": PROBE_IMAGE,
            "irsa_mappings": list(facts.irsa),
            "cutover": outputs.cutover_section(traffic_facts),
        }
        outputs.write_aws_env(state / "aws-env.json", environment)
        outputs.write_cluster_config(
            state / "cluster.yaml", outputs.cluster_config(self.settings, config_facts)
        )
        return {
            "kubeconfig": str(kubeconfig),
            "cluster_config": str(state / "cluster.yaml"),
            "aws_env": str(state / "aws-env.json"),
            "api_server": self.api.url,
            "aws_endpoint": self.aws.endpoint_url,
            "edge": traffic.edge_url,
            "nodes": self.settings.node_count,
            "faults": sorted(self.settings.faults),
        }

    async def _start_pod_identity_webhook(self) -> None:
        """EKS's control plane runs the webhook and registers it before any pod is created
        (fault webhook-off: the registration is missing, as after an operator deleted it)."""
        flags = Flags(aws_default_region=self.settings.network.region)
        webhook = PodIdentityWebhook(Path(self.settings.state_dir), self.netmap, self.client, flags)
        await webhook.start()
        self._stops.append(webhook.stop)
        if not self.settings.has_fault("webhook-off"):
            client = self.client()
            try:
                await webhook.register(client)
            finally:
                await client.close()

    def _taint_one_node(self) -> bool:
        return self.settings.has_fault("nodelocal-missing-on-node") and self.settings.node_count > 1

    async def _install(self, client: KubeClient, facts: Any) -> None:
        objects = [
            *manifests.dns_services(self.settings),
            *manifests.coredns(),
            *manifests.nodelocal(self.settings),
            *self._autoscaler(),
            *manifests.irsa_service_accounts(
                [(m.namespace, m.service_account, m.role_arn) for m in facts.irsa]
            ),
        ]
        await _create_all(client, objects)
        if self.settings.autoscaler == "karpenter":
            await _established(client, karpenter_manifests.crds(), self.settings.start_timeout_s)
            node_role = facts.node_role_arn.rsplit("/", 1)[-1]
            await _create_all(client, karpenter_manifests.default_pool(self.settings, node_role))

    def _autoscaler(self) -> list[tuple[str, Any]]:
        if self.settings.autoscaler == "karpenter":
            return [*karpenter_manifests.crds(), *karpenter_manifests.controller(self.settings)]
        return manifests.cluster_autoscaler(self.settings)

    async def _wait_until_settled(self, client: KubeClient) -> None:
        """Every node Ready and every kube-system workload available, or a clear error."""
        timeout_s = self.settings.start_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        expected = self.settings.node_count
        # Listing every node is the costly part on a big twin: look less often there.
        interval_s = max(0.2, expected / 1000)
        last = ""
        while asyncio.get_running_loop().time() < deadline:
            nodes = (await client.list("/api/v1/nodes"))["items"]
            ready = [node for node in nodes if _ready(node)]
            pods = (await client.list("/api/v1/namespaces/kube-system/pods"))["items"]
            waiting = [p["metadata"]["name"] for p in pods if not _ready(p)]
            if len(ready) >= expected and pods and not waiting:
                return
            last = f"{len(ready)}/{expected} nodes Ready; kube-system pods not ready: {waiting}"
            await asyncio.sleep(interval_s)
        raise RuntimeError(f"twin did not settle within {timeout_s:g}s: {last}")

    async def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                await asyncio.wait_for(stop(), timeout=20)
            except Exception:
                log.exception("stopping %s failed", stop)


class _TaintOneNode:
    """nodelocal-missing-on-node: the first node boots with a taint the cache does not tolerate."""

    def __init__(self, launcher: NodeLauncher) -> None:
        self._launcher = launcher
        self._tainted = False

    async def launch(self, spec: InstanceSpec) -> None:
        if not self._tainted:
            self._tainted = True
            spec = dataclasses.replace(spec, taints=(*spec.taints, manifests.BATCH_TAINT))
        await self._launcher.launch(spec)

    async def terminate(self, instance_id: str) -> None:
        await self._launcher.terminate(instance_id)


async def _create_all(client: KubeClient, objects: list[tuple[str, Any]]) -> None:
    for resource, body in objects:
        group_version, plural = resource.rsplit("/", 1)
        namespace = body["metadata"].get("namespace")
        path = _collection(group_version, plural, namespace)
        with contextlib.suppress(ApiError):
            await client.create(path, body)


async def _established(client: KubeClient, crds: list[tuple[str, Any]], timeout_s: float) -> None:
    """Wait until every CRD is Established: objects of a type not yet served get 404."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = [body["metadata"]["name"] for _, body in crds]
    while waiting:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        listed = {c["metadata"]["name"]: c for c in (await client.list(path))["items"]}
        waiting = [
            name
            for name in waiting
            if not any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (listed.get(name, {}).get("status") or {}).get("conditions") or []
            )
        ]
        if waiting and loop.time() > deadline:
            raise RuntimeError(f"CRDs not Established within {timeout_s:g}s: {waiting}")
        if waiting:
            await asyncio.sleep(0.1)


def _collection(group_version: str, plural: str, namespace: str | None) -> str:
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    if namespace and plural != "namespaces":
        return f"{root}/namespaces/{namespace}/{plural}"
    return f"{root}/{plural}"


def _ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
