"""Creates the twin's AWS account contents in moto, as eksctl/Terraform would for a cluster.

Blocking boto3 calls against moto: run :func:`provision` in ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import botocore.session

from clustergate.twin.aws.facts import IrsaMapping
from clustergate.twin.aws.images import ImageCatalog
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.releases import release_version
from clustergate.twin.settings import NodeGroupShape, TwinSettings

STS_AUDIENCE = "sts.amazonaws.com"
#: Thumbprint used when the issuer has no CA of its own to take one from (the documented
#: thumbprint of the root CA behind oidc.eks.*.amazonaws.com).
EKS_OIDC_ROOT_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"

#: (namespace, service account, role name, bucket the role may read, a read-only call it may make)
IRSA_SAMPLES: tuple[tuple[str, str, str, str, tuple[str, str]], ...] = (
    (
        "payments",
        "payments-api",
        "clustergate-twin-payments-api",
        "clustergate-twin-payments",
        ("autoscaling", "DescribeAutoScalingGroups"),
    ),
    (
        "orders",
        "orders-worker",
        "clustergate-twin-orders-worker",
        "clustergate-twin-orders",
        ("elbv2", "DescribeLoadBalancers"),
    ),
)
#: No IRSA role of the twin may read IAM.
NOBODY_MAY_CALL = ("iam", "ListRoles")


@dataclass(frozen=True)
class GroupPlan:
    """A managed node group as the instance fleet needs to know it."""

    shape: NodeGroupShape
    asg_name: str
    launch_template_id: str
    ami_id: str


@dataclass(frozen=True)
class Provisioned:
    oidc_provider_arn: str
    node_role_arn: str
    node_role_name: str
    instance_profile_arn: str
    irsa: tuple[IrsaMapping, ...]
    groups: tuple[GroupPlan, ...]


def _document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _iam_action(client: str, operation: str) -> str:
    """``elbv2``, ``DescribeLoadBalancers`` → ``elasticloadbalancing:DescribeLoadBalancers``."""
    model = botocore.session.get_session().get_service_model(client)
    return f"{model.signing_name}:{operation}"


def _service_trust(service: str) -> str:
    return _document(
        [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    )


def irsa_trust_policy(
    provider_arn: str, provider_url: str, namespace: str, service_account: str, faults: frozenset
) -> str:
    """The trust policy EKS documents for one service account, or its faulty variant."""
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    conditions: dict[str, dict[str, str]] = {
        "StringEquals": {f"{provider_url}:sub": subject, f"{provider_url}:aud": STS_AUDIENCE}
    }
    if "irsa-wildcard-trust" in faults and service_account == "payments-api":
        del conditions["StringEquals"][f"{provider_url}:sub"]
        conditions["StringLike"] = {f"{provider_url}:sub": "system:serviceaccount:*"}
    if "irsa-no-audience" in faults and service_account == "orders-worker":
        del conditions["StringEquals"][f"{provider_url}:aud"]
    return _document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": conditions,
            }
        ]
    )


@dataclass(frozen=True)
class DefaultVpc:
    """What the account has before the cluster: the default VPC's subnets and an AMI."""

    subnets: dict[str, str]  # availability zone -> default subnet id
    ami_id: str


def look_around(moto: MotoClients, kubernetes_version: str, images: ImageCatalog) -> DefaultVpc:
    """The default VPC's subnets and the node AMI (registered in ``images``, named as the
    EKS-optimized AMI is). moto builds its EC2 region on the first call, which takes seconds:
    the AWS side does this while the API server starts."""
    subnets = {
        subnet["AvailabilityZone"]: subnet["SubnetId"]
        for subnet in moto.ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}]
        )["Subnets"]
    }
    ami_id = images.register(moto, release_version(kubernetes_version))
    return DefaultVpc(subnets=subnets, ami_id=ami_id)


def provision(
    moto: MotoClients, settings: TwinSettings, vpc: DefaultVpc, issuer: str, thumbprint: str
) -> Provisioned:
    net = settings.network
    cluster = net.cluster_name
    iam = moto.iam

    provider_url = issuer.removeprefix("https://")
    provider_arn = iam.create_open_id_connect_provider(
        Url=issuer, ClientIDList=[STS_AUDIENCE], ThumbprintList=[thumbprint]
    )["OpenIDConnectProviderArn"]

    cluster_role = iam.create_role(
        RoleName=f"{cluster}-cluster-role",
        AssumeRolePolicyDocument=_service_trust("eks.amazonaws.com"),
    )["Role"]
    zones = sorted({group.zone for group in settings.node_groups})
    subnets = vpc.subnets
    moto.eks.create_cluster(
        name=cluster,
        version=net.kubernetes_version,
        roleArn=cluster_role["Arn"],
        resourcesVpcConfig={"subnetIds": [subnets[z] for z in zones if z in subnets]},
    )

    if settings.autoscaler == "karpenter":
        _tag_for_karpenter(moto, cluster, [subnets[z] for z in zones if z in subnets])

    node_role_name = f"{cluster}-node-role"
    node_role = iam.create_role(
        RoleName=node_role_name, AssumeRolePolicyDocument=_service_trust("ec2.amazonaws.com")
    )["Role"]
    profile = iam.create_instance_profile(InstanceProfileName=f"{cluster}-node")
    iam.add_role_to_instance_profile(InstanceProfileName=f"{cluster}-node", RoleName=node_role_name)

    groups = tuple(
        _node_group(moto, settings, group, node_role["Arn"], profile, vpc.ami_id, subnets)
        for group in settings.node_groups
    )

    roles: list[tuple[str, str, str, tuple[str, str]]] = []
    for namespace, service_account, role_name, bucket, call in IRSA_SAMPLES:
        role = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=irsa_trust_policy(
                provider_arn, provider_url, namespace, service_account, settings.faults
            ),
            Description=f"IRSA role of {namespace}/{service_account}",
        )["Role"]
        iam.put_role_policy(
            RoleName=role_name,
            PolicyName="read-bucket",
            PolicyDocument=_document(
                [
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    },
                    {"Effect": "Allow", "Action": _iam_action(*call), "Resource": "*"},
                ]
            ),
        )
        if "irsa-role-admin" in settings.faults and service_account == "payments-api":
            iam.put_role_policy(
                RoleName=role_name,
                PolicyName="administrator",
                PolicyDocument=_document([{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
            )
        roles.append((namespace, service_account, role["Arn"], call))
    irsa = tuple(
        IrsaMapping(
            ns,
            sa,
            arn,
            tuple(other for _, _, other, _ in roles if other != arn),
            may_call=(call,),
            must_not_call=(
                *(other for _, _, role, other in roles if role != arn),
                NOBODY_MAY_CALL,
            ),
        )
        for ns, sa, arn, call in roles
    )
    return Provisioned(
        oidc_provider_arn=provider_arn,
        node_role_arn=node_role["Arn"],
        node_role_name=node_role_name,
        instance_profile_arn=profile["InstanceProfile"]["Arn"],
        irsa=irsa,
        groups=groups,
    )


def _tag_for_karpenter(moto: MotoClients, cluster: str, subnet_ids: list[str]) -> None:
    """Karpenter's getting-started setup: the cluster's subnets and its security group carry
    ``karpenter.sh/discovery: <cluster>``, which the default EC2NodeClass selects by."""
    groups = moto.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    moto.ec2.create_tags(
        Resources=[*subnet_ids, *(g["GroupId"] for g in groups[:1])],
        Tags=[{"Key": "karpenter.sh/discovery", "Value": cluster}],
    )


def _node_group(
    moto: MotoClients,
    settings: TwinSettings,
    group: NodeGroupShape,
    node_role_arn: str,
    profile: dict[str, Any],
    ami_id: str,
    subnets: dict[str, str],
) -> GroupPlan:
    cluster = settings.network.cluster_name
    hop_limit = 2 if settings.has_fault("imds-hop-limit-2") else group.imds_hop_limit
    template = moto.ec2.create_launch_template(
        LaunchTemplateName=f"eks-{cluster}-{group.name}",
        LaunchTemplateData={
            "ImageId": ami_id,
            "InstanceType": group.instance_type,
            "IamInstanceProfile": {"Arn": profile["InstanceProfile"]["Arn"]},
            "MetadataOptions": {
                "HttpEndpoint": "enabled",
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": hop_limit,
            },
        },
    )["LaunchTemplate"]
    nodegroup = moto.eks.create_nodegroup(
        clusterName=cluster,
        nodegroupName=group.name,
        nodeRole=node_role_arn,
        subnets=[subnets[group.zone]] if group.zone in subnets else [],
        scalingConfig={
            "minSize": group.min_size,
            "maxSize": group.max_size,
            "desiredSize": group.size,
        },
        launchTemplate={"id": template["LaunchTemplateId"], "version": "1"},
        version=settings.network.kubernetes_version,
        releaseVersion=release_version(settings.network.kubernetes_version),
        capacityType="ON_DEMAND",
        tags={"eks:cluster-name": cluster},
    )["nodegroup"]
    # moto names the group's ASG without creating it; create it under that name.
    asg_name = nodegroup["resources"]["autoScalingGroups"][0]["name"]
    tags = {
        "k8s.io/cluster-autoscaler/enabled": "true",
        f"k8s.io/cluster-autoscaler/{cluster}": "owned",
        f"kubernetes.io/cluster/{cluster}": "owned",
        "eks:cluster-name": cluster,
        "eks:nodegroup-name": group.name,
    }
    moto.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=asg_name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
        MinSize=group.min_size,
        MaxSize=group.max_size,
        DesiredCapacity=group.size,
        AvailabilityZones=[group.zone],
        Tags=[
            {
                "ResourceId": asg_name,
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": True,
            }
            for key, value in tags.items()
        ],
    )
    return GroupPlan(
        shape=group,
        asg_name=asg_name,
        launch_template_id=template["LaunchTemplateId"],
        ami_id=ami_id,
    )
