"""Karpenter's AWS side: the EC2 calls that resolve an EC2NodeClass's selector terms.

Blocking boto3 calls against the twin's public EC2 and IAM endpoints (resolved through the
netmap, as the pod's network would); the runtime calls them in ``asyncio.to_thread``.
Credentials are dummies, as the controller's IRSA role would be allowed these calls.
"""

from __future__ import annotations

import zlib
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from clustergate.twin.karpenter.nodeclass import Resolved, ec2_filters
from clustergate.twin.netmap import Netmap

Obj = dict[str, Any]
#: amiSelectorTerms alias family -> the EKS-optimized AMI name prefix the twin registers.
ALIAS_NAME_PREFIX = {"al2": "amazon-eks-node-", "al2023": "amazon-eks-node-"}


class Ec2:
    def __init__(self, netmap: Netmap, region: str, cluster: str, kubernetes_minor: str) -> None:
        def client(service: str, host: str) -> Any:
            return boto3.client(
                service,
                region_name=region,
                endpoint_url=netmap.resolve_url(f"https://{host}"),
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            )

        self._ec2 = client("ec2", f"ec2.{region}.amazonaws.com")
        self._iam = client("iam", "iam.amazonaws.com")
        self._minor = kubernetes_minor
        self._cluster = cluster

    def resolve(self, spec: Obj) -> Resolved:
        subnets: dict[str, Obj] = {}
        for term in spec.get("subnetSelectorTerms") or []:
            for subnet in self._ec2.describe_subnets(**ec2_filters(term))["Subnets"]:
                subnets[subnet["SubnetId"]] = {
                    "id": subnet["SubnetId"],
                    "zone": subnet["AvailabilityZone"],
                    "zoneID": subnet.get("AvailabilityZoneId", ""),
                }
        groups: dict[str, Obj] = {}
        for term in spec.get("securityGroupSelectorTerms") or []:
            for group in self._ec2.describe_security_groups(**ec2_filters(term))["SecurityGroups"]:
                groups[group["GroupId"]] = {"id": group["GroupId"], "name": group["GroupName"]}
        return Resolved(
            subnets=sorted(subnets.values(), key=lambda s: (s["zone"], s["id"])),
            security_groups=sorted(groups.values(), key=lambda g: g["id"]),
            amis=self._amis(spec.get("amiSelectorTerms") or []),
            instance_profile=self._instance_profile(spec),
        )

    def launch(self, claim: str, pool: str, node_class: Obj, instance_type: str) -> Obj:
        """RunInstances for one NodeClaim in the class's first subnet, with its security groups
        and newest AMI, tagged as Karpenter tags its instances. The instance as EC2 returns it."""
        status = node_class.get("status") or {}
        subnet = status["subnets"][0]
        tags = {
            "karpenter.sh/nodeclaim": claim,
            "karpenter.sh/nodepool": pool,
            "karpenter.k8s.aws/ec2nodeclass": node_class["metadata"]["name"],
            f"kubernetes.io/cluster/{self._cluster}": "owned",
            "eks:eks-cluster-name": self._cluster,
            "Name": f"{pool}/{claim}",
            **((node_class.get("spec") or {}).get("tags") or {}),
        }
        reservation = self._ec2.run_instances(
            ImageId=status["amis"][0]["id"],
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet["id"],
            SecurityGroupIds=[group["id"] for group in status["securityGroups"]],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                }
            ],
        )
        instance: Obj = reservation["Instances"][0]
        return instance

    def terminate(self, instance_id: str) -> None:
        self._ec2.terminate_instances(InstanceIds=[instance_id])

    def _amis(self, terms: list[Obj]) -> list[Obj]:
        images: dict[str, Obj] = {}
        for term in terms:
            if term.get("id"):
                arguments: dict[str, Any] = {"ImageIds": [term["id"]]}
            elif term.get("alias"):
                family = str(term["alias"]).split("@", 1)[0].lower()
                prefix = ALIAS_NAME_PREFIX.get(family)
                if prefix is None:
                    continue
                arguments = {"Filters": [{"Name": "name", "Values": [f"{prefix}{self._minor}-*"]}]}
            elif term.get("name"):
                arguments = {"Filters": [{"Name": "name", "Values": [term["name"]]}]}
            else:
                arguments = {"Filters": ec2_filters(term).get("Filters", [])}
            try:
                found = self._ec2.describe_images(**arguments)["Images"]
            except ClientError:
                continue
            for image in found:
                images[image["ImageId"]] = {"id": image["ImageId"], "name": image.get("Name", "")}
        return sorted(images.values(), key=lambda i: i["name"], reverse=True)

    def _instance_profile(self, spec: Obj) -> str:
        """An explicit instanceProfile if it exists; else the one Karpenter creates for the role,
        named ``<cluster>_<hash>`` as upstream names it."""
        if spec.get("instanceProfile"):
            try:
                self._iam.get_instance_profile(InstanceProfileName=spec["instanceProfile"])
            except ClientError:
                return ""
            return str(spec["instanceProfile"])
        role = spec.get("role")
        if not role:
            return ""
        try:
            self._iam.get_role(RoleName=role)
        except ClientError:
            return ""
        return f"{self._cluster}_{zlib.crc32(role.encode())}"
