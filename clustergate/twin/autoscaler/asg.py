"""The autoscaler's AWS cloud provider: Auto Scaling groups found by their tags.

Blocking boto3 calls against the twin's AWS endpoint (the public Auto Scaling URL resolved
through the netmap, as the pod's network would); the runtime calls them in
``asyncio.to_thread``. Credentials are dummies: the twin's AWS side does not check them for
Auto Scaling, as the pod's IRSA role would be allowed these calls on EKS.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from clustergate.twin.autoscaler.simulation import NodeGroup
from clustergate.twin.netmap import Netmap

ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"


def cluster_tag(cluster: str) -> str:
    return f"k8s.io/cluster-autoscaler/{cluster}"


def instance_id(node: dict[str, Any]) -> str | None:
    """The EC2 instance id from ``spec.providerID`` (``aws:///us-west-2a/i-0abc``)."""
    provider_id = str((node.get("spec") or {}).get("providerID") or "")
    if not provider_id.startswith("aws://"):
        return None
    return provider_id.rsplit("/", 1)[-1] or None


class AutoScaling:
    def __init__(self, netmap: Netmap, region: str, cluster: str) -> None:
        endpoint = netmap.resolve_url(f"https://autoscaling.{region}.amazonaws.com")
        self._client = boto3.client(
            "autoscaling",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        self._tags = [ENABLED_TAG, cluster_tag(cluster)]

    def discover(self) -> list[NodeGroup]:
        """Groups carrying both auto-discovery tags (each tag-key filter must match)."""
        filters = [{"Name": "tag-key", "Values": [tag]} for tag in self._tags]
        groups = []
        paginator = self._client.get_paginator("describe_auto_scaling_groups")
        for page in paginator.paginate(Filters=filters):
            for group in page["AutoScalingGroups"]:
                groups.append(
                    NodeGroup(
                        name=group["AutoScalingGroupName"],
                        min_size=int(group["MinSize"]),
                        max_size=int(group["MaxSize"]),
                        target=int(group["DesiredCapacity"]),
                        instance_ids=tuple(
                            sorted(
                                i["InstanceId"]
                                for i in group.get("Instances", [])
                                if not i["LifecycleState"].startswith("Terminat")
                            )
                        ),
                    )
                )
        return sorted(groups, key=lambda g: g.name)

    def set_desired(self, group: str, capacity: int) -> None:
        self._client.set_desired_capacity(
            AutoScalingGroupName=group, DesiredCapacity=capacity, HonorCooldown=False
        )

    def terminate(self, instance: str) -> None:
        self._client.terminate_instance_in_auto_scaling_group(
            InstanceId=instance, ShouldDecrementDesiredCapacity=True
        )
