"""`clustergate init` against a running twin, read as a live cluster: the config it writes
lets the gate pass and matches the twin's own cluster.yaml in every key discovery can read;
`init --check` reports what an operator changed afterwards with kubectl. One shared twin."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clustergate.config import ClusterConfig, load_config
from tests.conftest import ROOT, RunningTwin

DRIFT_NAMESPACE = "clustergate-init-drift"
LATE_ROLE = "arn:aws:iam::123456789012:role/annotated-afterwards"


def _init(twin: RunningTwin, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clustergate", "init", f"--kubeconfig={twin.kubeconfig}", *args],
        cwd=ROOT,
        env=twin.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _kubectl(twin: RunningTwin, *args: str) -> None:
    subprocess.run(
        ["kubectl", f"--kubeconfig={twin.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture(scope="module")
def written(twin: RunningTwin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("init") / "cluster.yaml"
    result = _init(twin, f"--output={output}")
    assert result.returncode == 0, result.stderr
    return output


def _discoverable(config: ClusterConfig) -> dict[str, Any]:
    """The keys `clustergate init` can read from a cluster, as the suites see them."""
    keys: dict[str, Any] = {
        "cluster.name": config.cluster.name,
        "cluster.region": config.cluster.region,
        "cluster.kubernetes_version": config.cluster.kubernetes_version,
        "dns.nodelocal_ip": config.dns.nodelocal_ip,
        "dns.mode": config.dns.mode,
        "node_groups": sorted(group.name for group in config.node_groups),
        "autoscaler.kind": config.autoscaler.kind,
        "autoscaler.namespace": config.autoscaler.namespace,
        "autoscaler.deployment": config.autoscaler.deployment,
        "autoscaler.status_configmap": config.autoscaler.status_configmap,
    }
    for mapping in config.irsa.mappings:
        keys[f"irsa.mappings[{mapping.namespace}/{mapping.service_account}]"] = mapping.role_arn
    return keys


def test_init_matches_the_twins_own_config_in_every_discoverable_key(
    twin: RunningTwin, written: Path
) -> None:
    mine, twins = _discoverable(load_config(written)), _discoverable(load_config(twin.config))
    mismatches = [
        f"{key}: init wrote {mine.get(key)!r}, the twin's cluster.yaml has {twins.get(key)!r}"
        for key in sorted(set(mine) | set(twins))
        if mine.get(key) != twins.get(key)
    ]
    assert not mismatches, "\n".join(mismatches)
    assert len([key for key in twins if key.startswith("irsa.mappings[")]) >= 2


def test_every_written_value_says_where_it_was_found(written: Path) -> None:
    text = written.read_text()
    data = yaml.safe_load(text)
    for section in ("cluster", "dns", "autoscaler"):
        for key in data[section]:
            line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
            assert " # " in line or line.rstrip().endswith(":"), f"{section}.{key}: {line}"
    assert "# ServiceAccount payments/payments-api" in text
    assert "eks:DescribeCluster .cluster.version" in text
    assert "IAM OIDC provider for this issuer exists" in text
    # What nobody can discover is left out, with a comment at its place.
    assert "must_allow" not in str(data["irsa"])
    assert "must_allow:" in text
    assert "slo" not in data["dns"]
    assert "# slo: {p50_ms: N, p99_ms: N}" in text
    assert "cutover" not in data
    assert "# cutover: not written" in text
    # moto has no EKS Pod Identity API: said, not guessed.
    assert "EKS Pod Identity associations not read" in text


def test_the_twins_cutover_resources_are_listed_as_candidates(
    twin: RunningTwin, written: Path
) -> None:
    cutover = load_config(twin.config).cutover
    assert cutover is not None
    text = written.read_text()
    driver = cutover.driver.model_dump()
    assert f"#       listener_arn: {driver['listener_arn']}" in text
    for role, arn in driver["target_groups"].items():
        assert f"#         {role}: {arn}" in text, f"target group {role} not among the candidates"
    assert "#       kind: route53" in text


def test_the_gate_passes_with_the_written_config(twin: RunningTwin, written: Path) -> None:
    run = dataclasses.replace(twin, config=written, state_dir=written.parent)
    result = run.pytest("-m", "gate", "-n", "0", timeout=540)
    assert result.returncode == 0, result.stdout[-4000:]
    skipped = {
        case.get("name"): case.find("skipped").get("message", "")
        for case in ET.parse(written.parent / "reports" / "junit.xml").iter("testcase")
        if case.find("skipped") is not None
    }
    # The checks that need what init leaves out skip, naming the key to set.
    assert "dns.slo" in skipped["test_latency_meets_the_slo_on_every_probed_node"]
    assert "must_allow" in skipped["test_configured_calls_are_allowed_and_denied"]
    assert "cutover" in skipped["test_endpoint_answers_and_names_the_cluster_that_served"]


@pytest.fixture
def annotated_afterwards(twin: RunningTwin) -> Iterator[str]:
    _kubectl(twin, "create", "namespace", DRIFT_NAMESPACE)
    try:
        _kubectl(twin, "-n", DRIFT_NAMESPACE, "create", "serviceaccount", "late")
        yield "late"
    finally:
        _kubectl(twin, "delete", "namespace", DRIFT_NAMESPACE, "--wait=true", "--timeout=60s")


def test_check_reports_a_service_account_annotated_afterwards(
    twin: RunningTwin, written: Path, annotated_afterwards: str
) -> None:
    before = _init(twin, "--check", f"--config={written}")
    assert before.returncode in (0, 1), before.stdout + before.stderr
    _kubectl(
        twin,
        "-n",
        DRIFT_NAMESPACE,
        "annotate",
        "serviceaccount",
        annotated_afterwards,
        f"eks.amazonaws.com/role-arn={LATE_ROLE}",
    )
    after = _init(twin, "--check", f"--config={written}")
    assert after.returncode == 1, after.stdout + after.stderr
    # Only what this test changed is new (other tests of the shared twin clean up after them).
    new = set(after.stdout.splitlines()) - set(before.stdout.splitlines())
    assert {line for line in new if line.startswith("drift: ")} == {
        f"drift: irsa.mappings[{DRIFT_NAMESPACE}/late].role_arn: config (absent), cluster "
        f"{LATE_ROLE} (ServiceAccount {DRIFT_NAMESPACE}/late annotation "
        "eks.amazonaws.com/role-arn)"
    }


def test_check_of_the_twins_own_config_finds_no_drift(twin: RunningTwin) -> None:
    result = _init(twin, "--check", f"--config={twin.config}")
    assert result.returncode == 0, result.stdout + result.stderr
