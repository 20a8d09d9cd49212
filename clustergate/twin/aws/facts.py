"""What the AWS side created, for the cluster config the suites read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IrsaMapping:
    namespace: str
    service_account: str
    role_arn: str
    #: Roles this service account must NOT be able to assume (the other mappings' roles).
    denied_role_arns: tuple[str, ...] = ()
    #: (boto3 client name, operation) its role's policies allow, and calls they do not.
    may_call: tuple[tuple[str, str], ...] = ()
    must_not_call: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AwsFacts:
    account_id: str
    region: str
    cluster_name: str
    issuer: str
    oidc_provider_arn: str
    node_role_arn: str
    endpoint_url: str
    irsa: tuple[IrsaMapping, ...] = ()
    #: managed node group name -> its Auto Scaling group
    asg_names: dict[str, str] = field(default_factory=dict)
    #: managed node group name -> its launch template id
    launch_template_ids: dict[str, str] = field(default_factory=dict)
