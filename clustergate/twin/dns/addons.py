"""The DNS add-ons as the twin's kubelets run them: CoreDNS pods and node-local-dns pods.

:func:`register_dns_addons` registers both images. The runtimes share the VPC resolver (the
twin's internet, :class:`VpcResolver`), which runs while any of them does. What each runtime
publishes in the netmap is what the cluster's routing would make reachable:

- a CoreDNS pod: its ``pod_ip:53`` (and health ``:8080``, ready ``:8181``); the kube-dns
  Service IP ``:53`` (everywhere) points at one running CoreDNS pod, re-pointed when that pod
  stops and withdrawn when none runs;
- a node-local-dns pod (host network): on its node only, the link-local address ``:53`` and,
  in iptables mode, the kube-dns Service IP ``:53`` too (the NOTRACK interception; not with the
  ``dns-bypass-cache`` fault); metrics ``node_ip:9253`` and health ``node_ip:8080`` on the node
  and everywhere (node IPs are unique, and the API server's pod proxy resolves globally), and
  both at the link-local address on the node. Without the pod none of it exists, so the node's
  queries reach kube-dns directly: what a node without its cache does.

The cache finds kube-dns through the global mapping of the Service IP, which plays
``kube-dns-upstream`` (a Service the interception does not catch).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

import dns.message

from clustergate.twin.addons import COREDNS_IMAGE, NODELOCAL_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.dns.cluster_dns import ClusterDns
from clustergate.twin.dns.cluster_zone import ClusterZone
from clustergate.twin.dns.feeder import RecordsFeeder
from clustergate.twin.dns.internet import InternetZone
from clustergate.twin.dns.metrics import HttpEndpoints, health_app, ready_app
from clustergate.twin.dns.nodecache import NodeLocalCache, corefile_blocks
from clustergate.twin.dns.records import ClusterRecords
from clustergate.twin.dns.server import DnsServer, Request
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Network, TwinSettings

log = logging.getLogger(__name__)

#: How long CoreDNS waits for its first list before serving anyway (the kubernetes plugin: 5 s).
COREDNS_SYNC_WAIT = 5.0
#: Delay of every cache answer under the ``dns-slow-cache`` fault.
SLOW_CACHE_DELAY = 0.2
#: How long a CoreDNS that started unsynced keeps waiting before its /ready gives up.
LATE_SYNC_WAIT = 300.0
METRICS_PORT = 9253
HEALTH_PORT = 8080
READY_PORT = 8181

ClientFactory = Callable[[], KubeClient]


def vpc_resolver_ip(network: Network) -> str:
    """AmazonProvidedDNS: the VPC's base address plus two (10.0.0.2 for 10.0.0.0/17)."""
    return str(ipaddress.ip_network(network.node_cidr).network_address + 2)


class _Publications:
    """Netmap entries one runtime made, withdrawn together and only while still its own (a
    replacement pod may already have published the same address)."""

    def __init__(self, netmap: Netmap) -> None:
        self._netmap = netmap
        self._made: list[tuple[str, int, tuple[str, int], str]] = []

    def publish(self, address: str, port: int, target: tuple[str, int], node: str = "") -> None:
        self._netmap.publish(address, port, target, node=node)
        self._made.append((address, port, target, node))

    def withdraw_all(self) -> None:
        for address, port, target, node in reversed(self._made):
            scopes = (node,) if node else ()
            if self._netmap.resolve(address, port, *scopes) == target:
                self._netmap.withdraw(address, port, node=node)
        self._made.clear()


class _KubeDnsService:
    """The kube-dns Service IP, pointed at one of the running CoreDNS servers."""

    def __init__(self, netmap: Netmap, ip: str) -> None:
        self._netmap = netmap
        self._ip = ip
        self._backends: dict[str, tuple[str, int]] = {}

    def add(self, pod: str, address: tuple[str, int]) -> None:
        self._backends[pod] = address
        if len(self._backends) == 1:
            self._netmap.publish(self._ip, 53, address)

    def remove(self, pod: str) -> None:
        address = self._backends.pop(pod, None)
        if address is None or self._netmap.resolve(self._ip, 53) != address:
            return
        if self._backends:
            self._netmap.publish(self._ip, 53, next(iter(self._backends.values())))
        else:
            self._netmap.withdraw(self._ip, 53)


class CoreDnsRuntime:
    """One CoreDNS pod: its own records and informers, DNS at ``pod_ip:53``, ``/health`` at
    ``pod_ip:8080`` and ``/ready`` at ``pod_ip:8181`` (503 until its first list, as the
    ``ready`` plugin answers)."""

    def __init__(
        self,
        placement: PodPlacement,
        settings: TwinSettings,
        netmap: Netmap,
        client_factory: ClientFactory,
        kube_dns: _KubeDnsService,
        resolver: VpcResolver,
    ) -> None:
        self.placement = placement
        self.records = ClusterRecords()
        network = settings.network
        zone = ClusterZone(self.records, network.cluster_domain, network.kube_dns_ip)
        self.server = ClusterDns(zone, upstream=lambda: netmap.resolve(resolver.ip, 53))
        self._client_factory = client_factory
        self._client: KubeClient | None = None
        self._feeder: RecordsFeeder | None = None
        self._synced = False
        self._late_sync: asyncio.Task[None] | None = None
        self._kube_dns = kube_dns
        self._resolver_lease = _Lease(resolver)
        self._http = HttpEndpoints()
        self._published = _Publications(netmap)
        meta = placement.pod.get("metadata") or {}
        self._pod = f"{meta.get('namespace')}/{meta.get('name')}"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self._resolver_lease.take()
        address = await self.server.start()
        health = await self._http.serve(health_app())
        ready = await self._http.serve(ready_app(lambda: self._synced))
        self._client = self._client_factory()
        self._feeder = RecordsFeeder(self._client, self.records)
        self._feeder.start()
        try:
            await self._feeder.synced(COREDNS_SYNC_WAIT)
            self._synced = True
        except TimeoutError as error:
            log.warning("CoreDNS %s serving before its first list: %s", self._pod, error)
            self._late_sync = asyncio.create_task(self._mark_synced(self._feeder))
        pod_ip = self.placement.pod_ip
        self._published.publish(pod_ip, 53, address)
        self._published.publish(pod_ip, HEALTH_PORT, health)
        self._published.publish(pod_ip, READY_PORT, ready)
        self._kube_dns.add(self._pod, address)

    async def _mark_synced(self, feeder: RecordsFeeder) -> None:
        with contextlib.suppress(TimeoutError):
            await feeder.synced(LATE_SYNC_WAIT)
            self._synced = True

    async def stop(self) -> None:
        self._kube_dns.remove(self._pod)
        self._published.withdraw_all()
        if self._late_sync is not None:
            self._late_sync.cancel()
        if self._feeder is not None:
            await self._feeder.stop()
        if self._client is not None:
            await self._client.close()
        await self._http.stop()
        await self.server.stop()
        await self._resolver_lease.give_back()


class NodeLocalDnsRuntime:
    """One node-local-dns pod (host network): the node's cache and what the node sees of it."""

    def __init__(
        self,
        placement: PodPlacement,
        settings: TwinSettings,
        netmap: Netmap,
        resolver: VpcResolver,
    ) -> None:
        self.placement = placement
        network = settings.network
        self._network = network
        self._resolver_lease = _Lease(resolver)
        intercept = network.proxy_mode == "iptables" and not settings.has_fault("dns-bypass-cache")
        self._bind = [network.nodelocal_ip] + ([network.kube_dns_ip] if intercept else [])
        blocks = corefile_blocks(
            network.cluster_domain,
            cluster_dns=lambda: netmap.resolve(network.kube_dns_ip, 53),
            node_resolver=lambda: netmap.resolve(resolver.ip, 53),
        )
        delay = SLOW_CACHE_DELAY if settings.has_fault("dns-slow-cache") else 0.0
        self.cache = NodeLocalCache(self._bind, blocks, delay=delay)
        self._published = _Publications(netmap)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self._resolver_lease.take()
        await self.cache.start()
        node, node_ip = self.placement.node_name, self.placement.node_ip
        local_ip = self._network.nodelocal_ip
        publish = self._published.publish
        for address in self._bind:
            publish(address, 53, self.cache.listeners[address], node=node)
        for port, target in (
            (METRICS_PORT, self.cache.metrics_address),
            (HEALTH_PORT, self.cache.health_address),
        ):
            publish(local_ip, port, target, node=node)
            publish(node_ip, port, target, node=node)
            publish(node_ip, port, target)

    async def stop(self) -> None:
        self._published.withdraw_all()
        await self.cache.stop()
        await self._resolver_lease.give_back()


class VpcResolver:
    """AmazonProvidedDNS at ``vpc_resolver_ip:53`` (everywhere): the twin's internet.

    Shared by the DNS runtimes and running while any of them runs (``acquire``/``release``),
    so it exists exactly when something forwards to it.
    """

    def __init__(self, network: Network, netmap: Netmap) -> None:
        self.ip = vpc_resolver_ip(network)
        self._netmap = netmap
        self._internet = InternetZone(network.region)
        self._server = DnsServer(self._answer)
        self._users = 0
        self._lock = asyncio.Lock()

    async def _answer(self, query: dns.message.Message, _request: Request) -> dns.message.Message:
        return self._internet.answer(query)

    async def acquire(self) -> None:
        async with self._lock:
            self._users += 1
            if self._users == 1:
                self._netmap.publish(self.ip, 53, await self._server.start())

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                self._netmap.withdraw(self.ip, 53)
                await self._server.stop()


class _Lease:
    """One runtime's use of the shared VPC resolver: taken at most once, given back once."""

    def __init__(self, resolver: VpcResolver) -> None:
        self._resolver = resolver
        self._held = False

    async def take(self) -> None:
        if not self._held:
            await self._resolver.acquire()
            self._held = True

    async def give_back(self) -> None:
        if self._held:
            self._held = False
            await self._resolver.release()


def register_dns_addons(
    registry: AddonRegistry,
    settings: TwinSettings,
    netmap: Netmap,
    client_factory: ClientFactory,
) -> None:
    """Register the CoreDNS and node-local-dns runtimes (and the VPC resolver they share)."""
    kube_dns = _KubeDnsService(netmap, settings.network.kube_dns_ip)
    resolver = VpcResolver(settings.network, netmap)
    registry.register(
        COREDNS_IMAGE,
        lambda placement: CoreDnsRuntime(
            placement, settings, netmap, client_factory, kube_dns, resolver
        ),
    )
    registry.register(
        NODELOCAL_IMAGE,
        lambda placement: NodeLocalDnsRuntime(placement, settings, netmap, resolver),
    )
