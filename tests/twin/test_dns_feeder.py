"""CoreDNS pods of the twin against the twin's real API server.

Objects are created with the official ``kubernetes`` client; the CoreDNS runtime's informers
(RecordsFeeder, through the twin's async client) pick them up, and dnspython asks the server
over UDP where the netmap says the pod's address listens.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rcode
import kubernetes
import pytest

from clustergate.twin.addons import COREDNS_IMAGE, NODELOCAL_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.dns import register_dns_addons
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings
from tests.loop_thread import LoopThread

T = TypeVar("T")
KUBE_DNS = "10.100.0.10"


class Cluster:
    def __init__(self, loop: LoopThread, api: ApiServer, settings: TwinSettings) -> None:
        self.loop = loop
        self.api = api
        self.netmap = api_netmap = Netmap()
        self.registry = AddonRegistry()
        register_dns_addons(self.registry, settings, api_netmap, self.client)
        configuration = kubernetes.client.Configuration()
        configuration.host = api.url
        configuration.ssl_ca_cert = api.ca_pem_path
        configuration.api_key = {"authorization": f"Bearer {api.admin_token}"}
        self.core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))

    def client(self) -> KubeClient:
        return KubeClient(self.api.url, self.api.ca_pem_path, self.api.admin_token)

    def run_pod(self, image: str, name: str, node: str, node_ip: str, pod_ip: str) -> Any:
        pod = {"metadata": {"namespace": "kube-system", "name": name}, "spec": {"nodeName": node}}
        factory = self.registry.factory_for(image)
        assert factory is not None, f"no add-on runtime registered for {image}"
        runtime = factory(PodPlacement(pod, node, node_ip, pod_ip))
        self.loop.run(runtime.start())
        return runtime


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def cluster(loop: LoopThread, tmp_path: Path) -> Iterator[Cluster]:
    settings = TwinSettings(state_dir=str(tmp_path))
    api = ApiServer(settings, Netmap(), KubeletHub())
    loop.run(api.start())
    cluster = Cluster(loop, api, settings)
    cluster.core.create_namespace({"metadata": {"name": "shop"}})
    yield cluster
    loop.run(api.stop())


def wait_for(what: str, probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 5) -> T:
    """Poll ``probe`` until ``done`` says yes; fail naming what was awaited and last seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if done(seen):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}; last seen: {seen}")
        time.sleep(0.05)


def lookup(server: tuple[str, int] | None, name: str) -> tuple[str, list[str]]:
    assert server is not None, f"nothing listens for DNS where {name} was to be asked"
    response = dns.query.udp(
        dns.message.make_query(name, "A"), server[0], port=server[1], timeout=3
    )
    ips = sorted(r.address for rrset in response.answer for r in rrset)
    return dns.rcode.to_text(response.rcode()), ips


def test_coredns_pod_follows_services_and_endpoints(cluster: Cluster) -> None:
    runtime = cluster.run_pod(COREDNS_IMAGE, "coredns-a", "node-a", "10.0.0.10", "10.0.128.2")
    try:
        server = cluster.netmap.resolve("10.0.128.2", 53)
        ready = cluster.netmap.resolve("10.0.128.2", 8181)
        with urllib.request.urlopen(f"http://{ready[0]}:{ready[1]}/ready", timeout=5) as page:
            assert page.status == 200

        created = cluster.core.create_namespaced_service(
            "shop", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        )
        name = "web.shop.svc.cluster.local"
        wanted = ("NOERROR", [created.spec.cluster_ip])
        wait_for(
            f"{name} -> {created.spec.cluster_ip}", lambda: lookup(server, name), wanted.__eq__
        )

        cluster.core.create_namespaced_service(
            "shop",
            {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}},
        )
        # No controllers run here: the slice is what the EndpointSlice controller would write.
        kubernetes.client.DiscoveryV1Api(cluster.core.api_client).create_namespaced_endpoint_slice(
            "shop",
            {
                "metadata": {"name": "db-x1", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.0.128.30"], "conditions": {"ready": True}},
                    {"addresses": ["10.0.128.31"]},
                    {"addresses": ["10.0.128.32"], "conditions": {"ready": False}},
                ],
                "ports": [{"port": 5432}],
            },
        )
        headless = "db.shop.svc.cluster.local"
        wanted = ("NOERROR", ["10.0.128.30", "10.0.128.31"])
        wait_for(f"{headless} -> endpoints", lambda: lookup(server, headless), wanted.__eq__)

        # The answer is not decoded: the twin's API server answers this DELETE with a Status.
        cluster.core.delete_namespaced_service("web", "shop", _preload_content=False)
        wait_for(f"{name} gone", lambda: lookup(server, name), ("NXDOMAIN", []).__eq__)
    finally:
        cluster.loop.run(runtime.stop())
    assert cluster.netmap.resolve("10.0.128.2", 53) is None
    assert cluster.netmap.resolve(KUBE_DNS, 53) is None


def test_kube_dns_address_follows_running_coredns_pods(cluster: Cluster) -> None:
    created = cluster.core.create_namespaced_service(
        "shop", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    first = cluster.run_pod(COREDNS_IMAGE, "coredns-a", "node-a", "10.0.0.10", "10.0.128.2")
    second = cluster.run_pod(COREDNS_IMAGE, "coredns-b", "node-b", "10.0.0.11", "10.0.128.3")
    netmap = cluster.netmap
    assert netmap.resolve(KUBE_DNS, 53) == netmap.resolve("10.0.128.2", 53)
    cluster.loop.run(first.stop())
    assert netmap.resolve(KUBE_DNS, 53) == netmap.resolve("10.0.128.3", 53)
    name = "web.shop.svc.cluster.local"
    wanted = ("NOERROR", [created.spec.cluster_ip])
    assert lookup(netmap.resolve(KUBE_DNS, 53), name) == wanted
    cluster.loop.run(second.stop())
    assert netmap.resolve(KUBE_DNS, 53) is None


def test_node_cache_serves_pods_of_its_node_from_coredns(cluster: Cluster) -> None:
    """A pod on node-a asks the kube-dns IP; the node's cache answers from CoreDNS and counts
    it. A pod on node-b (no cache there) reaches CoreDNS directly."""
    coredns = cluster.run_pod(COREDNS_IMAGE, "coredns-a", "node-b", "10.0.0.11", "10.0.128.2")
    cache = cluster.run_pod(NODELOCAL_IMAGE, "node-local-dns-a", "node-a", "10.0.0.10", "10.0.0.10")
    try:
        created = cluster.core.create_namespaced_service(
            "shop", {"metadata": {"name": "api"}, "spec": {"ports": [{"port": 80}]}}
        )
        name = "api.shop.svc.cluster.local"
        on_node_a = cluster.netmap.resolve(KUBE_DNS, 53, "node-a")
        on_node_b = cluster.netmap.resolve(KUBE_DNS, 53, "node-b")
        assert on_node_b == cluster.netmap.resolve("10.0.128.2", 53)
        assert on_node_a != on_node_b
        wanted = ("NOERROR", [created.spec.cluster_ip])
        wait_for(f"{name} via node-a's cache", lambda: lookup(on_node_a, name), wanted.__eq__)
        assert lookup(on_node_a, "sts.us-west-2.amazonaws.com") == ("NOERROR", ["52.94.210.10"])
        metrics = cluster.netmap.resolve("10.0.0.10", 9253)
        with urllib.request.urlopen(f"http://{metrics[0]}:{metrics[1]}/metrics", timeout=5) as page:
            text = page.read().decode()
        assert (
            'coredns_dns_requests_total{family="1",proto="udp",server="dns://10.100.0.10:53"'
            in text
        )
    finally:
        cluster.loop.run(cache.stop())
        cluster.loop.run(coredns.stop())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{metrics[0]}:{metrics[1]}/metrics", timeout=2)
