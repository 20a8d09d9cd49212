"""boto3 clients that talk to the moto server directly (not through the gateway).

They are for the AWS side's own bookkeeping; blocking calls, so callers run them in
``asyncio.to_thread``. moto does not check signatures, so any static credentials do.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

#: Credentials of the twin's own administrator; moto accepts any.
ADMIN_ACCESS_KEY = "AKIACLUSTERGATETWIN0"
ADMIN_SECRET_KEY = "clustergate-twin-admin-secret"

#: One session for every client: it caches the service models it loaded (EC2's alone takes a
#: second), so a restarted AWS side builds its clients at once. Sessions are not thread-safe
#: while creating clients, hence the lock.
_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@dataclass(frozen=True)
class OidcProvider:
    arn: str
    url: str  # without https://, as IAM stores it
    client_ids: tuple[str, ...]


def client(service: str, endpoint_url: str, region: str) -> Any:
    with _SESSION_LOCK:
        return _session().client(
            service,
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=ADMIN_ACCESS_KEY,
            aws_secret_access_key=ADMIN_SECRET_KEY,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )


class MotoClients:
    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.iam = client("iam", endpoint_url, region)
        self.sts = client("sts", endpoint_url, region)
        self.eks = client("eks", endpoint_url, region)
        self.ec2 = client("ec2", endpoint_url, region)
        self.autoscaling = client("autoscaling", endpoint_url, region)

    def find_oidc_provider(self, url: str) -> OidcProvider | None:
        """The IAM OIDC provider whose URL is ``url`` (issuer without the scheme)."""
        for entry in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            arn = entry["Arn"]
            if arn.split(":oidc-provider/", 1)[-1] != url:
                continue
            provider = self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            return OidcProvider(arn, provider["Url"], tuple(provider.get("ClientIDList", ())))
        return None

    def trust_policy(self, role_arn: str) -> dict[str, Any] | None:
        """The trust policy of the role ``role_arn``, or None when there is no such role."""
        role_name = role_arn.rsplit("/", 1)[-1]
        try:
            role = self.iam.get_role(RoleName=role_name)["Role"]
        except self.iam.exceptions.NoSuchEntityException:
            return None
        if role["Arn"] != role_arn:
            return None
        return role["AssumeRolePolicyDocument"]
