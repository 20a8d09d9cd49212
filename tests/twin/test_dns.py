"""The twin's DNS over real UDP and TCP sockets, asked with dnspython.

Cluster records are fed to :class:`ClusterRecords` directly here, as the objects the API
server returns; the feeder that fills them from the API server is tested on its own
(test_dns_feeder.py). Everything else is the real thing: the cluster DNS server, the VPC
resolver (the twin's internet), node caches, their metrics and health endpoints over HTTP,
and the add-on runtimes with their netmap publications.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clustergate.twin import manifests
from clustergate.twin.addons import NODELOCAL_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.dns import (
    ClusterDns,
    ClusterRecords,
    ClusterZone,
    NodeLocalCache,
    VpcResolver,
    installed_corefile,
    register_dns_addons,
    vpc_resolver_ip,
)
from clustergate.twin.dns.corefile import CorefileError
from clustergate.twin.dns.node_cache_app import ConfigSource, NodeCacheArgs, render
from clustergate.twin.dns.nodecache import netmap_lookup
from clustergate.twin.dns.nodecache_inputs import UpstreamService
from clustergate.twin.dns.plugins import node_cache_servers
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Network, TwinSettings
from tests.loop_thread import LoopThread

NODELOCAL = "169.254.20.10"
KUBE_DNS = "10.100.0.10"
KUBE_DNS_UPSTREAM = "10.100.0.20"
ZONE = "cluster.local"


class FakeClock:
    """Monotonic time the test moves forward, so TTL expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def upstream_servers() -> list[Any]:
    """The upstream Corefile as installed in iptables mode and rendered by node-cache, with
    the kube-dns IP standing for kube-dns-upstream's."""
    args = NodeCacheArgs(localip=(NODELOCAL, KUBE_DNS))
    installed = installed_corefile(ZONE, NODELOCAL, KUBE_DNS, "iptables")
    return node_cache_servers(render(installed, args, KUBE_DNS))


@dataclass
class Twin:
    loop: LoopThread
    netmap: Netmap
    records: ClusterRecords
    cluster_dns: ClusterDns
    cache: NodeLocalCache
    clock: FakeClock

    def cache_address(self, bound: str = NODELOCAL) -> tuple[str, int]:
        return self.cache.listeners[bound]

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.cache.metrics_address)


def scrape(address: tuple[str, int]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page over HTTP, by (name, labels)."""
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=5) as page:
        text = page.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(metrics: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


def service(namespace: str, name: str, cluster_ip: str, *ports: tuple[str, int]) -> dict:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
        },
    }


def endpoints(namespace: str, name: str, ready: list[dict], not_ready: list[dict] = ()) -> dict:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "subsets": [
            {
                "addresses": ready,
                "notReadyAddresses": list(not_ready),
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    }


def ask(address: tuple[str, int], name: str, rdtype: str = "A", tcp: bool = False):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, address[0], port=address[1], timeout=3)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in response.answer for r in rrset if hasattr(r, "address"))


def soa_of(response: dns.message.Message) -> str:
    (soa,) = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    return soa.name.to_text()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def twin(loop: LoopThread) -> Iterator[Twin]:
    """VPC resolver + one cluster DNS (published as kube-dns) + one node cache."""
    netmap = Netmap()
    internet = VpcResolver(Network(), netmap)
    records = ClusterRecords()
    cluster_dns = ClusterDns(
        ClusterZone(records, ZONE, KUBE_DNS),
        upstream=lambda: netmap.resolve(internet.ip, 53),
    )
    clock = FakeClock()
    cache = NodeLocalCache(
        [NODELOCAL, KUBE_DNS], upstream_servers(), netmap_lookup(netmap, internet.ip), clock=clock
    )

    async def start() -> None:
        await internet.acquire()
        netmap.publish(KUBE_DNS, 53, await cluster_dns.start())
        await cache.start()

    async def stop() -> None:
        await cache.stop()
        await cluster_dns.stop()
        await internet.release()

    loop.run(start())
    records.upsert_service(service("shop", "web", "10.100.3.4", ("http", 80), ("grpc", 9090)))
    yield Twin(loop, netmap, records, cluster_dns, cache, clock)
    loop.run(stop())


# -- the cluster DNS --------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_cluster_ip_service_answers_its_cluster_ip(twin: Twin, tcp: bool) -> None:
    response = ask(twin.cluster_dns.address, "web.shop.svc.cluster.local", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert addresses(response) == ["10.100.3.4"]
    assert response.answer[0].ttl == 5


def test_resolver_with_search_path_finds_short_service_name(twin: Twin) -> None:
    """A pod's resolv.conf: search <ns>.svc.cluster.local ..., ndots:5."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(*twin.cluster_dns.address)]
    resolver.search = [dns.name.from_text(s) for s in ("shop.svc.cluster.local", "cluster.local")]
    resolver.ndots = 5
    answer = resolver.resolve("web", "A", search=True)
    assert answer.qname.to_text() == "web.shop.svc.cluster.local."
    assert [r.address for r in answer] == ["10.100.3.4"]


def test_aaaa_of_a_service_is_nodata_with_soa(twin: Twin) -> None:
    response = ask(twin.cluster_dns.address, "web.shop.svc.cluster.local", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert soa_of(response) == "cluster.local."


@pytest.mark.parametrize(
    "name",
    [
        "nope.shop.svc.cluster.local",
        "web.nowhere.svc.cluster.local",
        "nowhere.svc.cluster.local",
        "web.shop.cluster.local",
        "a.b.web.shop.svc.cluster.local",
    ],
)
def test_unknown_cluster_names_are_nxdomain_with_soa(twin: Twin, name: str) -> None:
    response = ask(twin.cluster_dns.address, name)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert soa_of(response) == "cluster.local."
    assert response.authority[0][0].minimum == 5


@pytest.mark.parametrize("name", ["svc.cluster.local", "shop.svc.cluster.local", "cluster.local"])
def test_parents_of_existing_names_are_nodata(twin: Twin, name: str) -> None:
    response = ask(twin.cluster_dns.address, name)
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert soa_of(response) == "cluster.local."


def test_headless_service_answers_ready_endpoints_only(twin: Twin) -> None:
    twin.records.upsert_service(service("shop", "db", "None", ("http", 8080)))
    name = "db.shop.svc.cluster.local"
    assert ask(twin.cluster_dns.address, name).rcode() == dns.rcode.NXDOMAIN
    twin.records.upsert_endpoints(
        endpoints(
            "shop",
            "db",
            [{"ip": "10.0.128.20"}, {"ip": "10.0.128.21"}],
            not_ready=[{"ip": "10.0.128.22"}],
        )
    )
    assert addresses(ask(twin.cluster_dns.address, name)) == ["10.0.128.20", "10.0.128.21"]
    twin.records.delete_endpoints("shop", "db")
    assert ask(twin.cluster_dns.address, name).rcode() == dns.rcode.NXDOMAIN


def test_srv_of_a_named_port(twin: Twin) -> None:
    response = ask(twin.cluster_dns.address, "_grpc._tcp.web.shop.svc.cluster.local", "SRV")
    (srv,) = response.answer[0]
    assert (srv.port, srv.target.to_text()) == (9090, "web.shop.svc.cluster.local.")
    assert [r.address for rrset in response.additional for r in rrset] == ["10.100.3.4"]
    missing = ask(twin.cluster_dns.address, "_metrics._tcp.web.shop.svc.cluster.local", "SRV")
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_headless_endpoint_hostnames_and_srv(twin: Twin) -> None:
    """``<hostname>.<subdomain>.<ns>.svc``: from the address's hostname, else from the pod whose
    spec.subdomain names the service; addresses without either get their dashed IP."""
    twin.records.upsert_service(service("shop", "kafka", "None", ("http", 8080)))
    twin.records.upsert_pod(
        {
            "metadata": {"namespace": "shop", "name": "kafka-1"},
            "spec": {"hostname": "kafka-1", "subdomain": "kafka"},
            "status": {"podIP": "10.0.128.31"},
        }
    )
    twin.records.upsert_endpoints(
        endpoints(
            "shop",
            "kafka",
            [
                {"ip": "10.0.128.30", "hostname": "kafka-0"},
                {"ip": "10.0.128.31", "targetRef": {"kind": "Pod", "name": "kafka-1"}},
                {"ip": "10.0.128.32"},
            ],
        )
    )
    server = twin.cluster_dns.address
    for host, ip in [
        ("kafka-0", "10.0.128.30"),
        ("kafka-1", "10.0.128.31"),
        ("10-0-128-32", "10.0.128.32"),
    ]:
        assert addresses(ask(server, f"{host}.kafka.shop.svc.cluster.local")) == [ip]
    srv = ask(server, "_http._tcp.kafka.shop.svc.cluster.local", "SRV")
    assert sorted(r.target.to_text() for r in srv.answer[0]) == [
        "10-0-128-32.kafka.shop.svc.cluster.local.",
        "kafka-0.kafka.shop.svc.cluster.local.",
        "kafka-1.kafka.shop.svc.cluster.local.",
    ]
    assert ask(server, "kafka-9.kafka.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_external_name_service_is_a_cname(twin: Twin) -> None:
    twin.records.upsert_service(
        {
            "metadata": {"namespace": "shop", "name": "bucket"},
            "spec": {"type": "ExternalName", "externalName": "s3.us-west-2.amazonaws.com"},
        }
    )
    response = ask(twin.cluster_dns.address, "bucket.shop.svc.cluster.local")
    assert response.answer[0].rdtype == dns.rdatatype.CNAME
    assert response.answer[0][0].target.to_text() == "s3.us-west-2.amazonaws.com."


def test_pod_names_answer_the_dashed_address(twin: Twin) -> None:
    response = ask(twin.cluster_dns.address, "10-0-128-40.shop.pod.cluster.local")
    assert addresses(response) == ["10.0.128.40"]
    bad = ask(twin.cluster_dns.address, "10-0-128.shop.pod.cluster.local")
    assert bad.rcode() == dns.rcode.NXDOMAIN


def test_pod_names_in_verified_mode_need_the_pod(twin: Twin) -> None:
    zone = ClusterZone(twin.records, ZONE, KUBE_DNS, pods="verified")
    query = dns.message.make_query("10-0-128-41.shop.pod.cluster.local", "A")
    assert zone.answer(query).rcode() == dns.rcode.NXDOMAIN
    twin.records.upsert_pod(
        {"metadata": {"namespace": "shop", "name": "p"}, "status": {"podIP": "10.0.128.41"}}
    )
    assert addresses(zone.answer(query)) == ["10.0.128.41"]


def test_ptr_of_service_and_endpoint_addresses(twin: Twin) -> None:
    twin.records.upsert_service(service("shop", "db", "None", ("http", 8080)))
    twin.records.upsert_endpoints(endpoints("shop", "db", [{"ip": "10.0.128.50"}]))
    server = twin.cluster_dns.address
    service_ptr = ask(server, "4.3.100.10.in-addr.arpa", "PTR")
    assert service_ptr.answer[0][0].target.to_text() == "web.shop.svc.cluster.local."
    endpoint_ptr = ask(server, dns.reversename.from_address("10.0.128.50").to_text(), "PTR")
    assert endpoint_ptr.answer[0][0].target.to_text() == "10-0-128-50.db.shop.svc.cluster.local."
    unknown = ask(server, "9.9.9.10.in-addr.arpa", "PTR")
    assert unknown.rcode() == dns.rcode.NXDOMAIN
    assert soa_of(unknown) == "."  # fell through to the upstream


def test_external_names_are_forwarded_to_the_vpc_resolver(twin: Twin) -> None:
    server = twin.cluster_dns.address
    assert addresses(ask(server, "sts.us-west-2.amazonaws.com")) == ["52.94.210.10"]
    assert addresses(ask(server, "example.com")) == ["93.184.215.14"]
    unknown = ask(server, "nothing-here.us-west-2.amazonaws.com")
    assert unknown.rcode() == dns.rcode.NXDOMAIN
    assert soa_of(unknown) == "amazonaws.com."
    assert soa_of(ask(server, "example.invalid")) == "."


def test_no_upstream_is_servfail(twin: Twin) -> None:
    twin.netmap.withdraw(vpc_resolver_ip(Network()), 53)
    assert ask(twin.cluster_dns.address, "example.com").rcode() == dns.rcode.SERVFAIL


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp(twin: Twin) -> None:
    ips = [f"10.0.{129 + i // 250}.{i % 250 + 1}" for i in range(120)]
    twin.records.upsert_service(service("shop", "big", "None", ("http", 8080)))
    twin.records.upsert_endpoints(endpoints("shop", "big", [{"ip": ip} for ip in ips]))
    name = "big.shop.svc.cluster.local"
    for server in (twin.cluster_dns.address, twin.cache_address()):
        over_udp = ask(server, name)
        assert over_udp.flags & dns.flags.TC
        assert len(addresses(over_udp)) < len(ips)
        over_tcp = ask(server, name, tcp=True)
        assert not over_tcp.flags & dns.flags.TC
        assert addresses(over_tcp) == sorted(ips)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(*twin.cache_address())]
    assert len(resolver.resolve(name, "A")) == len(ips)  # the stub retries over TCP itself


# -- the node cache ---------------------------------------------------------------------------


def test_cache_answers_repeats_from_cache_and_counts_them(twin: Twin) -> None:
    before = twin.metrics()
    server = "dns://169.254.20.10:53"
    for _ in range(3):
        assert addresses(ask(twin.cache_address(), "web.shop.svc.cluster.local")) == ["10.100.3.4"]
    assert ask(twin.cache_address(), "nope.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(twin.cache_address(), "nope.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    after = twin.metrics()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    zone = {"server": server, "zone": "cluster.local."}
    assert delta("coredns_dns_requests_total", proto="udp", family="1", type="A", **zone) == 5
    assert delta("coredns_cache_requests_total", server=server, zones="cluster.local.") == 5
    assert delta("coredns_cache_hits_total", server=server, type="success") == 2
    assert delta("coredns_cache_hits_total", server=server, type="denial") == 1
    assert delta("coredns_cache_misses_total", server=server) == 2
    assert delta("coredns_dns_responses_total", rcode="NOERROR", plugin="cache", **zone) == 2
    assert delta("coredns_dns_responses_total", rcode="NXDOMAIN", **zone) == 2
    assert delta("coredns_dns_request_duration_seconds_count", type="A", **zone) == 5
    entries = {"server": server, "zones": "cluster.local."}
    assert total(after, "coredns_cache_entries", type="success", **entries) == 1
    assert total(after, "coredns_cache_entries", type="denial", **entries) == 1


def test_queries_to_the_kube_dns_address_count_under_that_server(twin: Twin) -> None:
    before = twin.metrics()
    ask(twin.cache_address(KUBE_DNS), "example.com", tcp=True)
    after = twin.metrics()
    labels = {"server": "dns://10.100.0.10:53", "zone": ".", "proto": "tcp"}
    assert (
        total(after, "coredns_dns_requests_total", **labels)
        - total(before, "coredns_dns_requests_total", **labels)
        == 1
    )


def test_cached_answers_count_their_ttl_down_and_expire(twin: Twin) -> None:
    name = "web.shop.svc.cluster.local"
    first = ask(twin.cache_address(), name)
    assert first.answer[0].ttl == 5
    twin.records.upsert_service(service("shop", "web", "10.100.3.99", ("http", 80)))
    twin.clock.now += 3
    cached = ask(twin.cache_address(), name)
    assert (addresses(cached), cached.answer[0].ttl) == (["10.100.3.4"], 2)
    twin.clock.now += 2
    assert addresses(ask(twin.cache_address(), name)) == ["10.100.3.99"]


def test_external_answers_are_cached_30_s_at_most(twin: Twin) -> None:
    """The VPC resolver says 60 s; node-cache's ``cache 30`` caps it, also in the answer."""
    name = "s3.us-west-2.amazonaws.com"
    assert ask(twin.cache_address(), name).answer[0].ttl == 30
    twin.clock.now += 29
    assert ask(twin.cache_address(), name).answer[0].ttl == 1
    twin.clock.now += 1
    before = total(twin.metrics(), "coredns_cache_misses_total", zones=".")
    assert ask(twin.cache_address(), name).answer[0].ttl == 30
    assert total(twin.metrics(), "coredns_cache_misses_total", zones=".") == before + 1


def test_denials_are_cached_by_the_soa_and_capped(twin: Twin) -> None:
    cluster = ask(twin.cache_address(), "gone.shop.svc.cluster.local")
    assert cluster.authority[0].ttl == 5  # cluster.local: denial cap 5 s
    external = ask(twin.cache_address(), "gone.example.com")
    assert external.authority[0].ttl == 30  # example.com SOA minimum 3600, capped by cache 30
    twin.records.upsert_service(service("shop", "gone", "10.100.3.77"))
    twin.clock.now += 4
    assert ask(twin.cache_address(), "gone.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    twin.clock.now += 1
    assert addresses(ask(twin.cache_address(), "gone.shop.svc.cluster.local")) == ["10.100.3.77"]


def test_health_endpoint(twin: Twin) -> None:
    host, port = twin.cache.health_address
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as page:
        assert (page.status, page.read()) == (200, b"OK")


# -- the add-on runtimes ----------------------------------------------------------------------


def placement(node: str, node_ip: str, image: str, pod_ip: str | None = None) -> PodPlacement:
    pod = {
        "metadata": {"namespace": "kube-system", "name": f"{image.rsplit('/', 1)[-1]}-{node}"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]},
    }
    return PodPlacement(pod, node, node_ip, pod_ip or node_ip)


def cache_placement(
    settings: TwinSettings, node: str, node_ip: str, logged: list[str]
) -> PodPlacement:
    """A node-local-dns pod as the twin's DaemonSet makes it (args, ConfigMap volume)."""
    _, daemonset = next(o for o in manifests.nodelocal(settings) if o[0] == "apps/v1/daemonsets")
    template = daemonset["spec"]["template"]
    pod = {
        "metadata": {"namespace": "kube-system", "name": f"node-local-dns-{node}"},
        "spec": {**template["spec"], "nodeName": node},
    }
    return PodPlacement(pod, node, node_ip, node_ip, log=logged.append)


class StaticInputs:
    """The cache's inputs without an API server: the installed Corefile and the upstream
    Service as the twin creates them (the API-backed reading is tested with a whole twin, in
    test_kubelet_pods.py). ``change`` plays an edit of the ConfigMap."""

    def __init__(self, corefile: str) -> None:
        self.text = corefile
        self._changed: Any = None

    async def upstream(self, service: str) -> UpstreamService | None:
        return UpstreamService(KUBE_DNS_UPSTREAM, {"k8s-app": "kube-dns"})

    async def corefile(self, source: ConfigSource) -> str | None:
        assert source == ConfigSource("node-local-dns", "Corefile")
        return self.text

    def follow(self, changed: Any) -> None:
        self._changed = changed

    async def change(self, text: str) -> None:
        self.text = text
        await self._changed(text)

    async def close(self) -> None:
        pass


@dataclass
class World:
    registry: AddonRegistry
    netmap: Netmap
    settings: TwinSettings
    inputs: StaticInputs
    #: What the cache runtimes wrote to their container log.
    logged: list[str]


@pytest.fixture
def addon_world(loop: LoopThread, request: pytest.FixtureRequest) -> Iterator[World]:
    """Registered DNS add-ons and a cluster DNS published as kube-dns and kube-dns-upstream
    (the VPC resolver runs while a runtime does). Settings come from indirect parametrisation
    (default: healthy)."""
    settings = getattr(request, "param", TwinSettings(state_dir="unused"))
    network = settings.network
    netmap = Netmap()
    registry = AddonRegistry()
    installed = installed_corefile(
        network.cluster_domain, network.nodelocal_ip, network.kube_dns_ip, network.proxy_mode
    )
    inputs = StaticInputs(installed)
    register_dns_addons(
        registry, settings, netmap, client_factory=_no_client, nodecache_inputs=lambda: inputs
    )
    records = ClusterRecords()
    records.upsert_service(service("shop", "web", "10.100.3.4", ("http", 80)))
    cluster_dns = ClusterDns(
        ClusterZone(records),
        upstream=lambda: netmap.resolve(vpc_resolver_ip(settings.network), 53),
    )

    async def start() -> None:
        address = await cluster_dns.start()
        netmap.publish(KUBE_DNS, 53, address)
        netmap.publish(KUBE_DNS_UPSTREAM, 53, address)

    loop.run(start())
    yield World(registry, netmap, settings, inputs, [])
    loop.run(cluster_dns.stop())


def _no_client() -> Any:
    raise AssertionError("node-local-dns runtimes read their inputs through nodecache_inputs")


def with_settings(**changes: Any) -> Any:
    return pytest.mark.parametrize(
        "addon_world", [TwinSettings(state_dir="unused", **changes)], indirect=True
    )


def run_cache(loop: LoopThread, world: World, node: str, node_ip: str) -> Any:
    factory = world.registry.factory_for(NODELOCAL_IMAGE)
    assert factory is not None
    runtime = factory(cache_placement(world.settings, node, node_ip, world.logged))
    loop.run(runtime.start())
    return runtime


def test_node_cache_runtime_publishes_and_withdraws(loop: LoopThread, addon_world: World) -> None:
    netmap = addon_world.netmap
    kube_dns_global = netmap.resolve(KUBE_DNS, 53)
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    local = netmap.resolve(NODELOCAL, 53, "node-a")
    intercepted = netmap.resolve(KUBE_DNS, 53, "node-a")
    assert local is not None
    assert intercepted not in (None, kube_dns_global)
    assert netmap.resolve(NODELOCAL, 53, "node-b") is None  # node-b has no cache
    assert netmap.resolve(KUBE_DNS, 53, "node-b") == kube_dns_global
    metrics = netmap.resolve("10.0.0.10", 9253)  # globally, for the API server's pod proxy
    assert metrics is not None
    assert metrics == netmap.resolve("10.0.0.10", 9253, "node-a")
    health = netmap.resolve("10.0.0.10", 8080)
    with urllib.request.urlopen(f"http://{health[0]}:{health[1]}/health", timeout=5) as page:
        assert page.read() == b"OK"

    before = scrape(metrics)
    assert addresses(ask(intercepted, "web.shop.svc.cluster.local")) == ["10.100.3.4"]
    assert addresses(ask(local, "example.com")) == ["93.184.215.14"]
    after = scrape(metrics)
    assert (
        total(after, "coredns_cache_requests_total") - total(before, "coredns_cache_requests_total")
        == 2
    )

    assert netmap.resolve(vpc_resolver_ip(Network()), 53) is not None
    loop.run(runtime.stop())
    assert netmap.resolve(vpc_resolver_ip(Network()), 53) is None  # no runtime needs it now
    assert netmap.resolve(NODELOCAL, 53, "node-a") is None
    assert netmap.resolve(KUBE_DNS, 53, "node-a") == kube_dns_global
    assert netmap.resolve("10.0.0.10", 9253) is None
    assert netmap.resolve("10.0.0.10", 8080, "node-a") is None
    assert netmap.view("node-a")["addresses"] == netmap.view()["addresses"]


@with_settings(network=replace(Network(), proxy_mode="ipvs"))
def test_ipvs_mode_cache_answers_only_the_link_local_address(
    loop: LoopThread, addon_world: World
) -> None:
    netmap = addon_world.netmap
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    assert netmap.resolve(NODELOCAL, 53, "node-a") is not None
    assert netmap.resolve(KUBE_DNS, 53, "node-a") == netmap.resolve(KUBE_DNS, 53)
    loop.run(runtime.stop())


@with_settings(faults=frozenset({"dns-bypass-cache"}))
def test_fault_dns_bypass_cache(loop: LoopThread, addon_world: World) -> None:
    netmap = addon_world.netmap
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    metrics = netmap.resolve("10.0.0.10", 9253)
    pods_nameserver = netmap.resolve(KUBE_DNS, 53, "node-a")
    assert pods_nameserver == netmap.resolve(KUBE_DNS, 53)  # straight to CoreDNS
    before = scrape(metrics)
    assert addresses(ask(pods_nameserver, "web.shop.svc.cluster.local")) == ["10.100.3.4"]
    assert total(scrape(metrics), "coredns_dns_requests_total") == total(
        before, "coredns_dns_requests_total"
    )
    loop.run(runtime.stop())


@with_settings(faults=frozenset({"dns-slow-cache"}))
def test_fault_dns_slow_cache(loop: LoopThread, addon_world: World) -> None:
    netmap = addon_world.netmap
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    cache = netmap.resolve(NODELOCAL, 53, "node-a")
    ask(cache, "web.shop.svc.cluster.local")
    started = time.perf_counter()
    assert addresses(ask(cache, "web.shop.svc.cluster.local")) == ["10.100.3.4"]  # a cache hit
    assert time.perf_counter() - started >= 0.19

    async def five_at_once() -> float:
        begun = time.perf_counter()
        await asyncio.gather(
            *(
                dns.asyncquery.udp(
                    dns.message.make_query(f"{n}.shop.pod.cluster.local", "A"),
                    cache[0],
                    port=cache[1],
                    timeout=3,
                )
                for n in ("10-0-128-1", "10-0-128-2", "10-0-128-3", "10-0-128-4", "10-0-128-5")
            )
        )
        return time.perf_counter() - begun

    assert asyncio.run(five_at_once()) < 0.9  # delayed, not serialised
    loop.run(runtime.stop())


# -- the cache configured by its Corefile ---------------------------------------------------


def test_cache_serves_what_its_corefile_binds_and_says_so_in_its_metrics(
    loop: LoopThread, addon_world: World
) -> None:
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    metrics = scrape(addon_world.netmap.resolve("10.0.0.10", 9253))
    servers = {
        dict(labels)["server"]
        for (name, labels), _ in metrics.items()
        if name == "coredns_plugin_enabled" and dict(labels)["name"] == "forward"
    }
    assert servers == {f"dns://{NODELOCAL}:53", f"dns://{KUBE_DNS}:53"}
    loop.run(runtime.stop())


def test_unparsable_corefile_keeps_the_cache_from_starting(
    loop: LoopThread, addon_world: World
) -> None:
    addon_world.inputs.text = addon_world.inputs.text.replace("forward .", "forwrd .", 1)
    with pytest.raises(CorefileError, match="Unknown directive 'forwrd'"):
        run_cache(loop, addon_world, "node-a", "10.0.0.10")
    assert addon_world.logged[-1].startswith("[FATAL] /etc/Corefile:10 - Error during parsing")
    assert addon_world.netmap.resolve(NODELOCAL, 53, "node-a") is None
    assert addon_world.netmap.resolve("10.0.0.10", 9253) is None


def test_a_bind_address_left_out_answers_nothing_on_the_node(
    loop: LoopThread, addon_world: World
) -> None:
    addon_world.inputs.text = addon_world.inputs.text.replace(f" {KUBE_DNS}", "")
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    netmap = addon_world.netmap
    assert addresses(ask(netmap.resolve(NODELOCAL, 53, "node-a"), "example.com"))
    silent = netmap.resolve(KUBE_DNS, 53, "node-a")
    assert silent not in (None, netmap.resolve(KUBE_DNS, 53))
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(
            dns.message.make_query("example.com", "A"), silent[0], port=silent[1], timeout=0.3
        )
    loop.run(runtime.stop())


def test_an_edited_corefile_is_reloaded_and_a_broken_edit_is_not(
    loop: LoopThread, addon_world: World
) -> None:
    runtime = run_cache(loop, addon_world, "node-a", "10.0.0.10")
    netmap, inputs = addon_world.netmap, addon_world.inputs
    cache = netmap.resolve(KUBE_DNS, 53, "node-a")
    assert addresses(ask(cache, "web.shop.svc.cluster.local")) == ["10.100.3.4"]

    loop.run(inputs.change(inputs.text.replace("__PILLAR__CLUSTER__DNS__", "10.100.99.99", 1)))
    assert "[INFO] Reloading" in addon_world.logged
    cache = netmap.resolve(KUBE_DNS, 53, "node-a")
    assert ask(cache, "other.shop.svc.cluster.local").rcode() == dns.rcode.SERVFAIL
    metrics = scrape(netmap.resolve("10.0.0.10", 9253))
    assert total(metrics, "coredns_proxy_healthcheck_failures_total", to="10.100.99.99:53") == 1
    assert "10.100.99.99:53" in addon_world.logged[-1]
    assert total(metrics, "coredns_dns_requests_total") >= 2  # the counters outlive the reload

    loop.run(inputs.change(inputs.text.replace("cache 30", "cache 30 {", 1)))
    assert addon_world.logged[-1].startswith("[ERROR] Restart failed: /etc/Corefile:")
    assert netmap.resolve(KUBE_DNS, 53, "node-a") == cache  # the running config stays
    loop.run(runtime.stop())
