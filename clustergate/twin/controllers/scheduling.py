"""The scheduler's decision for one pod, as pure functions: the filter plugins of
kube-scheduler's default profile in their order, least-allocated scoring with spreading, and
the FitError message ("0/3 nodes are available: ...") the real scheduler writes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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


@dataclass
class NodeState:
    """A node with the pods bound (or assumed bound) to it."""

    node: Obj
    pods: list[Obj] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    @property
    def labels(self) -> dict[str, str]:
        return self.node["metadata"].get("labels") or {}

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
        cpu = mem = 0
        for pod in self.pods:
            pod_cpu, pod_mem = pod_requests(pod)
            if defaults:
                pod_cpu, pod_mem = pod_cpu or _DEFAULT_CPU_MILLIS, pod_mem or _DEFAULT_MEMORY
            cpu += pod_cpu
            mem += pod_mem
        return cpu, mem


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""


def schedule(pod: Obj, nodes: list[NodeState]) -> Decision:
    """Pick a node for ``pod`` or explain, in the real scheduler's words, why none fits."""
    failures: dict[str, list[str]] = {}
    feasible: list[NodeState] = []
    for state in nodes:
        reasons = filter_node(pod, state, nodes)
        if reasons:
            failures[state.name] = reasons
        else:
            feasible.append(state)
    if not feasible:
        return Decision(None, fit_error(len(nodes), failures))
    best = max(feasible, key=lambda state: (score(pod, state), -len(state.pods), state.name))
    return Decision(best.name)


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


def filter_node(pod: Obj, state: NodeState, all_nodes: list[NodeState]) -> list[str]:
    """The failing filter's reasons for this node, or [] when the pod fits."""
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
    if _host_ports(pod) & {port for other in state.pods for port in _host_ports(other)}:
        return ["node(s) didn't have free ports for the requested pod ports"]
    reasons = _resource_reasons(pod, state)
    if reasons:
        return reasons
    spread = _topology_spread_reason(pod, state, all_nodes)
    if spread:
        return [spread]
    affinity = _inter_pod_affinity_reason(pod, state, all_nodes)
    return [affinity] if affinity else []


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
    if len(state.pods) + 1 > alloc_pods:
        reasons.append("Too many pods")
    if want_cpu > 0 and want_cpu > alloc_cpu - used_cpu:
        reasons.append("Insufficient cpu")
    if want_mem > 0 and want_mem > alloc_mem - used_mem:
        reasons.append("Insufficient memory")
    return reasons


def _eligible_for_spread(pod: Obj, nodes: list[NodeState]) -> list[NodeState]:
    return [state for state in nodes if node_matches_pod_affinity(pod, state.node)]


def _topology_spread_reason(pod: Obj, state: NodeState, nodes: list[NodeState]) -> str | None:
    namespace = pod["metadata"].get("namespace")
    own_labels = pod["metadata"].get("labels") or {}
    for constraint in pod.get("spec", {}).get("topologySpreadConstraints") or []:
        if constraint.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        key = constraint["topologyKey"]
        if key not in state.labels:
            return "node(s) didn't match pod topology spread constraints (missing required label)"
        selector = constraint.get("labelSelector")
        counts: Counter[str] = Counter()
        for other in _eligible_for_spread(pod, nodes):
            domain = other.labels.get(key)
            if domain is None:
                continue
            counts[domain] += sum(
                1
                for p in other.pods
                if p["metadata"].get("namespace") == namespace
                and labels_match(selector, p["metadata"].get("labels") or {})
            )
        minimum = min(counts.values()) if counts else 0
        self_match = 1 if labels_match(selector, own_labels) else 0
        skew = counts[state.labels[key]] + self_match - minimum
        if skew > int(constraint.get("maxSkew", 1)):
            return "node(s) didn't match pod topology spread constraints"
    return None


def _terms(pod: Obj, kind: str) -> list[Obj]:
    affinity = (pod.get("spec", {}).get("affinity") or {}).get(kind) or {}
    return list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _term_matches(term: Obj, owner: Obj, other: Obj) -> bool:
    namespaces = term.get("namespaces") or [owner["metadata"].get("namespace")]
    return other["metadata"].get("namespace") in namespaces and labels_match(
        term.get("labelSelector"), other["metadata"].get("labels") or {}
    )


def _same_domain(a: NodeState, b: NodeState, key: str) -> bool:
    value = a.labels.get(key)
    return value is not None and value == b.labels.get(key)


def _inter_pod_affinity_reason(pod: Obj, state: NodeState, nodes: list[NodeState]) -> str | None:
    for term in _terms(pod, "podAntiAffinity"):
        key = term["topologyKey"]
        for other in nodes:
            if _same_domain(state, other, key) and any(
                _term_matches(term, pod, p) for p in other.pods
            ):
                return "node(s) didn't match pod anti-affinity rules"
    for other in nodes:
        for existing in other.pods:
            if not (existing.get("spec", {}).get("affinity") or {}).get("podAntiAffinity"):
                continue
            for term in _terms(existing, "podAntiAffinity"):
                if _same_domain(state, other, term["topologyKey"]) and _term_matches(
                    term, existing, pod
                ):
                    return "node(s) didn't satisfy existing pods anti-affinity rules"
    for term in _terms(pod, "podAffinity"):
        key = term["topologyKey"]
        in_domain = any(
            _same_domain(state, other, key) and any(_term_matches(term, pod, p) for p in other.pods)
            for other in nodes
        )
        anywhere = any(_term_matches(term, pod, p) for other in nodes for p in other.pods)
        if not in_domain and (anywhere or not _term_matches(term, pod, pod)):
            return "node(s) didn't match pod affinity rules"
    return None


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
    siblings = 0
    if owner is not None:
        siblings = sum(
            1 for p in state.pods if (controller_ref(p) or {}).get("uid") == owner.get("uid")
        )
    return least + 100.0 / (1 + siblings)
