"""Scale-up as the cluster autoscaler decides it, as pure functions over JSON objects.

The real autoscaler runs the scheduler's filter plugins against a snapshot of the cluster to
which it adds template nodes; so does this module, with the twin scheduler's own filters. One
decision (:func:`plan_scale_up`):

1. Pending pods that fit on an existing node, or on a node already being provisioned (target
   size above registered nodes), are left alone: the scheduler will place them.
2. For every node group with room below its maximum, a template node (copied from one of its
   nodes: allocatable, labels, taints, plus the DaemonSet pods that would land there) says which
   of the remaining pods would fit; those are bin-packed onto new nodes up to the maximum.
3. The least-waste expander picks the option that leaves the least unused CPU plus memory
   share on the new nodes (ties: by name, where the real one picks at random).
4. Pods no option helps get the reasons each group gave ("2 max node group size reached").
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

from clustergate.twin.controllers.objects import Obj, pod_requests
from clustergate.twin.controllers.scheduling import NodeState, filter_node, first_fit

TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
DELETION_CANDIDATE_TAINT = "DeletionCandidateOfClusterAutoscaler"
HOSTNAME_LABEL = "kubernetes.io/hostname"
MAX_SIZE_REACHED = "max node group size reached"
NO_TEMPLATE = "node group has no node to build a template from"
#: Taints a node carries for its own state, not as part of its group's template.
_NODE_STATE_TAINTS = frozenset(
    {
        TO_BE_DELETED_TAINT,
        DELETION_CANDIDATE_TAINT,
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
)


@dataclass(frozen=True)
class NodeGroup:
    """An auto-discovered Auto Scaling group."""

    name: str
    min_size: int
    max_size: int
    target: int
    instance_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupTemplate:
    """A node group with what one more of its nodes would look like (None: no node to copy)."""

    group: NodeGroup
    node: Obj | None
    daemon_pods: tuple[Obj, ...] = ()
    registered: int = 0

    @property
    def upcoming(self) -> int:
        """Nodes asked for that have not registered yet."""
        return max(0, self.group.target - self.registered)

    def new_node(self, index: int) -> NodeState:
        if self.node is None:
            raise ValueError(f"{self.group.name}: {NO_TEMPLATE}")
        node = copy.deepcopy(self.node)
        name = f"template-node-for-{self.group.name}-{index}"
        node["metadata"]["name"] = name
        node["metadata"].setdefault("labels", {})[HOSTNAME_LABEL] = name
        return NodeState(node, [copy.deepcopy(pod) for pod in self.daemon_pods])


def template_node(node: Obj) -> Obj:
    """A sanitised copy of ``node``: its allocatable, labels and group taints, Ready."""
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    taints = [t for t in spec.get("taints") or [] if t.get("key") not in _NODE_STATE_TAINTS]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node["metadata"]["name"],
            "labels": dict(node["metadata"].get("labels") or {}),
        },
        "spec": {"taints": taints},
        "status": {
            "allocatable": dict(status.get("allocatable") or status.get("capacity") or {}),
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@dataclass(frozen=True)
class ScaleUpOption:
    template: GroupTemplate
    node_count: int
    pods: tuple[Obj, ...]

    @property
    def new_target(self) -> int:
        return self.template.group.target + self.node_count

    def waste(self) -> float:
        """least-waste's score: unused share of CPU plus unused share of memory."""
        state = self.template.new_node(0)
        cpu, mem, _ = state.allocatable()
        total_cpu, total_mem = cpu * self.node_count, mem * self.node_count
        used_cpu = sum(pod_requests(pod)[0] for pod in self.pods)
        used_mem = sum(pod_requests(pod)[1] for pod in self.pods)
        wasted_cpu = (total_cpu - used_cpu) / total_cpu if total_cpu else 1.0
        wasted_mem = (total_mem - used_mem) / total_mem if total_mem else 1.0
        return wasted_cpu + wasted_mem


@dataclass
class ScaleUpPlan:
    """One loop's decision: what to raise (if anything) and what to tell each pending pod."""

    chosen: ScaleUpOption | None = None
    #: Pods that fit an existing or upcoming node: no action, no event.
    schedulable: list[Obj] = field(default_factory=list)
    #: pod key → reasons, counted over node groups, for pods no option helps.
    unhelpable: dict[str, Counter[str]] = field(default_factory=dict)
    #: Pods another option would help: considered again next loop.
    deferred: list[Obj] = field(default_factory=list)


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def _size(pod: Obj) -> tuple[int, int]:
    return pod_requests(pod)


def _place(pod: Obj, states: list[NodeState]) -> bool:
    state = first_fit(pod, states)
    if state is not None:
        state.add(pod)
    return state is not None


def fit_reasons(pod: Obj, template: GroupTemplate) -> list[str]:
    """Why ``pod`` would not fit on a fresh node of ``template``'s group ([] when it fits)."""
    state = template.new_node(0)
    return filter_node(pod, state, [state])


def best_option(options: list[ScaleUpOption]) -> ScaleUpOption | None:
    """The least-waste expander (ties broken by group name for a repeatable twin)."""
    if not options:
        return None
    return min(options, key=lambda option: (option.waste(), option.template.group.name))


def expand(template: GroupTemplate, pods: list[Obj]) -> ScaleUpOption | None:
    """Bin-pack ``pods`` (largest first) onto new nodes of the group, up to its maximum."""
    room = template.group.max_size - template.group.target
    states: list[NodeState] = []
    placed: list[Obj] = []
    for pod in sorted(pods, key=_size, reverse=True):
        if _place(pod, states):
            placed.append(pod)
            continue
        if len(states) >= room:
            continue
        fresh = template.new_node(len(states))
        if not filter_node(pod, fresh, [fresh]):
            fresh.add(pod)
            states.append(fresh)
            placed.append(pod)
    if not states:
        return None
    return ScaleUpOption(template, len(states), tuple(placed))


def plan_scale_up(
    pending: list[Obj], existing: list[NodeState], templates: list[GroupTemplate]
) -> ScaleUpPlan:
    plan = ScaleUpPlan()
    snapshot = [NodeState(state.node, list(state.pods)) for state in existing]
    for template in templates:
        if template.node is not None:
            snapshot += [template.new_node(i) for i in range(template.upcoming)]
    remaining = []
    for pod in pending:
        if _place(pod, snapshot):
            plan.schedulable.append(pod)
        else:
            remaining.append(pod)
    if not remaining:
        return plan
    reasons: dict[str, Counter[str]] = {pod_key(pod): Counter() for pod in remaining}
    options = []
    for template in templates:
        fitting = []
        for pod in remaining:
            reason = _group_reason(pod, template)
            if reason:
                reasons[pod_key(pod)][reason] += 1
            else:
                fitting.append(pod)
        option = expand(template, fitting) if fitting else None
        if option is not None:
            options.append(option)
    plan.chosen = best_option(options)
    helped = {pod_key(pod) for option in options for pod in option.pods}
    chosen = {pod_key(pod) for pod in plan.chosen.pods} if plan.chosen else set()
    for pod in remaining:
        key = pod_key(pod)
        if key in chosen:
            continue
        if key in helped:
            plan.deferred.append(pod)
        else:
            plan.unhelpable[key] = reasons[key] or Counter({MAX_SIZE_REACHED: 1})
    return plan


def _group_reason(pod: Obj, template: GroupTemplate) -> str | None:
    if template.group.target >= template.group.max_size:
        return MAX_SIZE_REACHED
    if template.node is None:
        return NO_TEMPLATE
    failures = fit_reasons(pod, template)
    return failures[0] if failures else None


def triggered_message(option: ScaleUpOption) -> str:
    group = option.template.group
    return (
        f"pod triggered scale-up: [{{{group.name} {group.target}->{option.new_target} "
        f"(max: {group.max_size})}}]"
    )


def not_triggered_message(reasons: Counter[str]) -> str:
    listed = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"pod didn't trigger scale-up: {listed}"
