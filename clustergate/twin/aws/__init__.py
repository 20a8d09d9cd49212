"""The twin's AWS side: moto server behind a gateway that adds what moto lacks (verified
AssumeRoleWithWebIdentity, the cluster's real issuer), instance metadata per node, and the
instance fleet that follows the Auto Scaling groups."""

from clustergate.twin.aws.facts import AwsFacts, IrsaMapping
from clustergate.twin.aws.side import AwsSide

__all__ = ["AwsFacts", "AwsSide", "IrsaMapping"]
