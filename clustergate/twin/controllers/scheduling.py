"""The scheduler's decision for one pod, as pure functions: the filter plugins of
kube-scheduler's default profile in their order, least-allocated scoring with spreading, and
the FitError message ("0/3 nodes are available: ...") the real scheduler writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from clustergate.twin.controllers.objects import (
    Obj,
    controller_ref,
    cpu_millis,
    labels_match,
    memory_bytes,
    node_matches_pod_affinity,
    node_ready,
    pod_requests,
    tolerates,
)
from clustergate.twin.kubeclient import object_key

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
HOSTNAME = "kubernetes.io/hostname"
#: The scheduler's defaults for pods without requests, used in scoring only.
_DEFAULT_CPU_MILLIS = 100
_DEFAULT_MEMORY = 200 * 1024 * 1024

#: Reasons that evicting lower-priority pods could cure (the Unschedulable status code);
#: every other filter failure is UnschedulableAndUnresolvable.
_RESOLVABLE_PREFIXES = ("Insufficient ", "Too many pods", "node(s) didn't match pod topology")
_RESOLVABLE_PREFIXES += (
    "node(s) didn't match pod anti-affinity",
    "node(s) didn't satisfy existing",
)
_RESOLVABLE_PREFIXES += ("node(s) didn't have free ports",)
#: kube-scheduler's bounds on how many feasible nodes one decision looks for.
_MIN_FEASIBLE_NODES = 100
_MIN_FEASIBLE_PERCENTAGE = 5
_BASE_PERCENTAGE = 50


class NodeState:
    """A node with the pods bound (or assumed bound) to it, and the running totals that the
    filters and scores read, as kube-scheduler's NodeInfo keeps them: adding or removing a pod
    updates them once, so a decision does not sum every node's pods again (at 1,000 nodes and
    10,000 pods that summing was the twin's whole scheduling time)."""

    def __init__(self, node: Obj, pods: Iterable[Obj] = ()) -> None:
        self.node = node
        self._pods: list[Obj] = []
        self._requested = [0, 0]
        self._scored = [0, 0]
        self._host_ports: Counter[tuple[str, int]] = Counter()
        self._owners: Counter[str] = Counter()
        #: Pods here with required anti-affinity terms (NodeInfo.PodsWithRequiredAntiAffinity).
        self.anti_affinity_pods: list[Obj] = []
        for pod in pods:
            self.add(pod)

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    @property
    def labels(self) -> dict[str, str]:
        return self.node["metadata"].get("labels") or {}

    @property
    def pods(self) -> tuple[Obj, ...]:
        """The pods on the node; change them through :meth:`add` and :meth:`remove`."""
        return tuple(self._pods)

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def host_ports(self) -> set[tuple[str, int]]:
        return set(self._host_ports)

    def siblings(self, owner_uid: str) -> int:
        """Pods here controlled by the owner with that uid."""
        return self._owners[owner_uid]

    def add(self, pod: Obj) -> None:
        self._pods.append(pod)
        self._count(pod, 1)

    def remove(self, key: str) -> Obj | None:
        """Take the pod with that namespace/name off the node; the pod, or None if absent."""
        for index, pod in enumerate(self._pods):
            if object_key(pod) == key:
                del self._pods[index]
                self._count(pod, -1)
                return pod
        return None

    def _count(self, pod: Obj, sign: int) -> None:
        cpu, mem = pod_requests(pod)
        self._requested[0] += sign * cpu
        self._requested[1] += sign * mem
        self._scored[0] += sign * (cpu or _DEFAULT_CPU_MILLIS)
        self._scored[1] += sign * (mem or _DEFAULT_MEMORY)
        ports = _host_ports(pod)
        if ports:
            self._host_ports.update(dict.fromkeys(ports, sign))
            self._host_ports = +self._host_ports
        owner = controller_ref(pod)
        if owner is not None and owner.get("uid"):
            self._owners[owner["uid"]] += sign
        if _terms(pod, "podAntiAffinity"):
            if sign > 0:
                self.anti_affinity_pods.append(pod)
            else:
                self.anti_affinity_pods = [p for p in self.anti_affinity_pods if p is not pod]

    def allocatable(self) -> tuple[int, int, int]:
        status = self.node.get("status", {})
        alloc = status.get("allocatable") or status.get("capacity") or {}
        return (
            cpu_millis(alloc.get("cpu", 0)),
            memory_bytes(alloc.get("memory", 0)),
            int(alloc.get("pods", 110)),
        )

    def requested(self, defaults: bool = False) -> tuple[int, int]:
        """Sum of the pods' requests; with ``defaults``, the scheduler's scoring defaults
        stand in for missing requests."""
        cpu, mem = self._scored if defaults else self._requested
        return cpu, mem


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""
    #: Nodes run through the filters; the next decision starts after them.
    examined: int = 0


def feasible_nodes_to_find(node_count: int) -> int:
    """How many feasible nodes the scheduler looks for before it stops filtering
    (numFeasibleNodesToFind with the adaptive percentageOfNodesToScore): all of them below
    100 nodes, 42 % of 1,000, never under 5 % or 100 nodes."""
    if node_count < _MIN_FEASIBLE_NODES:
        return node_count
    percentage = max(_MIN_FEASIBLE_PERCENTAGE, _BASE_PERCENTAGE - node_count // 125)
    return max(_MIN_FEASIBLE_NODES, node_count * percentage // 100)


def schedule(pod: Obj, nodes: list[NodeState], start: int = 0) -> Decision:
    """Pick a node for ``pod`` or explain, in the real scheduler's words, why none fits.
    As kube-scheduler does, filtering starts at node ``start`` (the previous decision's end,
    so that every node gets its turn) and stops once enough feasible nodes are found."""
    cluster = Prefilter.of(pod, nodes)
    wanted = feasible_nodes_to_find(len(nodes))
    failures: dict[str, list[str]] = {}
    feasible: list[NodeState] = []
    examined = 0
    for offset in range(len(nodes)):
        if len(feasible) >= wanted:
            break
        state = nodes[(start + offset) % len(nodes)]
        examined += 1
        reasons = filter_node(pod, state, nodes, cluster)
        if reasons:
            failures[state.name] = reasons
        else:
            feasible.append(state)
    if not feasible:
        return Decision(None, fit_error(len(nodes), failures), examined)
    best = max(feasible, key=lambda state: (score(pod, state), -state.pod_count, state.name))
    return Decision(best.name, examined=examined)


def first_fit(pod: Obj, nodes: list[NodeState]) -> NodeState | None:
    """The first node ``pod`` fits on, in order (the autoscaler's simulations place this way)."""
    cluster = Prefilter.of(pod, nodes)
    return next((state for state in nodes if not filter_node(pod, state, nodes, cluster)), None)


def fit_error(node_count: int, failures: dict[str, list[str]]) -> str:
    """framework.FitError.Error() with the default preemption plugin's post-filter message."""
    histogram: Counter[str] = Counter()
    preemption: Counter[str] = Counter()
    for reasons in failures.values():
        histogram.update(reasons)
        resolvable = all(reason.startswith(_RESOLVABLE_PREFIXES) for reason in reasons)
        preemption[
            "No preemption victims found for incoming pod"
            if resolvable
            else "Preemption is not helpful for scheduling"
        ] += 1
    message = f"0/{node_count} nodes are available"
    if histogram:
        message += ": " + ", ".join(sorted(f"{n} {reason}" for reason, n in histogram.items()))
    message += "."
    if failures:
        post = ", ".join(sorted(f"{n} {reason}" for reason, n in preemption.items()))
        message += f" preemption: 0/{node_count} nodes are available: {post}."
    return message


def filter_node(
    pod: Obj, state: NodeState, all_nodes: list[NodeState], cluster: Prefilter | None = None
) -> list[str]:
    """The failing filter's reasons for this node, or [] when the pod fits. ``cluster`` is
    the pod's :class:`Prefilter` over ``all_nodes``; pass it when filtering many nodes."""
    spec = pod.get("spec", {})
    tolerations = spec.get("tolerations") or []
    node = state.node
    if node.get("spec", {}).get("unschedulable") and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"]
    taints = list(node.get("spec", {}).get("taints") or [])
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return [f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"]
    if not node_matches_pod_affinity(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    wanted_ports = _host_ports(pod)
    if wanted_ports and wanted_ports & state.host_ports:
        return ["node(s) didn't have free ports for the requested pod ports"]
    reasons = _resource_reasons(pod, state)
    if reasons:
        return reasons
    cluster = cluster or Prefilter.of(pod, all_nodes)
    reason = cluster.spread_reason(state) or cluster.affinity_reason(state)
    return [reason] if reason else []


def _host_ports(pod: Obj) -> set[tuple[str, int]]:
    ports = set()
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.add((port.get("protocol", "TCP"), int(port["hostPort"])))
    return ports


def _resource_reasons(pod: Obj, state: NodeState) -> list[str]:
    alloc_cpu, alloc_mem, alloc_pods = state.allocatable()
    used_cpu, used_mem = state.requested()
    want_cpu, want_mem = pod_requests(pod)
    reasons = []
    if state.pod_count + 1 > alloc_pods:
        reasons.append("Too many pods")
    if want_cpu > 0 and want_cpu > alloc_cpu - used_cpu:
        reasons.append("Insufficient cpu")
    if want_mem > 0 and want_mem > alloc_mem - used_mem:
        reasons.append("Insufficient memory")
    return reasons


@dataclass(frozen=True)
class _Spread:
    key: str
    max_skew: int
    counts: Counter[str]
    minimum: int
    self_match: int


@dataclass(frozen=True)
class _AffinityTerm:
    key: str
    domains: frozenset[str]
    anywhere: bool
    self_match: bool


@dataclass(frozen=True)
class Prefilter:
    """What the topology-spread and inter-pod affinity filters need to know about the whole
    cluster for one pod, gathered once (kube-scheduler's PreFilter state) so that filtering
    each node is a few set lookups instead of a walk over every pod on every node."""

    spread: tuple[_Spread, ...]
    #: (topologyKey, value) domains holding a pod that one of the pod's anti-affinity terms
    #: matches.
    anti_affinity: frozenset[tuple[str, str]]
    #: (topologyKey, value) domains of existing pods whose anti-affinity terms match the pod.
    existing_anti_affinity: frozenset[tuple[str, str]]
    affinity: tuple[_AffinityTerm, ...]

    @classmethod
    def of(cls, pod: Obj, nodes: list[NodeState]) -> Prefilter:
        anti: set[tuple[str, str]] = set()
        for term in _terms(pod, "podAntiAffinity"):
            key = term["topologyKey"]
            anti.update((key, value) for value in _domains_with_match(term, pod, nodes, key))
        existing: set[tuple[str, str]] = set()
        for state in nodes:
            for other in state.anti_affinity_pods:
                for term in _terms(other, "podAntiAffinity"):
                    value = state.labels.get(term["topologyKey"])
                    if value is not None and _term_matches(term, other, pod):
                        existing.add((term["topologyKey"], value))
        affinity = []
        for term in _terms(pod, "podAffinity"):
            key = term["topologyKey"]
            anywhere = any(_term_matches(term, pod, p) for state in nodes for p in state.pods)
            affinity.append(
                _AffinityTerm(
                    key,
                    frozenset(_domains_with_match(term, pod, nodes, key)),
                    anywhere,
                    _term_matches(term, pod, pod),
                )
            )
        return cls(_spreads(pod, nodes), frozenset(anti), frozenset(existing), tuple(affinity))

    def spread_reason(self, state: NodeState) -> str | None:
        for spread in self.spread:
            if spread.key not in state.labels:
                return (
                    "node(s) didn't match pod topology spread constraints (missing required label)"
                )
            skew = spread.counts[state.labels[spread.key]] + spread.self_match - spread.minimum
            if skew > spread.max_skew:
                return "node(s) didn't match pod topology spread constraints"
        return None

    def affinity_reason(self, state: NodeState) -> str | None:
        if not (self.anti_affinity or self.existing_anti_affinity or self.affinity):
            return None
        labels = state.labels
        if any((key, value) in self.anti_affinity for key, value in labels.items()):
            return "node(s) didn't match pod anti-affinity rules"
        if any((key, value) in self.existing_anti_affinity for key, value in labels.items()):
            return "node(s) didn't satisfy existing pods anti-affinity rules"
        for term in self.affinity:
            in_domain = labels.get(term.key) in term.domains
            if not in_domain and (term.anywhere or not term.self_match):
                return "node(s) didn't match pod affinity rules"
        return None


def _spreads(pod: Obj, nodes: list[NodeState]) -> tuple[_Spread, ...]:
    namespace = pod["metadata"].get("namespace")
    own_labels = pod["metadata"].get("labels") or {}
    spreads = []
    for constraint in pod.get("spec", {}).get("topologySpreadConstraints") or []:
        if constraint.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        key = constraint["topologyKey"]
        selector = constraint.get("labelSelector")
        counts: Counter[str] = Counter()
        for state in nodes:
            domain = state.labels.get(key)
            if domain is None or not node_matches_pod_affinity(pod, state.node):
                continue
            counts[domain] += sum(
                1
                for p in state.pods
                if p["metadata"].get("namespace") == namespace
                and labels_match(selector, p["metadata"].get("labels") or {})
            )
        spreads.append(
            _Spread(
                key,
                int(constraint.get("maxSkew", 1)),
                counts,
                min(counts.values()) if counts else 0,
                1 if labels_match(selector, own_labels) else 0,
            )
        )
    return tuple(spreads)


def _domains_with_match(term: Obj, owner: Obj, nodes: list[NodeState], key: str) -> set[str]:
    """Values of ``key`` on nodes holding a pod that ``term`` (of ``owner``) matches."""
    return {
        state.labels[key]
        for state in nodes
        if key in state.labels and any(_term_matches(term, owner, p) for p in state.pods)
    }


def _terms(pod: Obj, kind: str) -> list[Obj]:
    affinity = (pod.get("spec", {}).get("affinity") or {}).get(kind) or {}
    return list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _term_matches(term: Obj, owner: Obj, other: Obj) -> bool:
    namespaces = term.get("namespaces") or [owner["metadata"].get("namespace")]
    return other["metadata"].get("namespace") in namespaces and labels_match(
        term.get("labelSelector"), other["metadata"].get("labels") or {}
    )


def score(pod: Obj, state: NodeState) -> float:
    """NodeResourcesFit LeastAllocated plus default spreading of a controller's pods."""
    alloc_cpu, alloc_mem, _ = state.allocatable()
    cpu, mem = state.requested(defaults=True)
    own_cpu, own_mem = pod_requests(pod)
    cpu += own_cpu or _DEFAULT_CPU_MILLIS
    mem += own_mem or _DEFAULT_MEMORY
    least = 0.0
    if alloc_cpu > 0:
        least += max(0.0, (alloc_cpu - cpu) / alloc_cpu) * 50
    if alloc_mem > 0:
        least += max(0.0, (alloc_mem - mem) / alloc_mem) * 50
    owner = controller_ref(pod)
    siblings = state.siblings(owner["uid"]) if owner is not None and owner.get("uid") else 0
    return least + 100.0 / (1 + siblings)
