"""What the DNS checks share: the kube-dns address and the nodes that must run a cache."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from clustergate import dnscheck
from clustergate.kube import Cluster, list_all


@pytest.fixture(scope="session")
def kube_dns_ip(cluster: Cluster) -> str:
    service = cluster.core().read_namespaced_service(dnscheck.KUBE_DNS, dnscheck.NAMESPACE)
    return str(service.spec.cluster_ip)


@pytest.fixture(scope="session")
def kube_dns_upstream_ip(cluster: Cluster) -> str | None:
    """The ClusterIP of kube-dns-upstream, where the caches send cluster names (None when
    the Service is missing: a check of its own says so)."""
    try:
        service = cluster.core().read_namespaced_service(
            dnscheck.KUBE_DNS_UPSTREAM, dnscheck.NAMESPACE
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(service.spec.cluster_ip)


@pytest.fixture(scope="module")
def cache_nodes(cluster: Cluster) -> list[dnscheck.NodePlace]:
    places = dnscheck.cache_nodes(list_all(cluster.core().list_node))
    if not places:
        pytest.fail("no Ready, uncordoned, non-Fargate node: nothing to check", pytrace=False)
    return places
