"""The twin autoscaler's decisions as pure functions: fit, expander, utilisation, status."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import yaml

from clustergate.twin.autoscaler.asg import instance_id
from clustergate.twin.autoscaler.runtime import unschedulable
from clustergate.twin.autoscaler.scaledown import (
    Candidate,
    blocking_reason,
    select_removals,
    unneeded_reason,
    utilisation,
)
from clustergate.twin.autoscaler.simulation import (
    GroupTemplate,
    NodeGroup,
    expand,
    fit_reasons,
    not_triggered_message,
    plan_scale_up,
    template_node,
    triggered_message,
)
from clustergate.twin.autoscaler.status import (
    ClusterStatus,
    GroupStatus,
    NodeCounts,
    TransitionClock,
    configmap,
    go_time,
    render,
)
from clustergate.twin.controllers.scheduling import NodeState

Obj = dict[str, Any]


def node(name: str, cpu: str = "2", memory: str = "8Gi", **labels: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": {"providerID": f"aws:///us-west-2a/i-{name}"},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "29"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, cpu: str = "100m", memory: str = "64Mi", owner: str = "ReplicaSet") -> Obj:
    meta: Obj = {"name": name, "namespace": "work", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "x", "uid": "o", "controller": True}]
    return {
        "metadata": meta,
        "spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]
        },
        "status": {"phase": "Pending"},
    }


def group(name: str, target: int = 2, max_size: int = 5, min_size: int = 1) -> NodeGroup:
    return NodeGroup(name, min_size=min_size, max_size=max_size, target=target)


def template(ng: NodeGroup, model: Obj, registered: int | None = None) -> GroupTemplate:
    count = ng.target if registered is None else registered
    return GroupTemplate(ng, template_node(model), (), registered=count)


def test_a_pod_fits_a_template_only_when_selector_taints_and_resources_allow() -> None:
    tainted = node("a", team="batch")
    tainted["spec"]["taints"] = [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]
    batch = template(group("batch"), tainted)
    small = pod("small")
    assert fit_reasons(small, batch) == ["node(s) had untolerated taint {dedicated: batch}"]
    small["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    assert fit_reasons(small, batch) == []
    small["spec"]["nodeSelector"] = {"team": "web"}
    assert fit_reasons(small, batch) == ["node(s) didn't match Pod's node affinity/selector"]
    assert fit_reasons(pod("huge", cpu="3"), template(group("g"), node("b"))) == [
        "Insufficient cpu"
    ]


def test_template_drops_the_node_state_taints_and_keeps_the_group_ones() -> None:
    model = node("a")
    model["spec"]["taints"] = [
        {"key": "ToBeDeletedByClusterAutoscaler", "value": "1", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "gpu", "value": "true", "effect": "NoSchedule"},
    ]
    model["spec"]["unschedulable"] = True
    copied = template_node(model)
    assert copied["spec"] == {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}


def test_pods_are_packed_onto_as_few_new_nodes_as_fit_up_to_the_maximum() -> None:
    ng = group("g", target=2, max_size=4)
    pods = [pod(f"p{i}", cpu="1200m") for i in range(3)]
    option = expand(template(ng, node("a")), pods)
    assert option is not None
    assert (option.node_count, option.new_target, len(option.pods)) == (2, 4, 2)
    assert triggered_message(option) == "pod triggered scale-up: [{g 2->4 (max: 4)}]"


def test_least_waste_prefers_the_group_whose_new_node_the_pods_fill_best() -> None:
    small = template(group("large-nodes"), node("big", cpu="16", memory="64Gi"))
    fitting = template(group("small-nodes"), node("small", cpu="2", memory="8Gi"))
    plan = plan_scale_up([pod("p", cpu="1500m", memory="6Gi")], [], [small, fitting])
    assert plan.chosen is not None
    assert plan.chosen.template.group.name == "small-nodes"


def test_pods_that_fit_existing_or_upcoming_nodes_trigger_nothing() -> None:
    existing = [NodeState(node("a"), [pod("old", cpu="1500m")])]
    ng = group("g", target=3)
    upcoming = template(ng, node("a"), registered=2)
    plan = plan_scale_up(
        [pod("fits-a", cpu="400m"), pod("fits-new", cpu="1500m")], existing, [upcoming]
    )
    assert [p["metadata"]["name"] for p in plan.schedulable] == ["fits-a", "fits-new"]
    assert plan.chosen is None
    assert not plan.unhelpable


def test_a_group_at_its_maximum_is_the_reason_given() -> None:
    at_max = template(group("a", target=5, max_size=5), node("x"))
    other = template(group("b", target=2, max_size=2), node("y"))
    plan = plan_scale_up([pod("p", cpu="1500m")], [], [at_max, other])
    assert plan.chosen is None
    message = not_triggered_message(plan.unhelpable["work/p"])
    assert message == "pod didn't trigger scale-up: 2 max node group size reached"


def test_reasons_from_different_groups_are_counted_separately() -> None:
    web = template(group("web"), node("w", team="web"))
    full = template(group("full", target=3, max_size=3), node("f", team="batch"))
    selective = pod("p")
    selective["spec"]["nodeSelector"] = {"team": "batch"}
    plan = plan_scale_up([selective], [], [web, full])
    assert not_triggered_message(plan.unhelpable["work/p"]) == (
        "pod didn't trigger scale-up: 1 max node group size reached, "
        "1 node(s) didn't match Pod's node affinity/selector"
    )


def test_utilisation_counts_requests_of_movable_pods_only() -> None:
    daemon = pod("ds", cpu="1", owner="DaemonSet")
    mirror = pod("static", cpu="1", owner="")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    work = pod("work", cpu="500m", memory="1Gi")
    assert utilisation(node("a"), [daemon, mirror, work]) == 0.25


def test_pods_that_pin_their_node() -> None:
    assert blocking_reason(pod("ok"), []) is None
    unsafe = pod("unsafe")
    unsafe["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert "not safe to evict" in str(blocking_reason(unsafe, []))
    assert "not backed by a controller" in str(blocking_reason(pod("bare", owner=""), []))
    system = pod("dns")
    system["metadata"].update(namespace="kube-system", labels={"k8s-app": "kube-dns"})
    assert "kube-system" in str(blocking_reason(system, []))
    budget = {
        "metadata": {"namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-dns"}}},
    }
    assert blocking_reason(system, [budget]) is None
    local = pod("scratch")
    local["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    assert "local storage" in str(blocking_reason(local, []))
    local["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert blocking_reason(local, []) is None


def test_a_node_is_needed_when_busy_or_disabled() -> None:
    busy = Candidate(node("a"), "g", (pod("big", cpu="1200m"),))
    assert "utilisation 0.60" in str(unneeded_reason(busy, [], 0.5))
    disabled = node("b")
    disabled["metadata"]["annotations"] = {
        "cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"
    }
    assert (
        unneeded_reason(Candidate(disabled, "g", ()), [], 0.5)
        == "scale-down disabled by annotation"
    )
    assert unneeded_reason(Candidate(node("c"), "g", (pod("small"),)), [], 0.5) is None


def test_removals_take_empty_nodes_and_one_busy_node_within_the_minimum() -> None:
    empty = [Candidate(node(n), "g", ()) for n in ("e1", "e2", "e3")]
    busy = Candidate(node("b1"), "h", (pod("w", cpu="500m"),))
    stays = NodeState(node("stay"), [])
    chosen = select_removals([*empty, busy], [stays], {"g": 2, "h": 1})
    assert [c.name for c in chosen] == ["e1", "e2", "b1"]
    assert select_removals([busy], [], {"h": 1}) == []


def test_pending_means_unschedulable_and_not_bound() -> None:
    waiting = pod("w")
    waiting["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    ]
    assert unschedulable(waiting)
    waiting["spec"]["nodeName"] = "a"
    assert not unschedulable(waiting)
    assert not unschedulable(pod("fresh"))


def test_instance_ids_come_from_the_provider_id() -> None:
    assert instance_id(node("n1")) == "i-n1"
    assert instance_id({"spec": {}}) is None


def test_status_document_is_the_1_30_yaml_format() -> None:
    clock = TransitionClock()
    start = dt.datetime(2024, 5, 21, 9, 0, 0, tzinfo=dt.UTC)
    group_status = GroupStatus("asg-a", 1, 5, 3, NodeCounts(ready=2), "InProgress", 0)
    status = ClusterStatus("Healthy", NodeCounts(ready=2), "InProgress", 0, [group_status])
    render(status, clock, start)
    later = start + dt.timedelta(seconds=10, microseconds=500)
    document = yaml.safe_load(render(status, clock, later))
    assert document["autoscalerStatus"] == "Running"
    health = document["clusterWide"]["health"]
    assert health["status"] == "Healthy"
    assert health["lastProbeTime"] == "2024-05-21T09:00:10Z"
    assert health["lastTransitionTime"] == "2024-05-21T09:00:00Z"
    assert document["clusterWide"]["scaleUp"]["status"] == "InProgress"
    assert document["clusterWide"]["scaleDown"]["status"] == "NoCandidates"
    ng = document["nodeGroups"][0]
    assert ng["name"] == "asg-a"
    assert (ng["health"]["minSize"], ng["health"]["maxSize"]) == (1, 5)
    assert ng["health"]["cloudProviderTarget"] == 3
    assert ng["health"]["nodeCounts"]["registered"] == {
        "total": 2,
        "ready": 2,
        "notStarted": 0,
        "beingDeleted": 0,
        "unready": {"total": 0, "resourceUnready": 0},
    }
    assert document["time"] == "2024-05-21 09:00:10.0005 +0000 UTC"
    stamped = configmap("kube-system", "x", later)["metadata"]["annotations"]
    assert stamped == {"cluster-autoscaler.kubernetes.io/last-updated": go_time(later)}


def test_not_triggered_reasons_are_sorted_like_upstream() -> None:
    message = not_triggered_message(Counter({"b reason": 1, "a reason": 2}))
    assert message == "pod didn't trigger scale-up: 2 a reason, 1 b reason"
