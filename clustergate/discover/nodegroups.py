"""Managed node groups and their Auto Scaling groups."""

from __future__ import annotations

import boto3

from clustergate.discover import calls
from clustergate.discover.found import Found


def discover(session: boto3.Session, cluster_name: str) -> list[dict[str, Found]]:
    eks = session.client("eks")
    names = calls.aws_pages(eks, "list_nodegroups", "nodegroups", clusterName=cluster_name)
    groups = []
    for name in sorted(names):
        group = calls.aws(eks, "describe_nodegroup", clusterName=cluster_name, nodegroupName=name)
        asgs = (group["nodegroup"].get("resources") or {}).get("autoScalingGroups") or []
        item = {"name": Found(name, f"eks:ListNodegroups of cluster {cluster_name}")}
        if asgs:
            item["asg"] = Found(
                asgs[0]["name"], f"eks:DescribeNodegroup {name} .resources.autoScalingGroups"
            )
        groups.append(item)
    return groups
