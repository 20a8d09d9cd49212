"""The AWS objects a cutover turns: an ALB with weighted target groups, and weighted DNS.

Created through the AWS API (the twin's gateway in front of moto), exactly as a platform team's
infrastructure code would, so the suite finds and changes them with boto3 like on a live account:

- an internet-facing application load balancer ``clustergate-shop`` in the cluster's VPC, two
  target groups ``tg-old`` and ``tg-new``, and an HTTP listener whose default action forwards
  to both with weights old=100, new=0;
- a hosted zone ``clustergate.test.`` with two weighted CNAME records for
  ``shop.clustergate.test.`` (SetIdentifier ``old``/``new``, weights 100/0, TTL
  ``timings.record_ttl``) pointing at each cluster's own name, whose A record is the loopback
  address that cluster's backend listens on (:data:`BACKEND_ADDRESSES`), so which cluster a
  client chose shows in the address it connects to.

These calls block (boto3): run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from clustergate.twin.settings import TwinSettings

LOAD_BALANCER_NAME = "clustergate-shop"
ZONE_NAME = "clustergate.test."
RECORD_NAME = "shop.clustergate.test."
PUBLIC_URL = "https://shop.clustergate.test"
BACKENDS = ("old", "new")
INITIAL_WEIGHTS = {"old": 100, "new": 0}
#: Where each cluster's own ingress answers; the weighted records point there.
RECORD_TARGETS = {"old": "old-cluster.clustergate.test", "new": "new-cluster.clustergate.test"}
#: The loopback address each cluster's backend listens on (both on one port).
BACKEND_ADDRESSES = {"old": "127.0.0.2", "new": "127.0.0.3"}


@dataclass(frozen=True)
class TrafficFacts:
    """What the cutover suite needs to find the traffic objects (and the twin's config)."""

    driver: str
    load_balancer_arn: str
    load_balancer_dns: str
    listener_arn: str
    #: Target group ARN per backend name ("old", "new").
    target_groups: dict[str, str]
    hosted_zone_id: str
    record_name: str
    public_url: str
    edge_url: str
    #: "host:port" of the twin's Route 53 name servers (authoritative for the zone).
    name_servers: tuple[str, ...] = ()
    #: The weighted name as a client dials it: ``http://shop.clustergate.test:<port>``.
    record_url: str = ""


@dataclass(frozen=True)
class CreatedObjects:
    load_balancer_arn: str
    load_balancer_dns: str
    listener_arn: str
    target_groups: dict[str, str]
    hosted_zone_id: str


def forward_action(target_groups: dict[str, str], weights: dict[str, int]) -> dict[str, Any]:
    return {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": target_groups[name], "Weight": weights[name]}
                for name in BACKENDS
            ]
        },
    }


def _cluster_subnets(ec2: Any, settings: TwinSettings) -> tuple[str, list[str]]:
    """The VPC tagged with the cluster name and one subnet per zone, created when missing.

    The subnets split the node CIDR in two halves in zones a and b, as EKS node subnets do."""
    network = settings.network
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [network.cluster_name]}])
    if vpcs["Vpcs"]:
        vpc_id = vpcs["Vpcs"][0]["VpcId"]
    else:
        node_net = ipaddress.ip_network(network.node_cidr)
        vpc_cidr = str(node_net.supernet(new_prefix=16))
        vpc_id = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": network.cluster_name}])
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    by_zone = {subnet["AvailabilityZone"]: subnet["SubnetId"] for subnet in subnets}
    if len(by_zone) < 2:
        halves = ipaddress.ip_network(network.node_cidr).subnets(prefixlen_diff=1)
        for half, zone_letter in zip(halves, "ab", strict=True):
            zone = f"{network.region}{zone_letter}"
            if zone not in by_zone:
                created = ec2.create_subnet(
                    VpcId=vpc_id, CidrBlock=str(half), AvailabilityZone=zone
                )
                by_zone[zone] = created["Subnet"]["SubnetId"]
    return vpc_id, sorted(by_zone.values())


def create_traffic_objects(
    session: Any, endpoint_url: str, settings: TwinSettings
) -> CreatedObjects:
    ec2 = session.client("ec2", endpoint_url=endpoint_url)
    elbv2 = session.client("elbv2", endpoint_url=endpoint_url)
    route53 = session.client("route53", endpoint_url=endpoint_url)

    vpc_id, subnets = _cluster_subnets(ec2, settings)
    balancer = elbv2.create_load_balancer(
        Name=LOAD_BALANCER_NAME, Subnets=subnets, Scheme="internet-facing", Type="application"
    )["LoadBalancers"][0]
    target_groups = {
        name: elbv2.create_target_group(
            Name=f"tg-{name}", Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        for name in BACKENDS
    }
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[forward_action(target_groups, INITIAL_WEIGHTS)],
    )["Listeners"][0]

    zone_id = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference=str(uuid.uuid4()))[
        "HostedZone"
    ]["Id"]
    ttl = max(1, round(settings.timings.record_ttl))
    weighted = [
        {
            "Name": RECORD_NAME,
            "Type": "CNAME",
            "SetIdentifier": name,
            "Weight": INITIAL_WEIGHTS[name],
            "TTL": ttl,
            "ResourceRecords": [{"Value": RECORD_TARGETS[name]}],
        }
        for name in BACKENDS
    ]
    addresses = [
        {
            "Name": RECORD_TARGETS[name] + ".",
            "Type": "A",
            "TTL": ttl,
            "ResourceRecords": [{"Value": BACKEND_ADDRESSES[name]}],
        }
        for name in BACKENDS
    ]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Comment": "weighted records of the cutover, and each cluster's address",
            "Changes": [
                {"Action": "UPSERT", "ResourceRecordSet": record}
                for record in (*weighted, *addresses)
            ],
        },
    )
    return CreatedObjects(
        balancer["LoadBalancerArn"],
        balancer["DNSName"],
        listener["ListenerArn"],
        target_groups,
        zone_id,
    )
