"""The EC2NodeClass status controller: selector terms resolved against EC2.

Each selector term is one EC2 filter (its tags ANDed, or an id); terms are ORed. A class whose
subnet (or security group) terms match nothing is not Ready, with the reason and message
Karpenter writes (``SubnetsNotFound``: "SubnetSelector did not match any Subnets"), and the
controller launches nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustergate.twin.karpenter.conditions import Condition, root_ready

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resolved:
    subnets: list[Obj]  # {"id", "zone", "zoneID"}
    security_groups: list[Obj]  # {"id", "name"}
    amis: list[Obj]  # {"id", "name"}
    instance_profile: str


def ec2_filters(term: Obj) -> dict[str, Any]:
    """A selector term as DescribeSubnets/DescribeSecurityGroups arguments."""
    filters = [
        {"Name": "tag-key", "Values": [key]}
        if value == "*"
        else {"Name": f"tag:{key}", "Values": [value]}
        for key, value in sorted((term.get("tags") or {}).items())
    ]
    if term.get("name"):
        filters.append({"Name": "group-name", "Values": [term["name"]]})
    arguments: dict[str, Any] = {"Filters": filters} if filters else {}
    if term.get("id"):
        arguments["Filters"] = [*filters, {"Name": _id_filter(term["id"]), "Values": [term["id"]]}]
    return arguments


def _id_filter(resource_id: str) -> str:
    return "subnet-id" if resource_id.startswith("subnet-") else "group-id"


def conditions(resolved: Resolved) -> list[Condition]:
    dependents = [
        Condition("SubnetsReady", True)
        if resolved.subnets
        else Condition(
            "SubnetsReady", False, "SubnetsNotFound", "SubnetSelector did not match any Subnets"
        ),
        Condition("SecurityGroupsReady", True)
        if resolved.security_groups
        else Condition(
            "SecurityGroupsReady",
            False,
            "SecurityGroupsNotFound",
            "SecurityGroupSelector did not match any SecurityGroups",
        ),
        Condition("AMIsReady", True)
        if resolved.amis
        else Condition("AMIsReady", False, "AMINotFound", "AMISelector did not match any AMIs"),
        Condition("InstanceProfileReady", True)
        if resolved.instance_profile
        else Condition(
            "InstanceProfileReady", False, "InstanceProfileNotFound", "no instance profile"
        ),
        Condition("ValidationSucceeded", True),
    ]
    return [*dependents, root_ready(dependents)]


def status(resolved: Resolved) -> Obj:
    return {
        "subnets": resolved.subnets,
        "securityGroups": resolved.security_groups,
        "amis": resolved.amis,
        "instanceProfile": resolved.instance_profile,
    }
