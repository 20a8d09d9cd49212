"""What the cutover checks share: the cutover section of the config and its weight driver."""

from __future__ import annotations

import boto3
import pytest

from clustergate.config import ClusterConfig, CutoverSection
from clustergate.weights import Weights, weights_for


@pytest.fixture(scope="session")
def cutover(cluster_config: ClusterConfig) -> CutoverSection:
    if cluster_config.cutover is None:
        pytest.skip("cutover is not set in the cluster config: no endpoint to shift traffic on")
    return cluster_config.cutover


@pytest.fixture(scope="session")
def weights(cutover: CutoverSection, aws: boto3.Session) -> Weights:
    return weights_for(cutover.driver, aws)
