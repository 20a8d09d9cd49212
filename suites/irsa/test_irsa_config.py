"""IRSA as configured: the OIDC provider, the service accounts' annotations, the roles' trust
policies, and no kube2iam leftovers. Read-only."""

from __future__ import annotations

import boto3
import pytest
from kubernetes.client.exceptions import ApiException

from clustergate import irsa
from clustergate.config import ClusterConfig, IrsaMapping
from clustergate.kube import Cluster, list_all

pytestmark = [pytest.mark.irsa, pytest.mark.gate]


def test_cluster_issuer_has_an_oidc_provider_for_the_sts_audience(
    cluster_config: ClusterConfig, issuer: str, oidc_provider: irsa.OidcProvider
) -> None:
    audience = cluster_config.irsa.audience
    assert audience in oidc_provider.client_ids, (
        f"IAM OIDC provider {oidc_provider.arn} for issuer {issuer} lists audiences "
        f"{list(oidc_provider.client_ids)}, not {audience}: STS refuses every pod token with "
        f"InvalidIdentityToken 'Incorrect token audience'; add {audience} as a client ID"
    )


def test_each_service_account_carries_its_role(
    cluster: Cluster, mappings: tuple[IrsaMapping, ...]
) -> None:
    problems = []
    for mapping in mappings:
        try:
            account = cluster.core().read_namespaced_service_account(
                mapping.service_account, mapping.namespace
            )
        except ApiException as error:
            if error.status != 404:
                raise
            problems.append(f"service account {irsa.mapping_label(mapping)} does not exist")
            continue
        found = (account.metadata.annotations or {}).get(irsa.ROLE_ANNOTATION)
        if found != mapping.role_arn:
            problems.append(
                f"service account {irsa.mapping_label(mapping)} has {irsa.ROLE_ANNOTATION}="
                f"{found!r}, expected {mapping.role_arn}"
            )
    assert not problems, "; ".join(problems)


def test_each_trust_policy_admits_exactly_its_service_account(
    aws: boto3.Session,
    cluster_config: ClusterConfig,
    mappings: tuple[IrsaMapping, ...],
    oidc_provider: irsa.OidcProvider,
) -> None:
    iam = aws.client("iam")
    reports = []
    for mapping in mappings:
        shared = frozenset(
            irsa.subject_of(other.namespace, other.service_account)
            for other in mappings
            if other.role_arn == mapping.role_arn and other != mapping
        )
        expectation = irsa.TrustExpectation(
            provider_arn=oidc_provider.arn,
            namespace=mapping.namespace,
            service_account=mapping.service_account,
            audience=cluster_config.irsa.audience,
            namespace_wide=mapping.namespace_wide,
            shared_with=shared,
        )
        try:
            problems = [
                problem.describe()
                for problem in irsa.analyse_trust_policy(
                    irsa.trust_policy(iam, mapping.role_arn), expectation
                )
            ]
        except LookupError as error:
            problems = [str(error)]
        if problems:
            reports.append(
                f"role {mapping.role_arn} (service account {irsa.mapping_label(mapping)}):\n  - "
                + "\n  - ".join(problems)
            )
    assert not reports, (
        "trust policies must let exactly their service account in (StringEquals on :sub and "
        ":aud, this cluster's provider):\n" + "\n".join(reports)
    )


def test_no_kube2iam_annotations_are_left(cluster: Cluster) -> None:
    core = cluster.core()
    leftovers = irsa.kube2iam_leftovers(
        list_all(core.list_namespace), list_all(core.list_pod_for_all_namespaces)
    )
    assert not leftovers, (
        f"{len(leftovers)} kube2iam/kiam annotation(s) left; IRSA ignores them, so these "
        "workloads get no role from them:\n  " + "\n  ".join(leftovers)
    )
