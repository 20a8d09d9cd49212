"""Where the edge learns its weights: read back from the AWS API, as an ALB's data plane does.

An ALB applies a listener's forward config within seconds of ``ModifyListener``. The twin's
edge polls the API every ``timings.weight_propagation`` seconds, which is its propagation
delay. ``read`` answers ``{"old": weight, "new": weight}``; it blocks (boto3), so callers use a
thread. (Route 53's weighted records are not read here: the twin's Route 53 name servers,
:mod:`clustergate.twin.route53`, answer them over DNS.)
"""

from __future__ import annotations

from typing import Any

from clustergate.twin.traffic.aws_objects import BACKENDS


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
