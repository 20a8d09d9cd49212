"""Moving traffic between the old and the new cluster: the weight drivers of a cutover.

A driver sets the new cluster's share (0-100) and, where the platform can say, reads back the
share it is set to. ELBv2 weighted target groups and Route 53 weighted records are changed
through boto3 as a person would with the console; a command driver runs the team's own
tool; with no driver someone else moves the weights and the cutover only observes.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

import boto3

from clustergate.config import CommandDriver, ElbDriver, NoDriver, Route53Driver, WeightDriver


class WeightError(AssertionError):
    """A weight could not be set or read; says which resource and what AWS answered."""


class Weights(Protocol):
    description: str

    def set(self, new_percent: int) -> None: ...

    def get(self) -> int | None:
        """The new cluster's configured share, or None when the driver cannot tell."""
        ...


@dataclass
class ElbWeights:
    client: Any
    listener_arn: str
    old_group: str
    new_group: str

    @property
    def description(self) -> str:
        return f"ELBv2 listener {self.listener_arn}"

    def set(self, new_percent: int) -> None:
        groups = [
            {"TargetGroupArn": self.old_group, "Weight": 100 - new_percent},
            {"TargetGroupArn": self.new_group, "Weight": new_percent},
        ]
        self.client.modify_listener(
            ListenerArn=self.listener_arn,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
        )

    def get(self) -> int | None:
        listeners = self.client.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"]
        for action in listeners[0].get("DefaultActions", []):
            groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
            weights = {group["TargetGroupArn"]: group.get("Weight", 1) for group in groups}
            if self.new_group in weights:
                total = sum(weights.values())
                return round(100 * weights[self.new_group] / total) if total else 0
            if action.get("TargetGroupArn") == self.new_group:
                return 100
        return 0


@dataclass
class Route53Weights:
    client: Any
    zone_id: str
    record_name: str
    old_id: str
    new_id: str
    #: Where to ask for the records' answers ("host[:port]"); empty: the zone's delegation set.
    name_servers: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return f"Route 53 records {self.record_name} in zone {self.zone_id}"

    def weighted(self) -> tuple[str, dict[str, set[str]], dict[str, int]]:
        """The weighted records' type, their values per set identifier, and their weights."""
        records = self._records()
        rtype = records[self.new_id]["Type"]
        values = {
            ident: {item["Value"] for item in record.get("ResourceRecords", [])}
            for ident, record in records.items()
        }
        return rtype, values, {ident: int(r.get("Weight", 0)) for ident, r in records.items()}

    def _records(self) -> dict[str, dict[str, Any]]:
        name = self.record_name.rstrip(".") + "."
        found = {}
        paginator = self.client.get_paginator("list_resource_record_sets")
        for page in paginator.paginate(HostedZoneId=self.zone_id):
            for record in page["ResourceRecordSets"]:
                if record["Name"] == name and record.get("SetIdentifier") in (
                    self.old_id,
                    self.new_id,
                ):
                    found[record["SetIdentifier"]] = record
        missing = {self.old_id, self.new_id} - found.keys()
        if missing:
            raise WeightError(
                f"{self.description} has no weighted record with SetIdentifier "
                f"{', '.join(sorted(missing))}"
            )
        return found

    def set(self, new_percent: int) -> None:
        records = self._records()
        changes = []
        for identifier, weight in ((self.old_id, 100 - new_percent), (self.new_id, new_percent)):
            record = {**records[identifier], "Weight": weight}
            changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
        self.client.change_resource_record_sets(
            HostedZoneId=self.zone_id, ChangeBatch={"Changes": changes}
        )

    def get(self) -> int | None:
        records = self._records()
        old, new = records[self.old_id]["Weight"], records[self.new_id]["Weight"]
        return round(100 * new / (old + new)) if old + new else 0


@dataclass
class CommandWeights:
    command: str
    timeout_s: float = 300

    @property
    def description(self) -> str:
        return f"command {self.command!r}"

    def set(self, new_percent: int) -> None:
        argv = shlex.split(self.command.format(weight=new_percent))
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WeightError(f"{self.description} could not run: {error}") from None
        if done.returncode != 0:
            raise WeightError(
                f"{self.description} exited {done.returncode} setting weight {new_percent}: "
                f"{done.stderr.strip()[-500:]}"
            )

    def get(self) -> int | None:
        return None


@dataclass
class ObservedWeights:
    """Someone else changes the weights: setting is a no-op, the split is only observed."""

    description: str = "weights changed outside clustergate"

    def set(self, new_percent: int) -> None:
        return None

    def get(self) -> int | None:
        return None


def weights_for(driver: WeightDriver, session: boto3.Session) -> Weights:
    if isinstance(driver, ElbDriver):
        groups = driver.target_groups
        return ElbWeights(
            session.client("elbv2"), driver.listener_arn, groups["old"], groups["new"]
        )
    if isinstance(driver, Route53Driver):
        ids = driver.set_identifiers
        return Route53Weights(
            session.client("route53"),
            driver.hosted_zone_id,
            driver.record_name,
            ids["old"],
            ids["new"],
            driver.name_servers,
        )
    if isinstance(driver, CommandDriver):
        return CommandWeights(driver.command)
    assert isinstance(driver, NoDriver)
    return ObservedWeights()
