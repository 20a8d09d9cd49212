"""The controllers' decisions as pure functions: scheduling, rollout arithmetic, PDB status."""

from __future__ import annotations

import datetime as dt

import pytest

from clustergate.twin.controllers.daemonset import bind_to_node, should_run
from clustergate.twin.controllers.disruption import ScaleUnknownError, budget_status
from clustergate.twin.controllers.nodelifecycle import wanted_taints
from clustergate.twin.controllers.objects import cpu_millis, labels_match, memory_bytes
from clustergate.twin.controllers.rollout import (
    ReplicaSetView,
    new_replicas,
    scale_down_old,
    surge_and_unavailable,
    template_hash,
)
from clustergate.twin.controllers.scheduling import (
    NodeState,
    feasible_nodes_to_find,
    fit_error,
    schedule,
)

UTC = dt.UTC


def node(name: str, cpu: str = "2", memory: str = "4Gi", pods: int = 10, **extra) -> dict:
    labels = {"kubernetes.io/hostname": name, **extra.pop("labels", {})}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": extra.pop("spec", {}),
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)},
            "conditions": [{"type": "Ready", "status": extra.pop("ready", "True")}],
        },
    }


def pod(name: str, cpu: str = "", memory: str = "", **spec) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    labels = spec.pop("labels", {"app": "x"})
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "uid": name},
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}], **spec},
    }


def test_quantities() -> None:
    assert cpu_millis("250m") == 250
    assert cpu_millis("1.5") == 1500
    assert cpu_millis(2) == 2000
    assert memory_bytes("1Gi") == 2**30
    assert memory_bytes("500M") == 500_000_000
    assert memory_bytes("1e3") == 1000
    with pytest.raises(ValueError, match="quantity"):
        cpu_millis("lots")


def test_label_selectors() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    assert labels_match(selector, {"app": "web", "tier": "a"})
    assert not labels_match(selector, {"app": "web", "tier": "c"})
    assert not labels_match(selector, {"app": "web", "tier": "a", "canary": "1"})
    assert labels_match({}, {"anything": "goes"})
    assert not labels_match(None, {"app": "web"})


def test_scheduler_message_counts_each_reason_as_the_real_one_does() -> None:
    cordoned = node("a", spec={"unschedulable": True})
    nodes = [NodeState(cordoned), NodeState(node("b", cpu="1")), NodeState(node("c", cpu="1"))]
    decision = schedule(pod("p", cpu="1500m"), nodes)
    assert decision.node is None
    assert decision.message == (
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )


def test_scheduler_taints_tolerations_and_selectors() -> None:
    tainted = node(
        "a", spec={"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
    )
    plain = node("b", labels={"disk": "ssd"})
    not_ready = node("c", ready="False")
    nodes = [NodeState(tainted), NodeState(plain), NodeState(not_ready)]
    assert schedule(pod("p"), nodes).node == "b"
    tolerant = pod(
        "q", tolerations=[{"key": "dedicated", "operator": "Exists"}], nodeSelector={"disk": "hdd"}
    )
    message = schedule(tolerant, nodes).message
    assert "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }" in message
    assert "2 node(s) didn't match Pod's node affinity/selector" in message
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    assert (
        schedule(pod("r", tolerations=[{"operator": "Exists"}], affinity=affinity), nodes).node
        == "a"
    )


def test_scheduler_resources_anti_affinity_and_spread() -> None:
    nodes = [
        NodeState(node(n, labels={"zone": z})) for n, z in (("a", "1"), ("b", "1"), ("c", "2"))
    ]
    nodes[0].add(pod("busy", cpu="1800m"))
    assert schedule(pod("p", cpu="500m"), nodes).node in {"b", "c"}
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "x"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    for state in nodes:
        state.add(pod(f"x-{state.name}"))
    message = schedule(pod("p", affinity=anti), nodes).message
    assert message.startswith(
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    )
    nodes = [
        NodeState(node(n, labels={"zone": z})) for n, z in (("a", "1"), ("b", "1"), ("c", "2"))
    ]
    nodes[0].add(pod("x1"))
    nodes[1].add(pod("x2"))
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "x"}}}]  # fmt: skip
    assert schedule(pod("p", topologySpreadConstraints=spread), nodes).node == "c"


def test_scheduler_prefers_least_allocated_and_spreads_siblings() -> None:
    nodes = [NodeState(node("a")), NodeState(node("b"))]
    nodes[0].add(pod("heavy", cpu="1", memory="2Gi"))
    assert schedule(pod("p", cpu="100m"), nodes).node == "b"
    too_many = [NodeState(node("a", pods=1))]
    too_many[0].add(pod("one"))
    assert "1 Too many pods" in schedule(pod("p"), too_many).message


def test_node_state_totals_follow_adds_and_removes() -> None:
    owned = {"ownerReferences": [{"controller": True, "uid": "rs-1"}]}
    first, second = pod("a", cpu="300m", memory="1Gi"), pod("b", cpu="200m")
    for each in (first, second):
        each["metadata"].update(owned)
    state = NodeState(node("n"), [first, second])
    assert state.requested() == (500, 2**30)
    assert state.requested(defaults=True) == (500, 2**30 + 200 * 2**20)
    assert state.siblings("rs-1") == 2
    assert state.remove("ns/a") is first
    assert state.remove("ns/a") is None
    assert (state.requested(), state.siblings("rs-1"), state.pod_count) == ((200, 0), 1, 1)


def test_scheduler_filters_a_share_of_big_clusters_from_a_rotating_start() -> None:
    assert [feasible_nodes_to_find(n) for n in (3, 99, 100, 1000, 5000, 20000)] == [
        3, 99, 100, 420, 500, 1000,
    ]  # fmt: skip
    nodes = [NodeState(node(f"n{i:03}")) for i in range(200)]
    decision = schedule(pod("p"), nodes, start=150)
    assert decision.examined == 100
    assert decision.node in {f"n{i % 200:03}" for i in range(150, 250)}
    for state in nodes:
        state.node["spec"]["unschedulable"] = True
    refused = schedule(pod("p"), nodes, start=150)
    assert (refused.node, refused.examined) == (None, 200)
    assert refused.message.startswith("0/200 nodes are available: 200 node(s) were unschedulable.")


def test_fit_error_without_nodes() -> None:
    assert fit_error(0, {}) == "0/0 nodes are available."


def test_rollout_fenceposts() -> None:
    assert surge_and_unavailable(4, {}) == (1, 1)  # 25 % each: surge rounds up, unavailable down
    assert surge_and_unavailable(3, {}) == (1, 0)
    assert surge_and_unavailable(3, {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}) == (
        0,
        1,
    )
    assert surge_and_unavailable(
        10, {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 2}}
    ) == (5, 2)


def test_rolling_update_steps_keep_availability() -> None:
    strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    new = ReplicaSetView("new", replicas=0, available=0, revision=2)
    old = ReplicaSetView("old", replicas=3, available=3, revision=1)
    new.replicas = new_replicas(3, strategy, new, [new, old])
    assert new.replicas == 1  # one surge pod
    assert scale_down_old(3, strategy, new, [old]) == {"old": 3}  # the new pod is not available yet
    new.available = 1
    assert scale_down_old(3, strategy, new, [old]) == {"old": 2}
    old.replicas = 2
    assert new_replicas(3, strategy, new, [new, old]) == 2


def test_rolling_update_removes_unhealthy_old_pods_first() -> None:
    strategy = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    new = ReplicaSetView("new", replicas=0, available=0, revision=3)
    older = ReplicaSetView("older", replicas=1, available=0, revision=1)
    old = ReplicaSetView("old", replicas=3, available=3, revision=2)
    assert scale_down_old(4, strategy, new, [old, older]) == {"old": 3, "older": 0}
    assert scale_down_old(3, strategy, new, [old, older]) == {"old": 2, "older": 0}


def test_template_hash_is_stable_and_safe() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "a"}]}}
    first = template_hash(template)
    assert first == template_hash(template)
    assert first != template_hash(template, collision_count=1)
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")


def ready_pod(name: str, owner: str = "rs-1", ready: bool = True, deleting: bool = False) -> dict:
    meta = {
        "name": name,
        "namespace": "ns",
        "uid": name,
        "labels": {"app": "x"},
        "ownerReferences": [
            {"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ],
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pdb(spec: dict, disrupted: dict | None = None) -> dict:
    return {
        "metadata": {"name": "b", "namespace": "ns", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, **spec},
        "status": {"disruptedPods": disrupted or {}},
    }


def test_pdb_min_available_int_counts_pods() -> None:
    pods = [
        ready_pod("a"),
        ready_pod("b"),
        ready_pod("c", ready=False),
        ready_pod("d", deleting=True),
    ]
    status = budget_status(pdb({"minAvailable": 2}), pods, lambda ns, ref: 99)
    assert (status.current_healthy, status.desired_healthy, status.expected_pods) == (2, 2, 4)
    assert status.disruptions_allowed == 0


def test_pdb_percentages_use_the_controllers_scale() -> None:
    pods = [ready_pod(n) for n in "abc"]
    scale = {"rs-1": 4}
    status = budget_status(pdb({"maxUnavailable": "50%"}), pods, lambda ns, ref: scale[ref["uid"]])
    assert (status.expected_pods, status.desired_healthy, status.disruptions_allowed) == (4, 2, 1)
    status = budget_status(pdb({"minAvailable": "50%"}), pods, lambda ns, ref: 3)
    assert (status.desired_healthy, status.disruptions_allowed) == (2, 1)  # 1.5 rounds up
    with pytest.raises(ScaleUnknownError, match="found no controllers"):
        budget_status(pdb({"maxUnavailable": 1}), pods, lambda ns, ref: None)


def test_pdb_disrupted_pods_expire_after_two_minutes() -> None:
    now = dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    recent = (now - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = (now - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [ready_pod("a"), ready_pod("b"), ready_pod("c")]
    budget = pdb({"minAvailable": 1}, {"a": recent, "b": stale, "gone": recent})
    status = budget_status(budget, pods, lambda ns, ref: 3, moment=now)
    assert status.disrupted_pods == {"a": recent}
    assert status.current_healthy == 2
    assert status.disruptions_allowed == 1
    assert status.next_expiry == now + dt.timedelta(seconds=90)


def test_daemonset_eligibility_and_binding() -> None:
    template = {"containers": [{"name": "c"}]}
    assert should_run(template, node("a")) == (True, True)
    cordoned = node("b", spec={"unschedulable": True, "taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]})  # fmt: skip
    assert should_run(template, cordoned) == (True, True)
    tainted = node("c", spec={"taints": [{"key": "dedicated", "effect": "NoSchedule"}]})
    assert should_run(template, tainted) == (False, True)
    evicting = node("d", spec={"taints": [{"key": "dedicated", "effect": "NoExecute"}]})
    assert should_run(template, evicting) == (False, False)
    spec = bind_to_node(template, "a")
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}  # fmt: skip
    keys = {(t["key"], t["effect"]) for t in spec["tolerations"]}
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys


def test_node_lifecycle_taints() -> None:
    custom = {"key": "dedicated", "effect": "NoSchedule"}
    base = node("a", spec={"taints": [custom], "unschedulable": True})
    assert wanted_taints(base, "True") == [
        custom,
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
    ]
    unknown = wanted_taints(base, "Unknown")
    assert {(t["key"], t["effect"]) for t in unknown} == {
        ("dedicated", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    recovered = node("a", spec={"taints": unknown})
    assert wanted_taints(recovered, "True") == [custom]
