"""What the IRSA checks share: the cluster's issuer and its IAM OIDC provider."""

from __future__ import annotations

import boto3
import pytest

from clustergate import irsa
from clustergate.config import ClusterConfig, IrsaMapping


@pytest.fixture(scope="session")
def mappings(cluster_config: ClusterConfig) -> tuple[IrsaMapping, ...]:
    if not cluster_config.irsa.mappings:
        pytest.skip("irsa.mappings in the cluster config is empty: no service account to check")
    return cluster_config.irsa.mappings


@pytest.fixture(scope="session")
def issuer(aws: boto3.Session, cluster_config: ClusterConfig) -> str:
    return irsa.cluster_issuer(aws.client("eks"), cluster_config.cluster.name)


@pytest.fixture(scope="session")
def oidc_provider(aws: boto3.Session, issuer: str) -> irsa.OidcProvider:
    provider = irsa.find_oidc_provider(aws.client("iam"), issuer)
    if provider is None:
        pytest.fail(
            f"no IAM OIDC provider in the account for the cluster's issuer {issuer} "
            "(iam:ListOpenIDConnectProviders): no pod can assume any role; create it "
            "(eksctl utils associate-iam-oidc-provider --approve)",
            pytrace=False,
        )
    return provider
