"""The autoscaler suite's Karpenter path against a Karpenter twin (``--autoscaler=karpenter``):
the whole suite passes (pending pods get a NodeClaim and a node launched through EC2, the idle
node is consolidated away), and the operator faults it must catch, each made with kubectl as an
operator would, fail the gate naming the cause: a NodePool at ``limits.cpu: "0"`` (its pods
told so by Karpenter too), and an EC2NodeClass whose subnet selector matches nothing (a
NodeClaim of it is not launched).

One twin for the module; each fault is put back after its row, so the rows are independent.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningTwin, start_twin, stop_twin

GATE = ("-m", "autoscaler and gate", "-p", "no:cacheprovider")
READY_CHECK = "test_karpenter_nodepools_are_ready"
#: The twin's default NodePool consolidates after the twin's scale-down unneeded time (10 s).
CONSOLIDATE_AFTER_S = 10
NOWHERE = """\
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: nowhere
spec:
  role: clustergate-twin-node-role
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: no-such-cluster}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: clustergate-twin}}]
"""


#: Asks for more CPU than the twin's two nodes have free: only a new node would hold it.
BIG_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: karpenter-big
  namespace: default
spec:
  containers:
  - name: pause
    image: registry.k8s.io/pause:3.9
    resources: {requests: {cpu: 1900m}}
"""
CLAIM = """\
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: by-hand
  labels: {karpenter.sh/nodepool: default}
spec:
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: nowhere}
  requirements:
  - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}
"""


@pytest.fixture(scope="module")
def karpenter_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTwin]:
    state_dir = tmp_path_factory.mktemp("karpenter-twin")
    running = start_twin(state_dir, "--nodes", "2", "--autoscaler", "karpenter")
    try:
        yield running
    finally:
        stop_twin(state_dir)


def _kubectl(twin: RunningTwin, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(twin.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _wait_ready(twin: RunningTwin, kind: str, name: str, status: str) -> None:
    _kubectl(twin, "wait", f"{kind}/{name}", f"--for=condition=Ready={status}", "--timeout=30s")


def _event(twin: RunningTwin, kind: str, name: str, reason: str, component: str) -> dict:
    """The event ``reason`` from ``component`` about an object, awaited for up to 30 s."""
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while time.monotonic() < deadline:
        listed = json.loads(
            _kubectl(
                twin,
                "get",
                "events",
                "-A",
                "-o",
                "json",
                f"--field-selector=involvedObject.name={name},reason={reason}",
            )
        )["items"]
        mine = [e for e in listed if (e.get("source") or {}).get("component") == component]
        if mine:
            return dict(mine[0])
        seen = [f"{e.get('source')}: {e.get('message')}" for e in listed]
        time.sleep(1)
    raise AssertionError(f"no {reason} event from {component} about {kind} {name}; saw {seen}")


def _failures(twin: RunningTwin) -> dict[str, str]:
    """The gate's autoscaler checks that failed, by name, with their messages."""
    done = twin.pytest(*GATE, timeout=180)
    summary = json.loads(Path(twin.state_dir / "reports" / "summary.json").read_text())
    failed = {
        check["nodeid"].rsplit("::", 1)[-1]: check.get("message", "")
        for check in summary["checks"]
        if check["outcome"] == "failed"
    }
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return failed


def test_the_autoscaler_suite_passes_on_a_karpenter_twin(karpenter_twin: RunningTwin) -> None:
    listed = _kubectl(karpenter_twin, "get", "nodepools,ec2nodeclasses", "-o", "name")
    assert "nodepool.karpenter.sh/default" in listed
    assert "ec2nodeclass.karpenter.k8s.aws/default" in listed
    done = karpenter_twin.pytest("-m", "autoscaler", "-p", "no:cacheprovider", "-rA", timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    assert f"PASSED suites/autoscaler/test_autoscaler_ready.py::{READY_CHECK}" in done.stdout
    assert (
        "PASSED suites/autoscaler/test_autoscaler_scaling.py::"
        "test_pending_pods_get_new_nodes_and_idle_nodes_go_in_time"
    ) in done.stdout
    log = (karpenter_twin.state_dir / "twin.log").read_text()
    assert "karpenter: created nodeclaim default-" in log
    assert "karpenter: consolidated nodeclaim default-" in log


def test_a_nodepool_at_limits_cpu_zero_fails_the_gate_naming_it(
    karpenter_twin: RunningTwin,
) -> None:
    patch = '{"spec":{"limits":{"cpu":"%s"}}}'
    _kubectl(karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", patch % "0")
    try:
        failed = _failures(karpenter_twin)
        _kubectl(karpenter_twin, "apply", "-f", "-", stdin=BIG_POD)
        event = _event(karpenter_twin, "pod", "karpenter-big", "FailedScheduling", "karpenter")
        assert event["message"] == (
            "Failed to schedule pod, all available instance types exceed limits for "
            'nodepool: "default"'
        )
    finally:
        _kubectl(karpenter_twin, "delete", "pod", "karpenter-big", "--ignore-not-found", "--wait")
        _kubectl(
            karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", patch % "1000"
        )
    assert set(failed) == {READY_CHECK}, failed
    assert "NodePool default is at its limits (cpu 0 in use of limit 0)" in failed[READY_CHECK]


def test_a_node_class_whose_subnets_match_nothing_fails_the_gate_naming_it(
    karpenter_twin: RunningTwin,
) -> None:
    ref = '{"spec":{"template":{"spec":{"nodeClassRef":{"name":"%s"}}}}}'
    _kubectl(karpenter_twin, "apply", "-f", "-", stdin=NOWHERE)
    _kubectl(karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", ref % "nowhere")
    try:
        _wait_ready(karpenter_twin, "ec2nodeclass", "nowhere", "False")
        _wait_ready(karpenter_twin, "nodepool", "default", "False")
        failed = _failures(karpenter_twin)
        _kubectl(karpenter_twin, "apply", "-f", "-", stdin=CLAIM)
        _kubectl(
            karpenter_twin,
            "wait",
            "nodeclaim/by-hand",
            "--for=jsonpath={.status.conditions[?(@.type=='Launched')].reason}=NodeClassNotReady",
            "--timeout=30s",
        )
    finally:
        _kubectl(karpenter_twin, "delete", "nodeclaim", "by-hand", "--ignore-not-found")
        _kubectl(
            karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", ref % "default"
        )
        _kubectl(karpenter_twin, "delete", "ec2nodeclass", "nowhere")
    assert set(failed) == {READY_CHECK}, failed
    message = failed[READY_CHECK]
    assert "NodePool default is not Ready" in message
    assert (
        "its EC2NodeClass nowhere is not Ready: SubnetsReady False "
        "(SubnetsNotFound: SubnetSelector did not match any Subnets)"
    ) in message
    _wait_ready(karpenter_twin, "nodepool", "default", "True")


@pytest.mark.slow
def test_disruption_budgets_hold_and_release_consolidation(karpenter_twin: RunningTwin) -> None:
    """An empty Karpenter node stays while the pool's budget is ``nodes: "0"`` and goes once
    it is ``10%`` (which rounds up to one node)."""
    budgets = '{"spec":{"disruption":{"budgets":[{"nodes":"%s"}]}}}'
    _kubectl(karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", budgets % "0")
    try:
        _kubectl(karpenter_twin, "apply", "-f", "-", stdin=BIG_POD)
        _kubectl(
            karpenter_twin, "wait", "pod/karpenter-big", "--for=condition=Ready", "--timeout=60s"
        )
        claims = _claims(karpenter_twin)
        assert len(claims) == 1, claims
        _kubectl(karpenter_twin, "delete", "pod", "karpenter-big", "--wait")
        time.sleep(CONSOLIDATE_AFTER_S * 2)
        assert _claims(karpenter_twin) == claims, "consolidated although the budget is 0 nodes"
        _kubectl(
            karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", budgets % "10%"
        )
        _kubectl(karpenter_twin, "wait", f"nodeclaim/{claims[0]}", "--for=delete", "--timeout=60s")
    finally:
        _kubectl(karpenter_twin, "delete", "pod", "karpenter-big", "--ignore-not-found")
        _kubectl(
            karpenter_twin, "patch", "nodepool", "default", "--type=merge", "-p", budgets % "10%"
        )


def _claims(twin: RunningTwin) -> list[str]:
    names = _kubectl(twin, "get", "nodeclaims", "-o", "jsonpath={.items[*].metadata.name}")
    return names.split()
