"""PDB analysis: which budgets can never allow a disruption, on client model objects."""

from __future__ import annotations

import pytest
from kubernetes import client

from clustergate.budgets import analyse, never_disrupts, scaled_value, selector_matches, workload_of


def _pod(
    name: str,
    labels: dict[str, str],
    namespace: str = "shop",
    phase: str = "Running",
    owner: tuple[str, str] | None = ("ReplicaSet", "web-5d9f8"),
) -> client.V1Pod:
    refs = None
    if owner:
        refs = [
            client.V1OwnerReference(
                api_version="apps/v1",
                kind=owner[0],
                name=owner[1],
                uid="u-" + owner[1],
                controller=True,
            )
        ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, labels=labels, owner_references=refs
        ),
        status=client.V1PodStatus(phase=phase),
    )


def _pdb(
    name: str,
    selector: client.V1LabelSelector | None,
    *,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    expected: int | None = None,
    namespace: str = "shop",
) -> client.V1PodDisruptionBudget:
    status = None
    if expected is not None:
        status = client.V1PodDisruptionBudgetStatus(
            current_healthy=expected,
            desired_healthy=0,
            disruptions_allowed=0,
            expected_pods=expected,
            observed_generation=1,
        )
    return client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, generation=1),
        spec=client.V1PodDisruptionBudgetSpec(
            selector=selector, min_available=min_available, max_unavailable=max_unavailable
        ),
        status=status,
    )


WEB = client.V1LabelSelector(match_labels={"app": "web"})
WEB_PODS = [_pod(f"web-5d9f8-{i}", {"app": "web", "pod-template-hash": "5d9f8"}) for i in range(3)]


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(2, 10, 2), ("2", 10, 2), ("50%", 3, 2), ("0%", 5, 0), ("100%", 3, 3), ("34%", 3, 2)],
)
def test_percentages_are_scaled_and_rounded_up(value: int | str, total: int, expected: int) -> None:
    assert scaled_value(value, total) == expected


def test_selector_semantics() -> None:
    labels = {"app": "web", "tier": "front"}
    assert not selector_matches(None, labels), "a null PDB selector selects nothing (policy/v1)"
    assert selector_matches(client.V1LabelSelector(), labels), "an empty selector selects all"
    expr = client.V1LabelSelectorRequirement
    assert selector_matches(
        client.V1LabelSelector(
            match_expressions=[
                expr(key="tier", operator="In", values=["front"]),
                expr(key="gone", operator="DoesNotExist"),
            ]
        ),
        labels,
    )
    assert not selector_matches(
        client.V1LabelSelector(
            match_expressions=[expr(key="tier", operator="NotIn", values=["front"])]
        ),
        labels,
    )
    assert not selector_matches(
        client.V1LabelSelector(
            match_labels={"app": "web"}, match_expressions=[expr(key="zone", operator="Exists")]
        ),
        labels,
    )


@pytest.mark.parametrize(
    ("pdb", "blocks"),
    [
        (_pdb("a", WEB, max_unavailable=0), True),
        (_pdb("a", WEB, max_unavailable="0%"), True),
        (_pdb("a", WEB, max_unavailable=1), False),
        (_pdb("a", WEB, max_unavailable="10%"), False),
        (_pdb("a", WEB, min_available="100%"), True),
        (_pdb("a", WEB, min_available=3), True),
        (_pdb("a", WEB, min_available=2), False),
        (_pdb("a", WEB, min_available="67%"), True),
        (_pdb("a", WEB, min_available="50%"), False),
    ],
)
def test_never_disrupts(pdb: client.V1PodDisruptionBudget, blocks: bool) -> None:
    assert (never_disrupts(pdb, expected=3) is not None) == blocks


def test_expected_pods_come_from_the_controller_status_once_observed() -> None:
    # 3 pods are running but the Deployment wants 5 (a rollout): minAvailable 4 still allows one.
    findings = analyse([_pdb("web", WEB, min_available=4, expected=5)], WEB_PODS)
    assert findings == []
    findings = analyse([_pdb("web", WEB, min_available=4)], WEB_PODS)
    assert [f.reason for f in findings] == ["minAvailable 4 >= the 3 pod(s) it expects"]


def test_findings_name_the_budget_its_reason_and_workload() -> None:
    pdbs = [
        _pdb("web-strict", WEB, max_unavailable=0),
        _pdb("typo", client.V1LabelSelector(match_labels={"app": "wbe"}), min_available=1),
        _pdb("fine", client.V1LabelSelector(match_labels={"app": "api"}), max_unavailable=1),
    ]
    pods = [*WEB_PODS, _pod("api-0", {"app": "api"}, owner=("StatefulSet", "api"))]
    findings = {f.name: f for f in analyse(pdbs, pods)}
    assert set(findings) == {"web-strict", "typo"}
    assert findings["web-strict"].workloads == ("Deployment/web",)
    assert "maxUnavailable is 0" in findings["web-strict"].describe()
    assert "matches no pod in shop" in findings["typo"].reason
    assert findings["typo"].describe().endswith("(covers no workload)")


def test_pods_under_two_budgets_are_reported_for_each_budget() -> None:
    pdbs = [
        _pdb("web-a", WEB, max_unavailable=1),
        _pdb(
            "web-b",
            client.V1LabelSelector(match_labels={"pod-template-hash": "5d9f8"}),
            max_unavailable=1,
        ),
    ]
    findings = analyse(pdbs, WEB_PODS)
    assert sorted((f.name, f.reason) for f in findings) == [
        ("web-a", "pod(s) also covered by web-b: the eviction API refuses them (500)"),
        ("web-b", "pod(s) also covered by web-a: the eviction API refuses them (500)"),
    ]


def test_finished_pods_and_other_namespaces_do_not_count() -> None:
    pods = [
        _pod("job-1", {"app": "web"}, phase="Succeeded", owner=("Job", "job")),
        _pod("web-0", {"app": "web"}, namespace="other"),
    ]
    findings = analyse([_pdb("web", WEB, max_unavailable=1)], pods)
    assert [f.reason for f in findings] == ["its selector matches no pod in shop"]


def test_workload_names() -> None:
    assert workload_of(WEB_PODS[0]) == "Deployment/web"
    assert workload_of(_pod("s-0", {}, owner=("StatefulSet", "s"))) == "StatefulSet/s"
    assert workload_of(_pod("rs-x", {}, owner=("ReplicaSet", "rs"))) == "ReplicaSet/rs"
    assert workload_of(_pod("lonely", {}, owner=None)) == "Pod/lonely"
