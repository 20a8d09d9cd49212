"""The DNS add-ons as the twin's kubelets run them: CoreDNS pods and node-local-dns pods.

:func:`register_dns_addons` registers both images. The runtimes share the VPC resolver (the
twin's internet, :class:`VpcResolver`), which runs while any of them does. What each runtime
publishes in the netmap is what the cluster's routing would make reachable:

- a CoreDNS pod: its ``pod_ip:53`` (and health ``:8080``, ready ``:8181``); the kube-dns
  Service IP ``:53`` (everywhere), and the ``kube-dns-upstream`` Service IP once a cache has
  looked that Service up and its selector matches, point at one running CoreDNS pod,
  re-pointed when that pod stops and withdrawn when none runs;
- a node-local-dns pod (host network), configured by its Corefile
  (:class:`NodeLocalDnsRuntime`): on its node only, each ``-localip`` address ``:53`` that the
  Corefile binds (a Service IP among them only with the NOTRACK rules, ``-setupiptables``, and
  not under the ``dns-bypass-cache`` fault; a ``-localip`` address it does not bind answers
  nothing); its prometheus and health ports at ``node_ip`` on the node and everywhere (node
  IPs are unique, and the API server's pod proxy resolves globally), and at the link-local
  address on the node. Without the pod none of it exists, so the node's queries reach
  kube-dns directly: what a node without its cache does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable

import dns.message

from clustergate.twin.addons import COREDNS_IMAGE, NODELOCAL_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.dns.cluster_dns import ClusterDns
from clustergate.twin.dns.cluster_zone import ClusterZone
from clustergate.twin.dns.corefile import COREDNS_PLUGINS, CorefileError, parse
from clustergate.twin.dns.feeder import RecordsFeeder
from clustergate.twin.dns.internet import InternetZone
from clustergate.twin.dns.metrics import HttpEndpoints, health_app, ready_app
from clustergate.twin.dns.node_cache_app import (
    NodeCacheArgs,
    NodeCacheError,
    config_source,
    parse_args,
    render,
)
from clustergate.twin.dns.nodecache import NodeLocalCache, netmap_lookup
from clustergate.twin.dns.nodecache_inputs import NAMESPACE, ApiInputs, NodeCacheInputs
from clustergate.twin.dns.plugins import ZoneServer, node_cache_servers, zone_servers
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
    """What kube-proxy makes of the Services in front of CoreDNS: the kube-dns Service IP,
    and each Service routed here (``kube-dns-upstream``) whose selector matches, pointed at
    one of the running CoreDNS servers whose pod labels it selects."""

    def __init__(self, netmap: Netmap, ip: str) -> None:
        self._netmap = netmap
        self._selectors: dict[str, dict[str, str]] = {ip: {}}
        self._backends: dict[str, tuple[tuple[str, int], dict[str, str]]] = {}
        self._published: dict[str, tuple[str, int]] = {}

    def add(self, pod: str, address: tuple[str, int], labels: dict[str, str]) -> None:
        self._backends[pod] = (address, labels)
        self._repoint()

    def remove(self, pod: str) -> None:
        if self._backends.pop(pod, None) is not None:
            self._repoint()

    def route(self, ip: str, selector: dict[str, str]) -> None:
        self._selectors.setdefault(ip, selector)
        self._repoint()

    def _repoint(self) -> None:
        for ip, selector in self._selectors.items():
            current = self._netmap.resolve(ip, 53)
            matching = [
                address
                for address, labels in self._backends.values()
                if all(labels.get(key) == value for key, value in selector.items())
            ]
            if current in matching:
                continue
            if matching:
                self._netmap.publish(ip, 53, matching[0])
                self._published[ip] = matching[0]
            elif ip in self._published and current == self._published.pop(ip):
                self._netmap.withdraw(ip, 53)


class CoreDnsRuntime:
    """One CoreDNS pod: its own records and informers, DNS at ``pod_ip:53``, ``/health`` at
    ``pod_ip:8080`` and ``/ready`` at ``pod_ip:8181`` (503 until its first list, as the
    ``ready`` plugin answers).

    Its Corefile comes from the ConfigMap volume at ``-conf`` (the ``coredns`` ConfigMap):
    the root block's ``forward`` targets and ``cache`` caps are applied, at start and on each
    change when it has ``reload``; a Corefile that does not parse, or none, fails the
    container with CoreDNS's error line in its log (a broken edit is logged and not applied).
    The rest of the Corefile (``kubernetes`` zones and options, other blocks) is read for
    errors only: the cluster zone is always served as EKS's default Corefile has it."""

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
        self._netmap = netmap
        self._resolver = resolver
        self._inputs: ApiInputs | None = None
        self._reload_on_change = False
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
        except (NodeCacheError, CorefileError) as error:
            self.placement.log(f"[FATAL] {error}")
            await self.stop()
            raise
        except BaseException:
            await self.stop()
            raise

    def _configure(self, text: str, conf: str) -> None:
        """Apply the Corefile ``text`` (CorefileError when CoreDNS would refuse it)."""
        servers = zone_servers(parse(text, COREDNS_PLUGINS, conf), conf)
        root = next((s for s in servers if s.zone == "." and s.port == 53), None)
        self.server.configure(
            root.forward if root else None,
            root.cache if root else None,
            netmap_lookup(self._netmap, self._resolver.ip),
        )
        self._reload_on_change = any(server.reload for server in servers)

    async def _read_corefile(self) -> None:
        container = self.placement.container(COREDNS_IMAGE)
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        conf = next((w for f, w in itertools.pairwise(words) if f == "-conf"), "Corefile")
        source = config_source(self.placement.pod, container, conf)
        self._inputs = ApiInputs(self._client_factory())
        text = await self._inputs.corefile(source)
        if text is None:
            raise NodeCacheError(f"open {conf}: no such file or directory")
        self._configure(text, conf)

        async def reload(changed: str | None) -> None:
            if not self._reload_on_change:
                return
            try:
                if changed is None:
                    raise NodeCacheError(f"open {conf}: no such file or directory")
                self._configure(changed, conf)
                self.placement.log("[INFO] Reloading")
            except (NodeCacheError, CorefileError) as error:
                self.placement.log(f"[ERROR] Restart failed: {error}")

        self._inputs.follow(reload)

    async def _start(self) -> None:
        await self._read_corefile()
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
        meta = self.placement.pod.get("metadata") or {}
        self._published.publish(pod_ip, 53, address)
        self._published.publish(pod_ip, HEALTH_PORT, health)
        self._published.publish(pod_ip, READY_PORT, ready)
        self._kube_dns.add(self._pod, address, dict(meta.get("labels") or {}))

    async def _mark_synced(self, feeder: RecordsFeeder) -> None:
        with contextlib.suppress(TimeoutError):
            await feeder.synced(LATE_SYNC_WAIT)
            self._synced = True

    async def stop(self) -> None:
        if self._inputs is not None:
            await self._inputs.close()
            self._inputs = None
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
    """One node-local-dns pod (host network): node-cache's start-up, the node's cache as its
    Corefile says, and what the node sees of it.

    At start: the container's args, the ``-upstreamsvc`` Service, the base Corefile from the
    ConfigMap volume, rendered and parsed; anything node-cache or CoreDNS would refuse is
    logged to the container's log and raised, so the kubelet restarts it (crash loop, never
    Ready). Then each change of the ConfigMap is reloaded when the Corefile has ``reload``;
    a new Corefile that does not parse is logged and the running one kept, as the plugin does.
    """

    def __init__(
        self,
        placement: PodPlacement,
        settings: TwinSettings,
        netmap: Netmap,
        resolver: VpcResolver,
        kube_dns: _KubeDnsService,
        inputs: Callable[[], NodeCacheInputs],
    ) -> None:
        self.placement = placement
        self._settings = settings
        self._network = settings.network
        self._netmap = netmap
        self._resolver = resolver
        self._resolver_lease = _Lease(resolver)
        self._kube_dns = kube_dns
        self._new_inputs = inputs
        self._inputs: NodeCacheInputs | None = None
        self._container = placement.container(NODELOCAL_IMAGE)
        self._delay = SLOW_CACHE_DELAY if settings.has_fault("dns-slow-cache") else 0.0
        self._args: NodeCacheArgs | None = None
        self._cluster_dns_ip: str | None = None
        self._servers: list[ZoneServer] = []
        self.cache: NodeLocalCache | None = None
        self._published = _Publications(netmap)
        self._dead_ends: list[socket.socket] = []
        self._reloading = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._start()
        except (NodeCacheError, CorefileError) as error:
            self.placement.log(f"[FATAL] {error}")
            await self.stop()
            raise
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        argv = [*(self._container.get("command") or [])[1:], *(self._container.get("args") or [])]
        args = self._args = parse_args(argv)
        source = config_source(self.placement.pod, self._container, args.basecorefile)
        self._inputs = self._new_inputs()
        upstream = await self._inputs.upstream(args.upstreamsvc)
        if upstream is None:
            self.placement.log(
                f"[WARNING] Unable to lookup IP address of Upstream service {args.upstreamsvc}"
            )
        else:
            self._cluster_dns_ip = upstream.cluster_ip
            self._kube_dns.route(upstream.cluster_ip, upstream.selector)
        base = await self._inputs.corefile(source)
        if base is None:
            raise NodeCacheError(
                f"Failed to read node-cache coreFile {args.basecorefile}: ConfigMap "
                f"{NAMESPACE}/{source.configmap} has no key {source.key}"
            )
        servers = self._servers_of(base)
        await self._resolver_lease.take()
        await self._serve(servers)
        self._inputs.follow(self._reload)

    def _servers_of(self, base: str) -> list[ZoneServer]:
        assert self._args is not None
        return node_cache_servers(render(base, self._args, self._cluster_dns_ip), self._args.conf)

    async def _reload(self, base: str | None) -> None:
        async with self._reloading:
            if not any(server.reload for server in self._servers):
                return
            if base is None:
                self.placement.log("[ERROR] Restart failed: the base Corefile is gone")
                return
            try:
                servers = self._servers_of(base)
            except CorefileError as error:
                self.placement.log(f"[ERROR] Restart failed: {error}")
                return
            if servers != self._servers:
                self.placement.log("[INFO] Reloading")
                try:
                    await self._serve(servers)
                except NodeCacheError as error:
                    self.placement.log(f"[ERROR] Restart failed: {error}")

    def _intercepted(self, address: str) -> bool:
        """Whether the node's traffic to a ``-localip`` address reaches the node itself: the
        link-local address always (the nodelocaldns interface), a Service IP only with the
        NOTRACK rules (``-setupiptables``), else kube-proxy still sends it on to CoreDNS."""
        assert self._args is not None
        service = ipaddress.ip_address(address) in ipaddress.ip_network(self._network.service_cidr)
        if not service:
            return True
        return self._args.setupiptables and not self._settings.has_fault("dns-bypass-cache")

    async def _serve(self, servers: list[ZoneServer]) -> None:
        """Start a cache for ``servers`` and publish it, then stop the one it replaces."""
        assert self._args is not None
        node, node_ip = self.placement.node_name, self.placement.node_ip
        host_addresses = [*self._args.localip, node_ip]
        wanted: list[str] = []
        for server in (s for s in servers if s.port == 53):
            for address in server.bind or host_addresses:
                if address not in host_addresses and address != "127.0.0.1":
                    raise NodeCacheError(
                        f"listen tcp {address}:53: bind: cannot assign requested address"
                    )
                if address not in wanted and address != "127.0.0.1":
                    wanted.append(address)
        previous = self.cache
        cache = NodeLocalCache(
            wanted,
            servers,
            netmap_lookup(self._netmap, self._resolver.ip),
            delay=self._delay,
            metrics=previous.metrics if previous is not None else None,
            log_line=self.placement.log,
        )
        await cache.start()
        published = _Publications(self._netmap)
        dead_ends: list[socket.socket] = []
        for address in self._args.localip:
            if not self._intercepted(address):
                continue
            if address in cache.listeners:
                published.publish(address, 53, cache.listeners[address], node=node)
            else:  # on the node's interface, but nothing listens there
                dead_end = _dead_end()
                dead_ends.append(dead_end)
                published.publish(address, 53, dead_end.getsockname(), node=node)
        if node_ip in cache.listeners:
            published.publish(node_ip, 53, cache.listeners[node_ip], node=node)
        local_ip = self._network.nodelocal_ip
        for port, target in (
            *((_port(s.prometheus), cache.metrics_address) for s in servers if s.prometheus),
            *((_port(s.health), cache.health_address) for s in servers if s.health),
        ):
            published.publish(local_ip, port, target, node=node)
            published.publish(node_ip, port, target, node=node)
            published.publish(node_ip, port, target)
        self._published.withdraw_all()
        for old in self._dead_ends:
            old.close()
        self._published, self._dead_ends = published, dead_ends
        self.cache, self._servers = cache, servers
        if previous is not None:
            await previous.stop()

    async def stop(self) -> None:
        self._published.withdraw_all()
        for dead_end in self._dead_ends:
            dead_end.close()
        self._dead_ends = []
        if self.cache is not None:
            await self.cache.stop()
        if self._inputs is not None:
            await self._inputs.close()
            self._inputs = None
        await self._resolver_lease.give_back()


def _port(address: str | None) -> int:
    return int(str(address).rpartition(":")[2])


def _dead_end() -> socket.socket:
    """A UDP port on loopback that takes datagrams and never answers."""
    dead_end = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_end.bind(("127.0.0.1", 0))
    return dead_end


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
    nodecache_inputs: Callable[[], NodeCacheInputs] | None = None,
) -> None:
    """Register the CoreDNS and node-local-dns runtimes (and the VPC resolver they share).
    The caches read their inputs through the API (``nodecache_inputs`` replaces that in
    tests of the cache alone)."""
    kube_dns = _KubeDnsService(netmap, settings.network.kube_dns_ip)
    resolver = VpcResolver(settings.network, netmap)
    registry.register(
        COREDNS_IMAGE,
        lambda placement: CoreDnsRuntime(
            placement, settings, netmap, client_factory, kube_dns, resolver
        ),
    )
    new_inputs = nodecache_inputs or (lambda: ApiInputs(client_factory()))
    registry.register(
        NODELOCAL_IMAGE,
        lambda placement: NodeLocalDnsRuntime(
            placement, settings, netmap, resolver, kube_dns, new_inputs
        ),
    )
