"""Where the edge learns its weights: read back from the AWS API, as the real data planes do.

An ALB applies a listener's forward config within seconds of ``ModifyListener``; Route 53
resolvers follow weighted records within their TTL. The twin's edge polls the API every
``timings.weight_propagation`` seconds, which is its propagation delay. Both sources answer
``{"old": weight, "new": weight}``; their ``read`` blocks (boto3), so callers use a thread.
"""

from __future__ import annotations

from typing import Any, Protocol

from clustergate.twin.traffic.aws_objects import BACKENDS


class WeightSource(Protocol):
    def read(self) -> dict[str, int]: ...


class ListenerWeights:
    """The weights of a listener's default forward action (``DescribeListeners``)."""

    def __init__(self, elbv2: Any, listener_arn: str, target_groups: dict[str, str]) -> None:
        self._elbv2 = elbv2
        self._listener_arn = listener_arn
        self._backend_of = {arn: name for name, arn in target_groups.items()}

    def read(self) -> dict[str, int]:
        listener = self._elbv2.describe_listeners(ListenerArns=[self._listener_arn])["Listeners"][0]
        weights = dict.fromkeys(BACKENDS, 0)
        for action in listener["DefaultActions"]:
            if action["Type"] != "forward":
                continue
            groups = action.get("ForwardConfig", {}).get("TargetGroups")
            if groups is None:
                # A plain forward to one target group carries all the traffic.
                groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
            for group in groups:
                name = self._backend_of.get(group["TargetGroupArn"])
                if name is not None:
                    weights[name] = int(group.get("Weight", 1))
        return weights


class RecordWeights:
    """The weights of the weighted records of one name (``ListResourceRecordSets``)."""

    def __init__(self, route53: Any, zone_id: str, record_name: str) -> None:
        self._route53 = route53
        self._zone_id = zone_id
        self._record_name = record_name

    def read(self) -> dict[str, int]:
        weights = dict.fromkeys(BACKENDS, 0)
        paginator = self._route53.get_paginator("list_resource_record_sets")
        pages = paginator.paginate(HostedZoneId=self._zone_id, StartRecordName=self._record_name)
        for page in pages:
            for record in page["ResourceRecordSets"]:
                if record["Name"] != self._record_name:
                    continue
                if record.get("SetIdentifier") in weights:
                    weights[record["SetIdentifier"]] = int(record.get("Weight", 0))
        return weights
