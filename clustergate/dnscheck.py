"""NodeLocal DNSCache: where the cache runs, which mode it is in, and proof that pods use it.

FACTS.md, NodeLocal DNSCache: the ``node-local-dns`` DaemonSet (kube-system, label
``k8s-app=node-local-dns``, host network, metrics on :9253) tolerates every taint, so a taint
does not excuse a node from having a cache: every Ready, uncordoned node that is not Fargate
must run one. In iptables mode pods keep the kube-dns Service IP as their nameserver and the
cache answers on it; in IPVS mode kubelets hand pods the link-local address instead.

The proof that a pod's queries go through its node's cache and not around it: the cache's own
request counter rises by at least the queries the pod had answered. It is read through the API
server's pod proxy, as ``kubectl get --raw`` would, and parsed with prometheus_client's parser.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from clustergate import nodes
from clustergate.config import DnsSlo
from clustergate.kube import Cluster
from clustergate.probe.dns import LOOP_STARTED
from clustergate.probes import ProbeResult, ProbeSpec, run_probe
from clustergate.runctx import RunContext
from clustergate.stats import Percentiles, latency_percentiles
from clustergate.wait import poll_until, wait_for_objects

NAMESPACE = "kube-system"
CACHE_SELECTOR = "k8s-app=node-local-dns"
CACHE_CONTAINER = "node-cache"
KUBE_DNS = "kube-dns"
KUBE_DNS_UPSTREAM = "kube-dns-upstream"
METRICS_PORT = 9253
ZONE_LABEL = "topology.kubernetes.io/zone"
COMPUTE_TYPE_LABEL = "eks.amazonaws.com/compute-type"
NO_ZONE = "(no zone)"
REQUESTS = "coredns_dns_requests_total"
CACHE_REQUESTS = "coredns_cache_requests_total"
CACHE_HITS = "coredns_cache_hits_total"
PLUGIN_ENABLED = "coredns_plugin_enabled"
UPSTREAM_FAILURES = "coredns_proxy_healthcheck_failures_total"
#: Nodes probed at once.
PARALLEL_PROBES = 8


# --- nodes, sampling and cache pods ---------------------------------------------------------


@dataclass(frozen=True)
class NodePlace:
    name: str
    group: str
    zone: str


def place_of(node: Any) -> NodePlace:
    labels = node.metadata.labels or {}
    return NodePlace(node.metadata.name, nodes.nodegroup_of(node), labels.get(ZONE_LABEL, NO_ZONE))


def cache_nodes(listed: Iterable[Any]) -> list[NodePlace]:
    """Nodes that must run a cache: Ready, not cordoned, not Fargate (no DaemonSets there).
    Taints do not count: the add-on tolerates every taint."""
    found = []
    for node in listed:
        labels = node.metadata.labels or {}
        if node.spec.unschedulable or not nodes.node_ready(node):
            continue
        if labels.get(COMPUTE_TYPE_LABEL) == "fargate":
            continue
        found.append(place_of(node))
    return sorted(found, key=lambda place: place.name)


def sample_nodes(places: Sequence[NodePlace], per_group_zone: int, seed: str) -> list[NodePlace]:
    """All nodes when ``per_group_zone`` is 0, else that many of each (node group, zone),
    chosen at random with ``seed`` (the run id: another run covers other nodes, one run
    can be repeated)."""
    if per_group_zone == 0:
        return sorted(places, key=lambda place: place.name)
    cells: dict[tuple[str, str], list[NodePlace]] = defaultdict(list)
    for place in sorted(places, key=lambda place: place.name):
        cells[(place.group, place.zone)].append(place)
    chooser = random.Random(seed)
    chosen = []
    for cell in sorted(cells):
        members = cells[cell]
        chosen.extend(chooser.sample(members, min(per_group_zone, len(members))))
    return sorted(chosen, key=lambda place: place.name)


@dataclass(frozen=True)
class CachePod:
    name: str
    node: str
    uid: str
    phase: str
    ready: bool
    #: Restarts of its node-cache container, and why it waits (CrashLoopBackOff), if it does.
    restarts: int = 0
    waiting: str = ""

    def describe(self) -> str:
        state = f"{self.phase}, {'ready' if self.ready else 'not ready'}"
        if self.waiting:
            state += f", {self.waiting}"
        if self.restarts:
            state += f", {self.restarts} restart{'s' if self.restarts > 1 else ''}"
        return f"{self.name} ({state})"


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def cache_pods(pods: Iterable[Any]) -> dict[str, CachePod]:
    """Node name -> its cache pod (a ready one when the node has several, as mid-rollout)."""
    by_node: dict[str, CachePod] = {}
    for pod in pods:
        node = pod.spec.node_name
        if not node or pod.metadata.deletion_timestamp:
            continue
        statuses = [c for c in (pod.status.container_statuses or []) if c.name == CACHE_CONTAINER]
        waiting = statuses[0].state.waiting if statuses and statuses[0].state else None
        found = CachePod(
            pod.metadata.name,
            node,
            pod.metadata.uid,
            pod.status.phase or "",
            _ready(pod),
            statuses[0].restart_count or 0 if statuses else 0,
            (waiting.reason or "") if waiting else "",
        )
        if node not in by_node or (found.ready and not by_node[node].ready):
            by_node[node] = found
    return by_node


def missing_caches(
    places: Iterable[NodePlace],
    pods: dict[str, CachePod],
    last_words: dict[str, str] | None = None,
) -> list[str]:
    """One line per node without a ready cache pod; with what a restarted pod's container
    last logged (``last_words``, by pod name), which says why it exits."""
    lines = []
    for place in places:
        pod = pods.get(place.name)
        where = f"node {place.name} ({place.group}, {place.zone})"
        if pod is None:
            lines.append(f"{where}: no node-local-dns pod")
        elif not pod.ready:
            said = (last_words or {}).get(pod.name)
            logged = f"; its last log line: {said}" if said else ""
            lines.append(f"{where}: node-local-dns pod {pod.describe()}{logged}")
    return lines


def last_log_lines(cluster: Cluster, pods: Iterable[CachePod]) -> dict[str, str]:
    """Pod name -> the last line its node-cache container logged before it last exited, for
    each restarted pod (``kubectl logs --previous``); pods whose log is unreadable are left
    out."""
    said = {}
    for pod in pods:
        if not pod.restarts:
            continue
        try:
            text = cluster.core().read_namespaced_pod_log(
                pod.name,
                NAMESPACE,
                container=CACHE_CONTAINER,
                previous=True,
                tail_lines=5,
                _request_timeout=15,
            )
        except ApiException:
            continue
        lines = [line for line in str(text).splitlines() if line.strip()]
        if lines:
            said[pod.name] = lines[-1]
    return said


def list_cache_pods(cluster: Cluster) -> dict[str, CachePod]:
    listed = cluster.core().list_namespaced_pod(NAMESPACE, label_selector=CACHE_SELECTOR)
    return cache_pods(listed.items)


# --- mode: which address pods are given, which addresses the cache binds --------------------


def listen_addresses(daemonset: Any) -> list[str]:
    """The addresses the cache binds, from the node-cache container's ``-localip`` argument."""
    for container in daemonset.spec.template.spec.containers:
        if container.name != CACHE_CONTAINER:
            continue
        words = [*(container.command or []), *(container.args or [])]
        for index, word in enumerate(words):
            if word.lstrip("-") == "localip" and index + 1 < len(words):
                return words[index + 1].split(",")
            if word.lstrip("-").startswith("localip="):
                return word.split("=", 1)[1].split(",")
    return []


def expected_cluster_dns(mode: str, kube_dns_ip: str, nodelocal_ip: str) -> str:
    """The nameserver kubelets give pods: the kube-dns IP (iptables) or the cache's (IPVS)."""
    return kube_dns_ip if mode == "iptables" else nodelocal_ip


def binding_problems(mode: str, kube_dns_ip: str, nodelocal_ip: str, bound: list[str]) -> list[str]:
    problems = []
    if nodelocal_ip not in bound:
        problems.append(
            f"the cache binds {bound or 'nothing'} (-localip), not the link-local {nodelocal_ip}"
        )
    if mode == "iptables" and kube_dns_ip not in bound:
        problems.append(
            f"iptables mode: the cache binds {bound or 'nothing'} (-localip), not the kube-dns "
            f"Service IP {kube_dns_ip}, so pods' queries go around it"
        )
    return problems


def kubelet_cluster_dns(cluster: Cluster, node: str) -> list[str] | None:
    """The kubelet's clusterDNS from ``/configz`` through the node proxy; None where the
    endpoint is not available (forbidden, disabled, or answered with something else)."""
    try:
        response = cluster.core().connect_get_node_proxy_with_path(
            node, "configz", _preload_content=False, _request_timeout=15
        )
        config = json.loads(response.data)["kubeletconfig"]
    except (ApiException, ValueError, KeyError, TypeError):
        return None
    return [str(address) for address in config.get("clusterDNS") or []]


# --- cache metrics --------------------------------------------------------------------------


def parse_counters(text: str) -> dict[str, float]:
    """Sample name -> sum over every label set (every server address, zone and type)."""
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    """Value of ``label`` -> the sum of the samples named ``name`` that carry it."""
    found: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                found[sample.labels[label]] += sample.value
    return dict(found)


def served_addresses(text: str) -> list[str]:
    """The addresses the cache's server blocks listen on (``coredns_plugin_enabled``'s
    ``server="dns://ADDRESS:53"``): what its Corefile's ``bind`` made of them."""
    servers = labelled(text, PLUGIN_ENABLED, "server")
    return sorted({server.removeprefix("dns://").rpartition(":")[0] for server in servers})


def scrape_cache_text(cluster: Cluster, pod: str) -> str:
    """The cache pod's metrics page, through the API server's pod proxy to port 9253."""
    response = cluster.core().connect_get_namespaced_pod_proxy_with_path(
        f"{pod}:{METRICS_PORT}",
        NAMESPACE,
        path="metrics",
        _preload_content=False,
        _request_timeout=15,
    )
    return str(response.data.decode())


@dataclass(frozen=True)
class CounterDelta:
    requests: float
    cache_requests: float | None
    cache_hits: float | None

    @staticmethod
    def between(before: dict[str, float], after: dict[str, float]) -> CounterDelta:
        def delta(name: str) -> float | None:
            # A labelled counter has no series before its first increment (the Go client
            # writes nothing for it), so a series missing from one scrape stands at zero.
            if name not in before and name not in after:
                return None
            return after.get(name, 0.0) - before.get(name, 0.0)

        return CounterDelta(delta(REQUESTS) or 0.0, delta(CACHE_REQUESTS), delta(CACHE_HITS))


# --- one node: scrape, probe, scrape --------------------------------------------------------


@dataclass(frozen=True)
class DnsTarget:
    """A name to resolve, and the address it must resolve to (None: any address)."""

    name: str
    expected: str | None = None


@dataclass
class NodeReport:
    place: NodePlace
    cache_pod: CachePod | None
    probe: ProbeResult | None = None
    #: Why the probe pod gave no result.
    probe_error: str | None = None
    delta: CounterDelta | None = None
    #: Why the cache's counters could not be compared.
    metrics_error: str | None = None
    names: list[dict[str, Any]] = field(default_factory=list)
    #: The addresses the node's cache serves (empty: unknown).
    served: list[str] = field(default_factory=list)
    #: Upstream (``to``) -> failed attempts of the cache's forward plugin during the probe.
    upstream_failures: dict[str, float] = field(default_factory=dict)

    @property
    def where(self) -> str:
        pod = f", probe pod {self.probe.pod}" if self.probe else ""
        return f"node {self.place.name} ({self.place.group}, {self.place.zone}{pod})"

    @property
    def answered(self) -> int:
        return sum(len(item["latencies_ms"]) for item in self.names)

    @property
    def latencies_ms(self) -> list[float]:
        return [value for item in self.names for value in item["latencies_ms"]]

    @property
    def nameservers(self) -> list[str]:
        return list(self.probe["resolv_conf"]["nameservers"]) if self.probe else []


def probe_node(
    run: RunContext,
    image: str,
    place: NodePlace,
    targets: Sequence[DnsTarget],
    count: int,
    timeout_s: float,
) -> NodeReport:
    """Resolve ``targets`` ``count`` times each from a probe pod pinned to the node, between
    two scrapes of the node's cache counters."""
    cache = list_cache_pods(run.cluster).get(place.name)
    report = NodeReport(place, cache)
    before = _scrape(run.cluster, report)
    if before is not None:
        report.served = served_addresses(before)
    spec = ProbeSpec(
        "dns", args=(*(t.name for t in targets), "--count", str(count)), node=place.name
    )
    try:
        report.probe = run_probe(run, image, spec, timeout_s)
    except (AssertionError, ApiException) as error:
        report.probe_error = f"{type(error).__name__}: {error}"
        return report
    if "names" not in report.probe.data:
        report.probe_error = f"probe {report.probe.pod} failed: {report.probe.get('error')}"
        return report
    report.names = list(report.probe["names"])
    after = _scrape(run.cluster, report)
    if before is not None and after is not None:
        still = list_cache_pods(run.cluster).get(place.name)
        if still is None or cache is None or still.uid != cache.uid:
            report.metrics_error = "the cache pod was replaced during the probe: counters reset"
        else:
            report.delta = CounterDelta.between(parse_counters(before), parse_counters(after))
            failed_before = labelled(before, UPSTREAM_FAILURES, "to")
            report.upstream_failures = {
                to: count - failed_before.get(to, 0.0)
                for to, count in labelled(after, UPSTREAM_FAILURES, "to").items()
                if count > failed_before.get(to, 0.0)
            }
    return report


def _scrape(cluster: Cluster, report: NodeReport) -> str | None:
    if report.cache_pod is None:
        report.metrics_error = "no node-local-dns pod on the node"
        return None
    try:
        text = scrape_cache_text(cluster, report.cache_pod.name)
        parse_counters(text)  # unparsable is unreadable
        return text
    except (ApiException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        report.metrics_error = (
            f"metrics of {NAMESPACE}/{report.cache_pod.name}:{METRICS_PORT} unreadable through "
            f"the API server's pod proxy: {reason}"
        )
        return None


def probe_nodes(
    run: RunContext,
    image: str,
    places: Sequence[NodePlace],
    targets: Sequence[DnsTarget],
    count: int,
    timeout_s: float,
) -> list[NodeReport]:
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_PROBES, len(places)))) as pool:
        return list(
            pool.map(lambda place: probe_node(run, image, place, targets, count, timeout_s), places)
        )


# --- verdicts on one node's report ----------------------------------------------------------


def answer_problems(names: Sequence[dict[str, Any]], targets: Sequence[DnsTarget]) -> list[str]:
    """Failed resolutions, and answers that are not the expected address."""
    expected = {target.name: target.expected for target in targets}
    problems = []
    for item in names:
        name = item["name"]
        if item["failed"]:
            sample = "; ".join(item["failures"][:2])
            problems.append(f"{name}: {item['failed']} of the queries failed ({sample})")
        want = expected.get(name)
        if want is not None and item["answers"] and want not in item["answers"]:
            problems.append(f"{name} resolved to {item['answers']}, expected {want}")
    return problems


COREFILE_HINT = "kubectl -n kube-system get configmap node-local-dns -o yaml"


def upstream_problem(report: NodeReport, upstream_ip: str | None) -> str | None:
    """Why the node's cache failed queries: the upstreams its forward plugin could not reach,
    against the kube-dns-upstream Service IP the cluster zones must go to."""
    if not report.upstream_failures:
        return None
    pod = report.cache_pod.name if report.cache_pod else "?"
    failed = ", ".join(
        f"{to} ({count:.0f} failed)" for to, count in sorted(report.upstream_failures.items())
    )
    expected = f"; {KUBE_DNS_UPSTREAM} is {upstream_ip}:53" if upstream_ip else ""
    return (
        f"its cache {NAMESPACE}/{pod} forwarded the queries to {failed}, which did not answer "
        f"({UPSTREAM_FAILURES}){expected}: see `forward` in its Corefile ({COREFILE_HINT})"
    )


def served_problems(mode: str, kube_dns_ip: str, nodelocal_ip: str, served: list[str]) -> list[str]:
    """What the cache's Corefile fails to ``bind``, from the addresses its metrics show."""
    if not served:
        return []
    wanted = [nodelocal_ip] + ([kube_dns_ip] if mode == "iptables" else [])
    missing = [address for address in wanted if address not in served]
    if not missing:
        return []
    return [
        f"the cache serves {', '.join(served)} ({PLUGIN_ENABLED}), not "
        f"{', '.join(missing)}: see `bind` in its Corefile ({COREFILE_HINT})"
    ]


def cache_problem(report: NodeReport) -> str | None:
    """Why the node's counters do not prove the probe's queries went through its cache."""
    if report.metrics_error:
        return report.metrics_error
    if report.delta is None:
        return "no counters to compare"
    sent = report.answered
    if report.delta.requests < sent:
        return (
            f"{REQUESTS} of {report.cache_pod.name if report.cache_pod else '?'} rose by "
            f"{report.delta.requests:.0f} while the probe had {sent} queries answered: the "
            "queries went around the node's cache"
        )
    return None


@dataclass(frozen=True)
class LatencyVerdict:
    percentiles: Percentiles
    problems: tuple[str, ...]


def latency_verdict(latencies_ms: Sequence[float], slo: DnsSlo) -> LatencyVerdict:
    found = latency_percentiles(latencies_ms)
    if not found.count:
        return LatencyVerdict(found, ("no query was answered",))
    problems = []
    if found.p50 > slo.p50_ms:
        problems.append(f"p50 {found.p50:.1f} ms > SLO {slo.p50_ms:g} ms")
    if found.p99 > slo.p99_ms:
        problems.append(f"p99 {found.p99:.1f} ms > SLO {slo.p99_ms:g} ms")
    return LatencyVerdict(found, tuple(problems))


# --- a cache restart under load --------------------------------------------------------------


@dataclass(frozen=True)
class RestartOutcome:
    node: str
    old_pod: str
    new_pod: str
    #: From the old pod's deletion to its replacement being Ready.
    replaced_after_s: float
    loop: dict[str, Any]
    deleted_at: float
    ready_at: float

    @property
    def longest_gap_s(self) -> float:
        return float(self.loop["longest_gap_s"])

    @property
    def covered(self) -> bool:
        """Whether the query loop ran from before the deletion until after the replacement."""
        first = self.loop.get("first_answer_at")
        return (
            first is not None
            and first < self.deleted_at
            and self.loop["ended_at"] > (self.ready_at)
        )


def restart_cache_under_queries(
    run: RunContext,
    image: str,
    cache: CachePod,
    name: str,
    loop_s: float,
    timeout_s: float,
) -> RestartOutcome:
    """Delete the node's cache pod while a probe pod on that node resolves ``name`` in a loop
    for ``loop_s``; wait for the DaemonSet's replacement to be Ready; return the loop's
    result with the times."""
    core = run.cluster.core()
    spec = ProbeSpec("dns-loop", args=(name, "--duration", str(loop_s)), node=cache.node)
    with ThreadPoolExecutor(max_workers=1) as pool:
        looping = pool.submit(run_probe, run, image, spec, loop_s + timeout_s)
        probe = _wait_for_loop(run, cache.node, timeout_s)
        deleted_at = time.time()
        core.delete_namespaced_pod(cache.name, NAMESPACE)
        replacement = wait_for_objects(
            core.list_namespaced_pod,
            lambda pods: _replacement(pods, cache) is not None,
            what=f"a Ready node-local-dns pod replacing {cache.name} on node {cache.node}",
            timeout_s=timeout_s,
            describe=lambda pods: (
                ", ".join(p.describe() for p in cache_pods(pods).values() if p.node == cache.node)
                or "no cache pod on the node"
            ),
            namespace=NAMESPACE,
            label_selector=CACHE_SELECTOR,
        )
        ready_at = time.time()
        new = _replacement(replacement, cache)
        result = looping.result()
    assert new is not None
    if "longest_gap_s" not in result.data:
        raise AssertionError(f"dns-loop probe {probe} gave no loop result: {result.data}")
    return RestartOutcome(
        cache.node, cache.name, new.name, ready_at - deleted_at, result.data, deleted_at, ready_at
    )


def _replacement(pods: list[Any], old: CachePod) -> CachePod | None:
    for pod in cache_pods(pods).values():
        if pod.node == old.node and pod.uid != old.uid and pod.ready:
            return pod
    return None


def _wait_for_loop(run: RunContext, node: str, timeout_s: float) -> str:
    """The dns-loop probe pod on ``node``, once its log shows the loop's first answer."""
    core = run.cluster.core()

    def started() -> str | None:
        pods = core.list_namespaced_pod(
            run.namespace, label_selector="clustergate.io/probe=dns-loop"
        ).items
        for pod in pods:
            if pod.spec.node_name == node and pod.status.phase == "Running":
                try:
                    log = core.read_namespaced_pod_log(pod.metadata.name, run.namespace)
                except ApiException:
                    continue
                if LOOP_STARTED in log:
                    return str(pod.metadata.name)
        return None

    found = poll_until(
        started,
        lambda name: name is not None,
        what=f"the dns-loop probe pod on node {node} to get its first answer",
        timeout_s=timeout_s,
        describe=lambda _: "no running dns-loop pod with an answer yet",
        interval_s=0.2,
    )
    assert found is not None
    return found
