"""The twin's cluster autoscaler end to end: a twin per fault, driven with the official client
and boto3 exactly as the autoscaler suite drives a live cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

PAUSE = "pause"
NAMESPACE = "as-e2e"


class TwinUnderTest:
    def __init__(self, state_dir: Path) -> None:
        api = config.new_client_from_config(str(state_dir / "kubeconfig"))
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        env = json.loads((state_dir / "aws-env.json").read_text())
        self.autoscaling = boto3.client(
            "autoscaling",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def node_count(self) -> int:
        return len(self.core.list_node().items)

    def desired(self) -> dict[str, int]:
        groups = self.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        return {g["AutoScalingGroupName"]: g["DesiredCapacity"] for g in groups}

    def pause_pods(self, replicas: int) -> None:
        """Pods of 1200m CPU: one per 2-CPU node of the twin, so ``replicas`` > nodes grows it."""
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": PAUSE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": PAUSE}},
                "template": {
                    "metadata": {"labels": {"app": PAUSE}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "pause",
                                "image": "registry.k8s.io/pause:3.10",
                                "resources": {"requests": {"cpu": "1200m", "memory": "16Mi"}},
                            }
                        ],
                    },
                },
            },
        }
        self.apps.create_namespaced_deployment(NAMESPACE, body)

    def scale_pause(self, replicas: int) -> None:
        """Scale the pause Deployment, creating it when no earlier test did."""
        try:
            self.apps.patch_namespaced_deployment_scale(
                PAUSE, NAMESPACE, {"spec": {"replicas": replicas}}
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.pause_pods(replicas)

    def running(self) -> int:
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"app={PAUSE}").items
        return sum(1 for p in pods if p.status.phase == "Running")

    def events(self, namespace: str, reason: str) -> list[str]:
        return [
            e.message
            for e in self.core.list_namespaced_event(namespace).items
            if e.reason == reason
        ]

    def status(self) -> tuple[dict[str, Any], dict[str, str]]:
        found = self.core.read_namespaced_config_map("cluster-autoscaler-status", "kube-system")
        return yaml.safe_load(found.data["status"]), found.metadata.annotations


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = check()
        if seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen {seen!r}")


@pytest.fixture(
    scope="module", params=["", "autoscaler-stuck", "autoscaler-slow", "scale-down-never"]
)
def twin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TwinUnderTest]]:
    fault = request.param
    state = tmp_path_factory.mktemp(f"twin-{fault or 'healthy'}")
    command = [sys.executable, "-m", "clustergate.twin", "up", "--state-dir", str(state)]
    if fault:
        command += ["--fault", fault]
    started = subprocess.run(
        command, capture_output=True, text=True, timeout=180, check=False, env=os.environ.copy()
    )
    assert started.returncode == 0, started.stderr
    try:
        under_test = TwinUnderTest(state)
        under_test.core.create_namespace({"metadata": {"name": NAMESPACE}})
        yield fault, under_test
    finally:
        subprocess.run(
            [sys.executable, "-m", "clustergate.twin", "down", "--state-dir", str(state)],
            capture_output=True,
            timeout=60,
            check=False,
        )


def test_the_autoscaler_grows_and_shrinks_the_twin_unless_a_fault_stops_it(
    twin: tuple[str, TwinUnderTest],
) -> None:
    fault, cluster = twin
    status, annotations = _wait("a status", cluster.status, 15)
    assert status["autoscalerStatus"] == "Running"
    assert status["clusterWide"]["health"]["status"] == "Healthy"
    assert "cluster-autoscaler.kubernetes.io/last-updated" in annotations
    nodes, desired = cluster.node_count(), cluster.desired()
    cluster.pause_pods(nodes + 1)
    if fault in ("autoscaler-stuck", "autoscaler-slow"):
        time.sleep(5)
        assert cluster.desired() == desired
        assert cluster.node_count() == nodes
        triggered = cluster.events(NAMESPACE, "TriggeredScaleUp")
        assert bool(triggered) == (fault == "autoscaler-slow")
        return
    _wait("all pause pods Running", lambda: cluster.running() == nodes + 1, 30)
    assert cluster.node_count() == nodes + 1
    (message,) = set(cluster.events(NAMESPACE, "TriggeredScaleUp"))
    assert message.startswith("pod triggered scale-up: [{eks-")
    cluster.scale_pause(0)
    if fault == "scale-down-never":
        time.sleep(12)
        assert cluster.node_count() == nodes + 1
        return
    _wait("the node count back", lambda: cluster.node_count() == nodes, 30)
    assert cluster.events("default", "ScaleDown")


def test_a_group_at_its_maximum_is_named_in_not_trigger_events(
    twin: tuple[str, TwinUnderTest],
) -> None:
    fault, cluster = twin
    if fault:
        pytest.skip("the healthy twin answers this")
    cluster.scale_pause(40)
    messages = _wait(
        "NotTriggerScaleUp", lambda: cluster.events(NAMESPACE, "NotTriggerScaleUp"), 60
    )
    # How many groups are at their maximum depends on how far the earlier scale-up got.
    reached = [
        m
        for m in messages
        if re.fullmatch(r"pod didn't trigger scale-up: \d max node group size reached", m)
    ]
    assert reached, messages
