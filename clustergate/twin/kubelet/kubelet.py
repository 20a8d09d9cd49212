"""The kubelet of one node: registers the Node, renews its Lease, runs the pods bound to it
and serves their logs and exec through the KubeletHub."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from clustergate.twin.addons import AddonRegistry
from clustergate.twin.cloud import InstanceSpec
from clustergate.twin.controllers.base import ClientFactory
from clustergate.twin.controllers.events import EventRecorder
from clustergate.twin.controllers.objects import Obj, micro_timestamp, node_ready
from clustergate.twin.kubeclient import ApiError, Informer, KubeClient, object_key, resource_path
from clustergate.twin.kubelet.node import LEASE_NAMESPACE, lease_object, node_object, node_status
from clustergate.twin.kubelet.podworker import PodWorker
from clustergate.twin.kubelet.runtime import Container, ProcessExec, read_logs
from clustergate.twin.kubelet.sandbox import command_line
from clustergate.twin.kubelet_hub import ContainerNotFound, ExecProcess, KubeletHub, LogOptions
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

#: Pod IPs per node: each node owns a block of the pod CIDR, as the VPC CNI gives each node
#: its own ENI addresses. Room for max_pods (29 on the twin's m5.large shape), and small enough
#: that a 1,000-node twin fits the /17 (with 128, only the first 255 nodes did).
POD_IPS_PER_NODE = 32


class Kubelet:
    def __init__(
        self,
        settings: TwinSettings,
        client_factory: ClientFactory,
        spec: InstanceSpec,
        hub: KubeletHub,
        netmap: Netmap,
        addons: AddonRegistry,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.node_name = spec.node_name
        self.hub = hub
        self.netmap = netmap
        self.addons = addons
        self._client_factory = client_factory
        self._client: KubeClient | None = None
        self._events: EventRecorder | None = None
        timings = settings.timings
        slow = timings.slow_start if settings.has_fault("kubelet-slow-ready") else 0.0
        self.start_delay = timings.pod_start + slow
        self.workers: dict[str, PodWorker] = {}
        self._ips_in_use: set[str] = set()
        self._informer: Informer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._node: Obj | None = None
        self._netmap_views: dict[str, str] = {}

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "the kubelet has not started"
        return self._client

    @property
    def events(self) -> EventRecorder:
        assert self._events is not None, "the kubelet has not started"
        return self._events

    # ---- start and stop

    async def start(self) -> None:
        """Boot (settings.timings.node_boot), register the Node, then run pods."""
        await asyncio.sleep(self.settings.timings.node_boot)
        self._client = self._client_factory()
        self._events = EventRecorder(self.client, "kubelet", self.node_name)
        await self._register_until_done()
        self.hub.register(self.node_name, self)
        self._informer = Informer(
            self.client, "/api/v1/pods", field_selector=f"spec.nodeName={self.node_name}"
        )
        self._informer.add_handler(self._on_pod)
        self._informer.start()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name=f"lease {self.node_name}"),
            asyncio.create_task(self._housekeeping(), name=f"housekeeping {self.node_name}"),
        ]
        await self._informer.synced()

    async def stop(self) -> None:
        """Stop every pod's containers and the kubelet's loops; the Node object stays."""
        self.hub.unregister(self.node_name)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._informer is not None:
            await self._informer.stop()
        await asyncio.gather(*(worker.stop() for worker in self.workers.values()))
        self.workers.clear()
        if self._client is not None:
            await self._client.close()

    async def _register_until_done(self) -> None:
        """Register the Node, trying again while the API server fails, as the kubelet does."""
        delay = 0.2
        while True:
            try:
                await self._register()
                return
            except ApiError as error:
                log.warning("kubelet %s: registration failed: %s", self.node_name, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _register(self) -> None:
        node = node_object(self.spec, self.settings, ready=not self.spec.never_ready)
        path = resource_path("v1", "nodes", name=self.node_name)
        try:
            await self.client.create(resource_path("v1", "nodes"), node)
        except ApiError as error:
            if error.status != 409:
                raise
            await self.client.patch(path, {"metadata": {"labels": node["metadata"]["labels"]}})
        self._node = await self.client.patch_status(path, {"status": node["status"]})
        await self.events.record(
            {**self._node, "apiVersion": "v1", "kind": "Node"},
            "Normal",
            "RegisteredNode",
            f"Node {self.node_name} event: Registered Node {self.node_name} in Controller",
        )

    async def _heartbeat(self) -> None:
        """Renew the node Lease every node_heartbeat; re-post the node status if the node
        lifecycle controller may have marked it Unknown while we were away. It can only have
        done so after a renewal was missed or late, so the Node is only read then: at 1,000
        nodes, reading it on every renewal doubled the API server's load."""
        lease_path = resource_path(
            "coordination.k8s.io/v1", "leases", LEASE_NAMESPACE, self.node_name
        )
        node_path = resource_path("v1", "nodes", name=self.node_name)
        timings = self.settings.timings
        lease: Obj | None = None
        renewed_at: float | None = None
        while True:
            try:
                late = renewed_at is None or (
                    time.monotonic() - renewed_at > timings.node_monitor_grace / 2
                )
                lease = await self._renew(lease, lease_path)
                renewed_at = time.monotonic()
                if late:
                    await self._restore_readiness(node_path)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("kubelet %s: heartbeat failed: %s", self.node_name, error)
                lease, renewed_at = None, None
            await asyncio.sleep(timings.node_heartbeat)

    async def _restore_readiness(self, node_path: str) -> None:
        node = await self.client.get(node_path)
        wanted_ready = not self.spec.never_ready
        if node_ready(node) != wanted_ready:
            previous = (node.get("status") or {}).get("conditions")
            status = node_status(self.spec, wanted_ready, previous)
            await self.client.patch_status(
                node_path, {"status": {"conditions": status["conditions"]}}
            )

    async def _renew(self, lease: Obj | None, path: str) -> Obj:
        if lease is None:
            lease = await self.client.get_or_none(path)
            if lease is None:
                node = await self.client.get(resource_path("v1", "nodes", name=self.node_name))
                return await self.client.create(
                    resource_path("coordination.k8s.io/v1", "leases", LEASE_NAMESPACE),
                    lease_object(node),
                )
        renewed = {**lease, "spec": {**lease["spec"], "renewTime": micro_timestamp()}}
        return await self.client.replace(path, renewed)

    # ---- pods

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        key = object_key(pod)
        worker = self.workers.get(key)
        if worker is not None and worker.pod["metadata"]["uid"] != pod["metadata"]["uid"]:
            self._forget(key)
            worker = None
        if kind == "DELETED":
            if worker is not None:
                self._forget(key)
            return
        if worker is None:
            self.workers[key] = PodWorker(self, pod, self._allocate_ip(pod))
        else:
            worker.update(pod)

    def _forget(self, key: str) -> None:
        worker = self.workers.pop(key)
        self._ips_in_use.discard(worker.pod_ip)
        self._netmap_views.pop(key, None)
        asyncio.get_running_loop().create_task(worker.stop())

    def _allocate_ip(self, pod: Obj) -> str:
        if pod["spec"].get("hostNetwork"):
            return self.spec.node_ip
        existing = (pod.get("status") or {}).get("podIP")
        if existing and existing not in self._ips_in_use:
            self._ips_in_use.add(existing)
            return str(existing)
        network = self.settings.network
        base = ipaddress.ip_address(self.spec.node_ip)
        node_index = int(base) - int(ipaddress.ip_network(network.node_cidr).network_address) - 10
        for offset in range(POD_IPS_PER_NODE):
            ip = network.pod_ip(node_index * POD_IPS_PER_NODE + offset)
            if ip not in self._ips_in_use:
                self._ips_in_use.add(ip)
                return ip
        raise RuntimeError(f"node {self.node_name} has no free pod IP in its block")

    def write_netmap_view(self, worker: PodWorker) -> None:
        scopes = [self.node_name]
        if not worker.pod["spec"].get("hostNetwork"):
            scopes.append(f"{self.node_name}/pod-network")
        view = json.dumps(self.netmap.view(*scopes), sort_keys=True)
        if self._netmap_views.get(worker.key) != view and worker.sandbox.root.exists():
            self.netmap.write_view(worker.sandbox.netmap_path, *scopes)
            self._netmap_views[worker.key] = view

    async def _housekeeping(self) -> None:
        """Every second: addresses published after a pod started (a cache that came up later)
        reach its sandbox, and pod statuses the API did not take are sent again."""
        while True:
            await asyncio.sleep(1.0)
            for worker in list(self.workers.values()):
                if worker.uses_sandbox:
                    self.write_netmap_view(worker)
                await worker.resync_status()

    # ---- KubeletConnection (logs and exec for the API server)

    def _container(self, namespace: str, pod: str, container: str) -> tuple[PodWorker, Container]:
        worker = self.workers.get(f"{namespace}/{pod}")
        if worker is None:
            raise ContainerNotFound(f'pod "{pod}" not found on node {self.node_name}')
        found = worker.container(container)
        if found is None:
            raise ContainerNotFound(f'container "{container}" in pod "{pod}" is not valid')
        return worker, found

    def logs(
        self, namespace: str, pod: str, container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        worker, found = self._container(namespace, pod, container)
        if not found.log_files:
            raise ContainerNotFound(
                f'container "{found.name}" in pod "{pod}" is waiting to start: ContainerCreating'
            )
        return read_logs(
            found,
            options,
            lambda: found.running and self.workers.get(worker.key) is worker,
        )

    async def exec(
        self, namespace: str, pod: str, container: str, command: list[str], tty: bool
    ) -> ExecProcess:
        worker, found = self._container(namespace, pod, container)
        if found.kind != "process":
            raise ContainerNotFound(
                f'container "{found.name}" in pod "{pod}" runs image {found.spec.get("image")}, '
                "which the twin simulates (no process to exec into); only containers of the "
                "clustergate-probe image run for real"
            )
        if not found.running:
            raise ContainerNotFound(f'container "{found.name}" in pod "{pod}" is not running')
        env = worker.envs.get(found.name, {})
        argv = command_line({"command": command}, env, sys.executable)
        if argv[0] != sys.executable:
            argv = [argv[0], *(_in_sandbox(arg, worker.sandbox.root) for arg in argv[1:])]
        return await ProcessExec.start(argv, env, worker.sandbox.root)


def _in_sandbox(argument: str, root: Path) -> str:
    """An absolute path argument of a non-Python command (``cat /etc/resolv.conf``) means the
    container's file when the sandbox has it."""
    if argument.startswith("/") and os.path.lexists(root / argument.lstrip("/")):
        return str(root / argument.lstrip("/"))
    return argument
