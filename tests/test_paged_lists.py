"""Cluster-wide lists come in pages, against the twin's API server through the official client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from clustergate.kube import connect, list_all


@pytest.fixture
def core(twin):
    return connect(str(twin.kubeconfig), None).core()


def _counting(list_fn: Callable[..., Any], calls: list[dict[str, Any]]) -> Callable[..., Any]:
    def counted(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return list_fn(**kwargs)

    return counted


def test_a_paged_list_returns_what_one_list_returns(core) -> None:
    whole = core.list_pod_for_all_namespaces().items
    assert len(whole) > 4, "the twin runs more pods than two pages of 2"
    calls: list[dict[str, Any]] = []
    paged = list_all(_counting(core.list_pod_for_all_namespaces, calls), page_size=2)
    names = [(p.metadata.namespace, p.metadata.name) for p in paged]
    assert sorted(names) == sorted((p.metadata.namespace, p.metadata.name) for p in whole)
    assert len(calls) == -(-len(whole) // 2)
    assert all(call["limit"] == 2 for call in calls)


def test_an_expired_continue_token_reads_the_list_again_whole(core) -> None:
    # The twin keeps 50,000 changes before a continue token expires; provoking that here would
    # take minutes, so the 410 of the second page is played by a wrapper. The rest is real.
    calls: list[dict[str, Any]] = []

    def expiring(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if kwargs.get("_continue"):
            raise ApiException(status=410, reason="Expired")
        return core.list_pod_for_all_namespaces(**kwargs)

    whole = core.list_pod_for_all_namespaces().items
    assert len(list_all(expiring, page_size=2)) == len(whole)
    assert "limit" not in calls[-1]
