"""Pods resolve through NodeLocal DNSCache on every node, fast.

The cache must run, Ready, on every node that can run pods, in the mode the cluster's DNS
address says. Then, per node (all of them, or ``dns.sample_per_group_zone`` per node group and
zone), a probe pod pinned to the node resolves a Service of this run, ``kubernetes.default``,
a pod record and the configured external names; the node's cache counters, scraped before and
after, must have risen by at least the queries answered, and the latencies must meet the SLO.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate import dnscheck
from clustergate.config import ClusterConfig
from clustergate.dnscheck import DnsTarget, NodePlace, NodeReport
from clustergate.kube import Cluster
from clustergate.results import Recorder
from clustergate.runctx import RunContext

pytestmark = [pytest.mark.dns, pytest.mark.gate]

TARGET_SERVICE = "clustergate-dns-target"


def _targets(run: RunContext, cluster_config: ClusterConfig) -> list[DnsTarget]:
    """A Service created here, the API server's Service, a CoreDNS pod's record, and the
    external names; cluster names are relative, so the pod's search path completes them."""
    core = run.cluster.core()
    created = core.create_namespaced_service(
        run.namespace,
        client.V1Service(
            metadata=run.metadata(TARGET_SERVICE),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80, name="http")]),
        ),
    )
    kubernetes_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    coredns = [
        pod.status.pod_ip
        for pod in core.list_namespaced_pod(
            dnscheck.NAMESPACE, label_selector=f"k8s-app={dnscheck.KUBE_DNS}"
        ).items
        if pod.status.pod_ip and pod.status.phase == "Running"
    ]
    if not coredns:
        pytest.fail(f"no running k8s-app={dnscheck.KUBE_DNS} pod in kube-system", pytrace=False)
    pod_ip = sorted(coredns)[0]
    return [
        DnsTarget(TARGET_SERVICE, created.spec.cluster_ip),
        DnsTarget("kubernetes.default", kubernetes_ip),
        DnsTarget(f"{pod_ip.replace('.', '-')}.{dnscheck.NAMESPACE}.pod", pod_ip),
        *(DnsTarget(name) for name in cluster_config.dns.external_names),
    ]


@pytest.fixture(scope="module")
def targets(run: RunContext, cluster_config: ClusterConfig) -> list[DnsTarget]:
    return _targets(run, cluster_config)


@pytest.fixture(scope="module")
def probed(
    run: RunContext,
    cluster_config: ClusterConfig,
    cache_nodes: list[NodePlace],
    targets: list[DnsTarget],
) -> list[NodeReport]:
    dns = cluster_config.dns
    chosen = dnscheck.sample_nodes(cache_nodes, dns.sample_per_group_zone, run.run_id)
    return dnscheck.probe_nodes(
        run,
        cluster_config.probe.image,
        chosen,
        targets,
        dns.queries_per_name,
        cluster_config.timeouts.probe_s,
    )


def _unprobed(report: NodeReport) -> str | None:
    if report.probe_error:
        return f"{report.where}: the probe pod gave no result: {report.probe_error}"
    return None


def test_cache_runs_ready_on_every_node(cluster: Cluster, cache_nodes: list[NodePlace]) -> None:
    daemonsets = cluster.apps().list_namespaced_daemon_set(
        dnscheck.NAMESPACE, label_selector=dnscheck.CACHE_SELECTOR
    )
    assert daemonsets.items, (
        f"no DaemonSet labelled {dnscheck.CACHE_SELECTOR} in {dnscheck.NAMESPACE}: "
        "NodeLocal DNSCache is not installed"
    )
    pods = dnscheck.list_cache_pods(cluster)
    last_words = dnscheck.last_log_lines(cluster, pods.values())
    missing = dnscheck.missing_caches(cache_nodes, pods, last_words)
    assert not missing, (
        f"{len(missing)} of {len(cache_nodes)} node(s) lack a ready NodeLocal DNSCache pod; "
        "pods there resolve without a cache (check the DaemonSet's tolerations and "
        "nodeSelector, and `kubectl -n kube-system describe ds node-local-dns`; a cache that "
        "restarts says why in `kubectl -n kube-system logs POD --previous`, often its Corefile: "
        f"`{dnscheck.COREFILE_HINT}`):\n  " + "\n  ".join(missing)
    )


def test_kube_dns_upstream_service_selects_kube_dns(cluster: Cluster) -> None:
    core = cluster.core()
    try:
        upstream = core.read_namespaced_service(dnscheck.KUBE_DNS_UPSTREAM, dnscheck.NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise
        pytest.fail(
            f"Service {dnscheck.NAMESPACE}/{dnscheck.KUBE_DNS_UPSTREAM} does not exist: the "
            "caches have no upstream for cluster names",
            pytrace=False,
        )
    kube_dns = core.read_namespaced_service(dnscheck.KUBE_DNS, dnscheck.NAMESPACE)
    assert upstream.spec.selector == kube_dns.spec.selector, (
        f"Service {dnscheck.KUBE_DNS_UPSTREAM} selects {upstream.spec.selector}, but "
        f"{dnscheck.KUBE_DNS} selects {kube_dns.spec.selector}: the caches forward elsewhere"
    )


def test_cache_mode_matches_the_cluster_dns_address(
    cluster: Cluster,
    cluster_config: ClusterConfig,
    kube_dns_ip: str,
    probed: list[NodeReport],
) -> None:
    dns = cluster_config.dns
    expected = dnscheck.expected_cluster_dns(dns.mode, kube_dns_ip, dns.nodelocal_ip)
    daemonsets = cluster.apps().list_namespaced_daemon_set(
        dnscheck.NAMESPACE, label_selector=dnscheck.CACHE_SELECTOR
    )
    problems = [
        f"DaemonSet {daemonset.metadata.name}: {problem}"
        for daemonset in daemonsets.items
        for problem in dnscheck.binding_problems(
            dns.mode, kube_dns_ip, dns.nodelocal_ip, dnscheck.listen_addresses(daemonset)
        )
    ]
    # The probed nodes are every node, or dns.sample_per_group_zone of each node group and zone
    # on a big cluster: a kubelet's flags come from its node group's launch template.
    for report in probed:
        kubelet = dnscheck.kubelet_cluster_dns(cluster, report.place.name)
        if kubelet is not None and kubelet[:1] != [expected]:
            problems.append(f"node {report.place.name}: kubelet clusterDNS is {kubelet} (/configz)")
        if report.probe and report.nameservers[:1] != [expected]:
            problems.append(f"{report.where}: the pod's resolv.conf names {report.nameservers}")
        problems += [
            f"node {report.place.name}: {problem}"
            for problem in dnscheck.served_problems(
                dns.mode, kube_dns_ip, dns.nodelocal_ip, report.served
            )
        ]
    assert not problems, (
        f"{dns.mode} mode needs pods to use {expected} as their nameserver "
        f"({'the kube-dns IP, which the cache serves' if dns.mode == 'iptables' else 'the cache'}"
        f"):\n  " + "\n  ".join(problems)
    )


def test_names_resolve_on_every_probed_node(
    probed: list[NodeReport], targets: list[DnsTarget], kube_dns_upstream_ip: str | None
) -> None:
    problems = []
    for report in probed:
        unprobed = _unprobed(report)
        if unprobed:
            problems.append(unprobed)
            continue
        failed = dnscheck.answer_problems(report.names, targets)
        problems += [f"{report.where}: {p}" for p in failed]
        cause = dnscheck.upstream_problem(report, kube_dns_upstream_ip) if failed else None
        if cause:
            problems.append(f"{report.where}: {cause}")
    assert not problems, "names did not resolve as expected:\n  " + "\n  ".join(problems)


def test_queries_go_through_each_nodes_own_cache(
    probed: list[NodeReport], measure: Recorder
) -> None:
    problems = []
    for report in probed:
        unprobed = _unprobed(report)
        if unprobed:
            problems.append(unprobed)
            continue
        problem = dnscheck.cache_problem(report)
        if report.delta is not None:
            measure(
                "dns_cache_requests_delta",
                report.delta.requests,
                "requests",
                node=report.place.name,
                answered=report.answered,
            )
            if report.delta.cache_hits is not None:
                measure(
                    "dns_cache_hits_delta", report.delta.cache_hits, "hits", node=report.place.name
                )
        if problem:
            problems.append(f"{report.where}: {problem}")
    assert not problems, (
        "each node's NodeLocal DNSCache must see its pods' queries (its "
        f"{dnscheck.REQUESTS} must rise by at least the queries answered):\n  "
        + "\n  ".join(problems)
    )


def test_latency_meets_the_slo_on_every_probed_node(
    cluster_config: ClusterConfig, probed: list[NodeReport], measure: Recorder
) -> None:
    slo = cluster_config.dns.slo
    if slo is None:
        pytest.skip("dns.slo is not set in the cluster config: no latency objective to hold")
    problems = []
    for report in probed:
        unprobed = _unprobed(report)
        if unprobed:
            problems.append(unprobed)
            continue
        verdict = dnscheck.latency_verdict(report.latencies_ms, slo)
        if verdict.percentiles.count:
            for name, value in (("p50", verdict.percentiles.p50), ("p99", verdict.percentiles.p99)):
                measure(
                    f"dns_latency_{name}",
                    value,
                    "ms",
                    node=report.place.name,
                    queries=verdict.percentiles.count,
                )
        if verdict.problems:
            problems.append(
                f"{report.where}: {'; '.join(verdict.problems)} ({verdict.percentiles.describe()})"
            )
    assert not problems, (
        f"DNS latency per node must meet p50 <= {slo.p50_ms:g} ms and p99 <= {slo.p99_ms:g} ms:"
        "\n  " + "\n  ".join(problems)
    )
