"""kubectl drain's pod filters and the reading of a 429 eviction answer."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from clustergate.drain import DrainOptions, parse_refusal, plan_drain


def _pod(
    name: str,
    owner: str | None = "ReplicaSet",
    *,
    phase: str = "Running",
    empty_dir: bool = False,
    mirror: bool = False,
) -> client.V1Pod:
    refs = None
    if owner:
        refs = [
            client.V1OwnerReference(
                api_version="v1", kind=owner, name="o", uid="u", controller=True
            )
        ]
    volumes = (
        [client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource())]
        if empty_dir
        else None
    )
    annotations = {"kubernetes.io/config.mirror": "hash"} if mirror else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, namespace="ns", owner_references=refs, annotations=annotations
        ),
        spec=client.V1PodSpec(containers=[], volumes=volumes),
        status=client.V1PodStatus(phase=phase),
    )


NEEDS = "The disruption budget web needs 3 healthy pods and has 3 currently"
PROCESSING = "The disruption budget web is still being processed by the server."
PODS = [
    _pod("web"),
    _pod("ds", "DaemonSet"),
    _pod("ds-done", "DaemonSet", phase="Succeeded"),
    _pod("static", "Node", mirror=True),
    _pod("cache", empty_dir=True),
    _pod("bare", None),
    _pod("bare-done", None, phase="Failed"),
]


def _names(pods: tuple) -> list[str]:
    return [
        item[0].metadata.name if isinstance(item, tuple) else item.metadata.name for item in pods
    ]


def test_defaults_skip_daemonsets_and_mirrors_and_refuse_local_storage_and_bare_pods() -> None:
    plan = plan_drain(PODS, DrainOptions(timeout_s=60))
    assert _names(plan.evict) == ["web", "ds-done", "bare-done"]
    assert dict((p.metadata.name, why) for p, why in plan.skipped) == {
        "ds": "DaemonSet-managed",
        "static": "mirror pod",
    }
    refused = {p.metadata.name: why for p, why in plan.refused}
    assert set(refused) == {"cache", "bare"}
    assert "emptyDir" in refused["cache"]
    assert "no controller" in refused["bare"]


def test_flags_allow_what_kubectl_flags_allow() -> None:
    options = DrainOptions(timeout_s=60, delete_emptydir_data=True, force=True)
    plan = plan_drain(PODS, options)
    assert _names(plan.evict) == ["web", "ds-done", "cache", "bare", "bare-done"]
    strict = plan_drain(
        PODS,
        DrainOptions(timeout_s=60, ignore_daemonsets=False, force=True, delete_emptydir_data=True),
    )
    assert _names(strict.refused) == ["ds"]


def test_a_429_names_its_budget() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "code": 429,
            "reason": "TooManyRequests",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "details": {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": NEEDS,
                    }
                ]
            },
        }
    )
    assert parse_refusal(body) == (
        "web",
        NEEDS,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            json.dumps(
                {
                    "message": PROCESSING,
                    "details": {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": PROCESSING,
                            }
                        ]
                    },
                }
            ),
            ("web", PROCESSING),
        ),
        (json.dumps({"message": "too many requests"}), ("", "too many requests")),
        ("not json", ("", "not json")),
    ],
)
def test_other_429_bodies(body: str, expected: tuple[str, str]) -> None:
    assert parse_refusal(body) == expected


def test_a_drain_needs_a_deadline() -> None:
    from clustergate.drain import drain_node

    with pytest.raises(ValueError, match="deadline"):
        drain_node(None, "n", DrainOptions(timeout_s=0))  # type: ignore[arg-type]
