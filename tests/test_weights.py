"""clustergate.weights against moto in server mode (real boto3 over HTTP) and a real command."""

from __future__ import annotations

import socket
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from clustergate.config import CommandDriver, ElbDriver, NoDriver, Route53Driver
from clustergate.weights import (
    CommandWeights,
    ElbWeights,
    ObservedWeights,
    Route53Weights,
    WeightError,
    weights_for,
)

REGION = "us-west-2"
RECORD = "shop.example.test."


@pytest.fixture(scope="module")
def session() -> Iterator[boto3.Session]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        yield boto3.Session(
            region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
        )
    finally:
        mp.undo()
        server.stop()


@pytest.fixture(scope="module")
def elb_driver(session: boto3.Session) -> ElbDriver:
    ec2, elbv2 = session.client("ec2"), session.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    balancer = elbv2.create_load_balancer(Name="shop", Subnets=subnets)["LoadBalancers"][0]
    groups = {
        name: elbv2.create_target_group(Name=f"tg-{name}", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for name in ("old", "new")
    }
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["old"]}],
    )["Listeners"][0]
    return ElbDriver(kind="elbv2", listener_arn=listener["ListenerArn"], target_groups=groups)


@pytest.fixture(scope="module")
def route53_driver(session: boto3.Session) -> Route53Driver:
    route53 = session.client("route53")
    zone = route53.create_hosted_zone(Name="example.test.", CallerReference=str(uuid.uuid4()))
    zone_id = zone["HostedZone"]["Id"]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "CNAME",
                        "SetIdentifier": name,
                        "Weight": weight,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": f"{name}.example.test"}],
                    },
                }
                for name, weight in (("blue", 100), ("green", 0))
            ]
        },
    )
    return Route53Driver(
        kind="route53",
        hosted_zone_id=zone_id,
        record_name=RECORD,
        set_identifiers={"old": "blue", "new": "green"},
    )


def test_elb_weights_round_trip_through_the_listener(
    session: boto3.Session, elb_driver: ElbDriver
) -> None:
    weights = weights_for(elb_driver, session)
    assert isinstance(weights, ElbWeights)
    # A plain forward to the old group is 0% new.
    assert weights.get() == 0
    for percent in (10, 25, 100, 0):
        weights.set(percent)
        assert weights.get() == percent
    action = session.client("elbv2").describe_listeners(ListenerArns=[elb_driver.listener_arn])[
        "Listeners"
    ][0]["DefaultActions"][0]
    groups = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    assert groups == {elb_driver.target_groups["old"]: 100, elb_driver.target_groups["new"]: 0}


def test_route53_weights_round_trip_and_keep_the_records(
    session: boto3.Session, route53_driver: Route53Driver
) -> None:
    weights = weights_for(route53_driver, session)
    assert isinstance(weights, Route53Weights)
    assert weights.get() == 0
    weights.set(25)
    assert weights.get() == 25
    records = session.client("route53").list_resource_record_sets(
        HostedZoneId=route53_driver.hosted_zone_id
    )["ResourceRecordSets"]
    weighted = {r["SetIdentifier"]: r for r in records if r.get("SetIdentifier")}
    assert {k: r["Weight"] for k, r in weighted.items()} == {"blue": 75, "green": 25}
    assert weighted["green"]["ResourceRecords"] == [{"Value": "green.example.test"}]
    weights.set(0)
    assert weights.get() == 0


def test_route53_weights_name_a_missing_set_identifier(
    session: boto3.Session, route53_driver: Route53Driver
) -> None:
    driver = route53_driver.model_copy(update={"set_identifiers": {"old": "blue", "new": "red"}})
    with pytest.raises(WeightError, match="no weighted record with SetIdentifier red"):
        weights_for(driver, session).get()


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "set-weight"
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_command_weights_run_the_command_with_the_weight(
    session: boto3.Session, tmp_path: Path
) -> None:
    out = tmp_path / "weight.txt"
    script = _script(tmp_path, f"open({str(out)!r}, 'w').write(sys.argv[1])")
    weights = weights_for(CommandDriver(kind="command", command=f"{script} {{weight}}"), session)
    assert isinstance(weights, CommandWeights)
    weights.set(25)
    assert out.read_text() == "25"
    assert weights.get() is None


def test_command_weights_fail_with_the_commands_own_words(tmp_path: Path) -> None:
    script = _script(tmp_path, "sys.exit('listener not found: ' + sys.argv[1])")
    weights = CommandWeights(f"{script} {{weight}}")
    with pytest.raises(WeightError, match=r"exited 1 setting weight 10: listener not found: 10"):
        weights.set(10)
    with pytest.raises(WeightError, match="could not run"):
        CommandWeights(str(tmp_path / "missing") + " {weight}").set(10)


def test_no_driver_only_observes(session: boto3.Session) -> None:
    weights = weights_for(NoDriver(kind="none"), session)
    assert isinstance(weights, ObservedWeights)
    weights.set(50)
    assert weights.get() is None
