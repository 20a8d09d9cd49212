"""Candidate cutover resources: ALB listeners forwarding by weight, Route 53 weighted records.

Discovery cannot know which of them carries the cutover, nor the endpoint, steps or SLOs, so
``clustergate init`` writes them as comments for a person to pick from. Listeners are read
for their default actions (a weighted forward action in a listener rule is not listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from clustergate.discover import calls


@dataclass(frozen=True)
class Candidate:
    kind: str
    #: The listener ARN, or "<zone id> <record name>".
    ref: str
    #: Target group ARNs, or set identifiers, with their weights now.
    weights: dict[str, int]
    #: The driver a config would give: {"kind": "elbv2", "listener_arn": ..., ...}.
    driver: dict[str, Any]
    #: Where it was found, for a person.
    summary: str


def _old_new(weights: dict[str, int]) -> dict[str, str]:
    """A guess a person confirms: the old cluster is the one carrying the traffic now."""
    ranked = sorted(weights, key=lambda ref: -weights[ref])
    return {"old": ranked[0], "new": ranked[1]}


def _listeners(session: boto3.Session) -> list[Candidate]:
    elb = session.client("elbv2")
    found = []
    for balancer in calls.aws_pages(elb, "describe_load_balancers", "LoadBalancers"):
        listeners = calls.aws_pages(
            elb, "describe_listeners", "Listeners", LoadBalancerArn=balancer["LoadBalancerArn"]
        )
        for listener in listeners:
            for action in listener.get("DefaultActions") or []:
                groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
                if action.get("Type") != "forward" or len(groups) < 2:
                    continue
                weights = {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
                arn = listener["ListenerArn"]
                found.append(
                    Candidate(
                        "elbv2",
                        arn,
                        weights,
                        {
                            "kind": "elbv2",
                            "listener_arn": arn,
                            "target_groups": _old_new(weights),
                        },
                        f"load balancer {balancer['LoadBalancerName']}, listener port "
                        f"{listener.get('Port')} (elasticloadbalancing:DescribeListeners)",
                    )
                )
    return found


def _records(session: boto3.Session) -> list[Candidate]:
    route53 = session.client("route53")
    found = []
    for zone in calls.aws_pages(route53, "list_hosted_zones", "HostedZones"):
        zone_id = zone["Id"].rsplit("/", 1)[-1]
        records = calls.aws_pages(
            route53, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id
        )
        weighted: dict[tuple[str, str], dict[str, int]] = {}
        for record in records:
            if "Weight" in record and "SetIdentifier" in record:
                sets = weighted.setdefault((record["Name"], record["Type"]), {})
                sets[record["SetIdentifier"]] = int(record["Weight"])
        for (name, kind), sets in sorted(weighted.items()):
            if len(sets) < 2:
                continue
            found.append(
                Candidate(
                    "route53",
                    f"{zone_id} {name}",
                    sets,
                    {
                        "kind": "route53",
                        "hosted_zone_id": zone_id,
                        "record_name": name,
                        "set_identifiers": _old_new(sets),
                    },
                    f"{kind} records in hosted zone {zone['Name']} "
                    "(route53:ListResourceRecordSets)",
                )
            )
    return found


def discover(session: boto3.Session) -> tuple[list[Candidate], list[str]]:
    """The candidates, and notes on sources this endpoint does not offer."""
    candidates: list[Candidate] = []
    notes = []
    for source in (_listeners, _records):
        try:
            candidates.extend(source(session))
        except calls.Unsupported as why:
            notes.append(str(why))
    return candidates, notes
