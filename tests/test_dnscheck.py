"""The DNS check's pure logic: which nodes, which cache pods, which mode, what the counters
prove, and the latency verdicts."""

from __future__ import annotations

import collections

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from clustergate import dnscheck
from clustergate.config import DnsSlo
from clustergate.dnscheck import CachePod, CounterDelta, DnsTarget, NodePlace, NodeReport


def node(
    name: str,
    group: str = "ng-a",
    zone: str = "us-west-2a",
    ready: bool = True,
    cordoned: bool = False,
    fargate: bool = False,
    taint: bool = False,
) -> client.V1Node:
    labels = {"eks.amazonaws.com/nodegroup": group, dnscheck.ZONE_LABEL: zone}
    if fargate:
        labels[dnscheck.COMPUTE_TYPE_LABEL] = "fargate"
    taints = [client.V1Taint(key="dedicated", value="batch", effect="NoSchedule")]
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(unschedulable=cordoned, taints=taints if taint else None),
        status=client.V1NodeStatus(
            conditions=[client.V1NodeCondition(type="Ready", status=str(ready))]
        ),
    )


def test_cache_nodes_keep_tainted_nodes_and_drop_unusable_ones() -> None:
    listed = [
        node("n1"),
        node("n2", taint=True),
        node("n3", ready=False),
        node("n4", cordoned=True),
        node("n5", fargate=True),
    ]
    assert [place.name for place in dnscheck.cache_nodes(listed)] == ["n1", "n2"]


def places(count: int, group: str, zone: str) -> list[NodePlace]:
    return [NodePlace(f"{group}-{zone}-{i}", group, zone) for i in range(count)]


def test_sampling_zero_takes_every_node() -> None:
    every = places(3, "a", "z1") + places(2, "b", "z2")
    assert dnscheck.sample_nodes(every, 0, "run") == sorted(every, key=lambda p: p.name)


def test_sampling_takes_n_per_group_and_zone_reproducibly() -> None:
    every = places(5, "a", "z1") + places(5, "a", "z2") + places(1, "b", "z1")
    chosen = dnscheck.sample_nodes(every, 2, "cg-run-1")
    assert collections.Counter((p.group, p.zone) for p in chosen) == {
        ("a", "z1"): 2,
        ("a", "z2"): 2,
        ("b", "z1"): 1,
    }
    assert chosen == dnscheck.sample_nodes(list(reversed(every)), 2, "cg-run-1")
    seeds = {tuple(p.name for p in dnscheck.sample_nodes(every, 2, f"run-{i}")) for i in range(20)}
    assert len(seeds) > 1


def pod(name: str, node_name: str, ready: bool, uid: str = "", deleting: bool = False):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            uid=uid or name,
            deletion_timestamp="2025-01-01T00:00:00Z" if deleting else None,
        ),
        spec=client.V1PodSpec(node_name=node_name, containers=[]),
        status=client.V1PodStatus(
            phase="Running" if ready else "Pending",
            conditions=[client.V1PodCondition(type="Ready", status=str(ready))],
        ),
    )


def test_nodes_without_a_ready_cache_are_named() -> None:
    pods = dnscheck.cache_pods(
        [
            pod("nld-1", "n1", True),
            pod("nld-2", "n2", False),
            pod("nld-3-old", "n3", True, deleting=True),
            pod("nld-4a", "n4", False),
            pod("nld-4b", "n4", True),
        ]
    )
    assert pods["n4"].name == "nld-4b"
    wanted = [NodePlace(n, "ng", "z") for n in ("n1", "n2", "n3", "n4")]
    assert dnscheck.missing_caches(wanted, pods) == [
        "node n2 (ng, z): node-local-dns pod nld-2 (Pending, not ready)",
        "node n3 (ng, z): no node-local-dns pod",
    ]


def daemonset(args: list[str]) -> client.V1DaemonSet:
    container = client.V1Container(name="node-cache", args=args)
    return client.V1DaemonSet(
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(),
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[container])),
        )
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-localip", "169.254.20.10,10.100.0.10", "-conf", "/etc/Corefile"],
        ["-localip=169.254.20.10,10.100.0.10"],
    ],
)
def test_listen_addresses_from_either_argument_form(args: list[str]) -> None:
    assert dnscheck.listen_addresses(daemonset(args)) == ["169.254.20.10", "10.100.0.10"]


def test_binding_problems_per_mode() -> None:
    both = ["169.254.20.10", "10.100.0.10"]
    link_local = ["169.254.20.10"]
    assert dnscheck.binding_problems("iptables", "10.100.0.10", "169.254.20.10", both) == []
    assert dnscheck.binding_problems("ipvs", "10.100.0.10", "169.254.20.10", link_local) == []
    (problem,) = dnscheck.binding_problems("iptables", "10.100.0.10", "169.254.20.10", link_local)
    assert "not the kube-dns Service IP 10.100.0.10" in problem
    assert len(dnscheck.binding_problems("ipvs", "10.100.0.10", "169.254.20.10", [])) == 1
    assert (
        dnscheck.expected_cluster_dns("iptables", "10.100.0.10", "169.254.20.10") == "10.100.0.10"
    )
    assert dnscheck.expected_cluster_dns("ipvs", "10.100.0.10", "169.254.20.10") == "169.254.20.10"


def exposition(a: float, b: float, hits: float) -> str:
    """A node-local-dns scrape, written by prometheus_client as CoreDNS writes it."""
    registry = CollectorRegistry()
    requests = Counter(
        "coredns_dns_requests", "DNS requests.", ["server", "zone", "type"], registry=registry
    )
    requests.labels("dns://169.254.20.10:53", ".", "A").inc(a)
    requests.labels("dns://10.100.0.10:53", "cluster.local.", "A").inc(b)
    cache_hits = Counter(
        "coredns_cache_hits", "Cache hits.", ["server", "type", "zones"], registry=registry
    )
    cache_hits.labels("dns://10.100.0.10:53", "success", "cluster.local.").inc(hits)
    cache_requests = Counter(
        "coredns_cache_requests", "Cache requests.", ["server", "zones"], registry=registry
    )
    cache_requests.labels("dns://10.100.0.10:53", "cluster.local.").inc(b)
    duration = Histogram(
        "coredns_dns_request_duration_seconds", "Durations.", ["server"], registry=registry
    )
    duration.labels("dns://10.100.0.10:53").observe(0.001)
    return generate_latest(registry).decode()


def test_counters_are_summed_over_servers_and_zones() -> None:
    before = dnscheck.parse_counters(exposition(a=3, b=4, hits=1))
    after = dnscheck.parse_counters(exposition(a=13, b=44, hits=31))
    assert before[dnscheck.REQUESTS] == 7
    assert CounterDelta.between(before, after) == CounterDelta(50, 40, 30)


def test_missing_cache_counters_are_none_not_zero() -> None:
    only = "# TYPE coredns_dns_requests_total counter\ncoredns_dns_requests_total 5\n"
    assert CounterDelta.between(
        dnscheck.parse_counters(only), dnscheck.parse_counters(only)
    ) == CounterDelta(0, None, None)


def test_counters_first_seen_after_the_probe_count_from_zero() -> None:
    after = dnscheck.parse_counters(exposition(a=3, b=4, hits=1))
    assert CounterDelta.between({}, after) == CounterDelta(7, 4, 1)


def report(answered: int, delta: CounterDelta | None, error: str | None = None) -> NodeReport:
    names = [{"name": "x", "latencies_ms": [1.0] * answered, "failed": 0, "answers": []}]
    cache = CachePod("node-local-dns-abc", "n1", "u", "Running", True)
    return NodeReport(
        NodePlace("n1", "ng", "z"), cache, delta=delta, metrics_error=error, names=names
    )


def test_counters_must_rise_by_the_answered_queries() -> None:
    assert dnscheck.cache_problem(report(40, CounterDelta(40, 40, 30))) is None
    assert dnscheck.cache_problem(report(40, CounterDelta(120, None, None))) is None
    problem = dnscheck.cache_problem(report(40, CounterDelta(0, 0, 0)))
    assert problem is not None
    assert "rose by 0 while the probe had 40 queries answered" in problem
    assert "node-local-dns-abc" in problem
    assert dnscheck.cache_problem(report(40, None, "no node-local-dns pod on the node")) == (
        "no node-local-dns pod on the node"
    )


def test_answers_are_checked_against_expected_addresses() -> None:
    names = [
        {"name": "svc", "answers": ["10.100.0.7"], "failed": 0, "failures": []},
        {"name": "kubernetes.default", "answers": ["10.100.0.9"], "failed": 0, "failures": []},
        {"name": "example.com", "answers": [], "failed": 2, "failures": ["NXDOMAIN: x"]},
    ]
    targets = [
        DnsTarget("svc", "10.100.0.7"),
        DnsTarget("kubernetes.default", "10.100.0.1"),
        DnsTarget("example.com"),
    ]
    assert dnscheck.answer_problems(names, targets) == [
        "kubernetes.default resolved to ['10.100.0.9'], expected 10.100.0.1",
        "example.com: 2 of the queries failed (NXDOMAIN: x)",
    ]


def test_latency_verdict_against_the_slo() -> None:
    slo = DnsSlo(p50_ms=10, p99_ms=100)
    fast = dnscheck.latency_verdict([1.0] * 99 + [50.0], slo)
    assert fast.problems == ()
    assert fast.percentiles.p50 == 1.0
    slow = dnscheck.latency_verdict([200.0] * 100, slo)
    assert slow.problems == ("p50 200.0 ms > SLO 10 ms", "p99 200.0 ms > SLO 100 ms")
    tail = dnscheck.latency_verdict([1.0] * 90 + [500.0] * 10, slo)
    assert tail.problems == ("p99 500.0 ms > SLO 100 ms",)
    assert dnscheck.latency_verdict([], slo).problems == ("no query was answered",)


PLUGINS_PAGE = """\
# TYPE coredns_plugin_enabled gauge
coredns_plugin_enabled{name="cache",server="dns://169.254.20.10:53",view="",zone="."} 1
coredns_plugin_enabled{name="forward",server="dns://169.254.20.10:53",view="",zone="."} 1
coredns_plugin_enabled{name="cache",server="dns://10.100.0.10:53",view="",zone="."} 1
# TYPE coredns_proxy_healthcheck_failures_total counter
coredns_proxy_healthcheck_failures_total{proxy_name="forward",to="10.100.99.99:53"} 7
"""


def test_served_addresses_and_upstream_failures_come_from_the_metrics() -> None:
    assert dnscheck.served_addresses(PLUGINS_PAGE) == ["10.100.0.10", "169.254.20.10"]
    failures = dnscheck.labelled(PLUGINS_PAGE, dnscheck.UPSTREAM_FAILURES, "to")
    assert failures == {"10.100.99.99:53": 7}


SERVED = [
    ("iptables", ["10.100.0.10", "169.254.20.10"], []),
    ("iptables", ["169.254.20.10"], ["not 10.100.0.10"]),
    ("iptables", ["10.100.0.10"], ["not 169.254.20.10"]),
    ("ipvs", ["169.254.20.10"], []),
    ("iptables", [], []),  # metrics unreadable: said by another check
]


@pytest.mark.parametrize(("mode", "served", "wanted"), SERVED)
def test_addresses_the_corefile_does_not_bind_are_named(
    mode: str, served: list[str], wanted: list[str]
) -> None:
    problems = dnscheck.served_problems(mode, "10.100.0.10", "169.254.20.10", served)
    assert len(problems) == len(wanted)
    for problem, fragment in zip(problems, wanted, strict=True):
        assert fragment in problem
        assert "`bind`" in problem
        assert "configmap node-local-dns" in problem


def test_failed_upstreams_are_named_against_kube_dns_upstream() -> None:
    failing = report(0, CounterDelta(10, 10, 0))
    assert dnscheck.upstream_problem(failing, "10.100.0.2") is None
    failing.upstream_failures = {"10.100.99.99:53": 12}
    problem = dnscheck.upstream_problem(failing, "10.100.0.2")
    assert problem is not None
    assert "kube-system/node-local-dns-abc forwarded the queries to 10.100.99.99:53" in problem
    assert "kube-dns-upstream is 10.100.0.2:53" in problem
    assert "`forward`" in problem


def test_a_crash_looping_cache_is_named_with_its_last_words() -> None:
    looping = CachePod("nld-9", "n9", "u", "Running", False, 4, "CrashLoopBackOff")
    said = {"nld-9": "[FATAL] /etc/Corefile:10 - Error during parsing: Unknown directive 'x'"}
    (line,) = dnscheck.missing_caches([NodePlace("n9", "ng", "z")], {"n9": looping}, said)
    assert line == (
        "node n9 (ng, z): node-local-dns pod nld-9 (Running, not ready, CrashLoopBackOff, "
        "4 restarts); its last log line: [FATAL] /etc/Corefile:10 - Error during parsing: "
        "Unknown directive 'x'"
    )
