"""A check failing for real on the twin leaves evidence a person can act on (issue 18).

The failure is made through the API as an operator could make it: the ``payments-api`` service
account is annotated with another team's role, so its pod gets that role's ARN and STS refuses
it (the trust policy names another service account). A small run of one IRSA check with
``--keep-on-failure`` must then show, for that check, in summary.json and in report.html, the
events and the state of the probe pods it used (deleted by then: what was seen of them before),
their logs and their nodes; keep its namespace, labelled for the sweep, and say how to look at
it and sweep it; and write an evidence bundle whose manifest's checksums all hold and in which
no secret of the run appears, although secrets were planted where diagnostics read (an Event on
each node, as any client may write one) and given to the run (AWS keys, the kubeconfig token).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from clustergate.kube import Cluster, connect
from clustergate.redact import MASK
from clustergate.runctx import KEPT_LABEL, delete_namespace
from tests.conftest import RunningTwin
from tests.test_evidence_bundle import verify_bundle
from tests.test_report import parse_html

CHECK = "suites/irsa/test_irsa_pods.py::test_each_pod_assumes_exactly_its_role"
ROLE = "eks.amazonaws.com/role-arn"
ACCOUNT = ("payments", "payments-api")
OTHER_ROLE = "arn:aws:iam::123456789012:role/clustergate-twin-orders-worker"
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYzzSECRETzzzz"
SESSION_TOKEN = "FwoGZXIvYXdzSESSIONzzTOKENzz0123456789abcdef"
PLANTED_EVENT = "clustergate-test-planted-secret"


def _kubeconfig_tokens(path: Path) -> list[str]:
    users = yaml.safe_load(path.read_text()).get("users", [])
    return [user["user"]["token"] for user in users if user.get("user", {}).get("token")]


def _plant_node_events(cluster: Cluster, token: str) -> list[str]:
    """An Event on every node whose message carries secrets: the collector reads node events."""
    core, names = cluster.core(), []
    for node in core.list_node().items:
        name = f"{PLANTED_EVENT}.{node.metadata.name}"
        now = datetime.now(UTC)
        core.create_namespaced_event(
            "default",
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(name=name, namespace="default"),
                involved_object=client.V1ObjectReference(kind="Node", name=node.metadata.name),
                reason="CredentialsSeen",
                message=f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} token {token}",
                type="Warning",
                first_timestamp=now,
                last_timestamp=now,
                count=1,
                source=client.V1EventSource(component="test"),
            ),
        )
        names.append(name)
    return names


@pytest.fixture(scope="module")
def failed_run(twin: RunningTwin) -> Iterator[dict[str, Any]]:
    cluster = connect(str(twin.kubeconfig), None)
    core = cluster.core()
    namespace, account = ACCOUNT
    original = core.read_namespaced_service_account(account, namespace).metadata.annotations[ROLE]
    (bearer,) = cluster.api.configuration.api_key.values()
    token = bearer.removeprefix("Bearer ").strip()
    planted = _plant_node_events(cluster, token)
    core.patch_namespaced_service_account(
        account, namespace, {"metadata": {"annotations": {ROLE: OTHER_ROLE}}}
    )
    reports = twin.state_dir / "reports-failure"
    try:
        finished = subprocess.run(
            [
                *twin.command(f"--reports-dir={reports}", f"--junitxml={reports / 'junit.xml'}"),
                CHECK,
                # One xdist worker: diagnostics are collected on the worker and must reach the
                # controller's summary.json, report.html and bundle with the test report.
                "-n",
                "1",
                "--keep-on-failure",
            ],
            cwd=Path(__file__).parents[1],
            env={
                **twin.environment(),
                "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                "AWS_SESSION_TOKEN": SESSION_TOKEN,
            },
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        yield {
            "finished": finished,
            "reports": reports,
            "cluster": cluster,
            "secrets": [AWS_SECRET, SESSION_TOKEN, *_kubeconfig_tokens(twin.kubeconfig)],
        }
    finally:
        core.patch_namespaced_service_account(
            account, namespace, {"metadata": {"annotations": {ROLE: original}}}
        )
        for name in planted:
            core.delete_namespaced_event(name, "default")
        # Whatever the tests below did: the shared twin must not keep a leftover of this run.
        for kept in core.list_namespace(label_selector=KEPT_LABEL).items:
            delete_namespace(cluster, kept.metadata.name)


def _summary(failed_run: dict[str, Any]) -> dict[str, Any]:
    finished = failed_run["finished"]
    path = failed_run["reports"] / "summary.json"
    assert path.is_file(), finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads(path.read_text())


def test_the_failed_checks_entry_carries_events_and_pod_state(
    failed_run: dict[str, Any],
) -> None:
    assert failed_run["finished"].returncode == 1, failed_run["finished"].stdout[-3000:]
    (check,) = [c for c in _summary(failed_run)["checks"] if c["nodeid"] == CHECK]
    assert check["outcome"] == "failed"
    assert "AccessDenied" in check["message"]
    diagnostics = check["diagnostics"]
    assert diagnostics["problems"] == []

    probes = [pod for pod in diagnostics["pods"] if pod["name"].startswith("probe-web-identity")]
    payments = next(pod for pod in probes if pod["namespace"] == "payments")
    assert payments["gone"], "the probe pod was deleted after it reported: its snapshot is shown"
    assert payments["phase"] == "Succeeded"
    assert payments["node"]
    (container,) = payments["containers"]
    assert container["restart_count"] == 0
    assert container["state"]["state"] == "terminated"
    assert container["state"]["exitCode"] == 0
    assert {"type": "PodScheduled", "status": "True"} in [
        {"type": c["type"], "status": c["status"]} for c in payments["conditions"]
    ]
    assert OTHER_ROLE in payments["log_tail"], "the log shows the role the pod was given"
    assert "AccessDenied" in payments["log_tail"]

    scheduled = [
        event
        for event in diagnostics["events"]
        if event["reason"] == "Scheduled" and event["object"] == f"pod/payments/{payments['name']}"
    ]
    assert scheduled, f"no Scheduled event of the probe pod in {diagnostics['events']}"
    assert payments["node"] in scheduled[0]["message"]
    planted = [event for event in diagnostics["events"] if event["reason"] == "CredentialsSeen"]
    assert planted, "the nodes' events are collected"
    assert all(MASK in event["message"] for event in planted)

    refused = [e for e in diagnostics["aws_errors"] if e["pod"] == f"payments/{payments['name']}"]
    assert refused, f"the probe's AWS refusal is not among {diagnostics['aws_errors']}"
    assert refused[0]["operation"] == "sts:AssumeRoleWithWebIdentity"
    assert refused[0]["code"] == "AccessDenied"
    assert refused[0]["http_status"] == 403
    assert refused[0]["request_id"], "STS answers every request with a request id"

    node = next(n for n in diagnostics["nodes"] if n["name"] == payments["node"])
    assert {"type": "Ready", "status": "True"} in [
        {"type": c["type"], "status": c["status"]} for c in node["conditions"]
    ]
    assert node["unschedulable"] is False
    assert f"pod/payments/{payments['name']}" in diagnostics["named"]


def test_report_html_shows_the_diagnostics_collapsed_under_the_check(
    failed_run: dict[str, Any],
) -> None:
    page = parse_html((failed_run["reports"] / "report.html").read_text())
    (entry,) = [div for div in page.iter("div") if div.attrs.get("data-nodeid") == CHECK]
    (details,) = entry.iter("details")
    assert "open" not in details.attrs
    (events,) = details.iter("table", **{"class": "events"})
    assert "Scheduled" in events.text
    (pods,) = details.iter("table", **{"class": "pods"})
    assert "Succeeded" in pods.text
    assert "restarts=0" in pods.text
    assert "(deleted)" in pods.text
    assert any(OTHER_ROLE in pre.text for pre in details.iter("pre"))


def test_keep_on_failure_keeps_the_namespace_says_how_to_look_and_the_sweep_removes_it(
    twin: RunningTwin, failed_run: dict[str, Any]
) -> None:
    out = failed_run["finished"].stdout
    run_id = _summary(failed_run)["facts"]["run_id"]
    namespace = f"clustergate-{run_id}-gw0"
    core = failed_run["cluster"].core()
    kept = core.read_namespace(namespace)
    assert kept.metadata.labels[KEPT_LABEL] == "true"
    assert CHECK in kept.metadata.annotations["clustergate.io/kept-for"]
    assert f"kept namespace {namespace}" in out
    assert f"-n {namespace} get events,pods" in out
    assert "pytest --sweep" in out
    assert f"--kubeconfig={twin.kubeconfig}" in out

    swept = twin.pytest("--sweep", "-n", "0", timeout=120)
    assert namespace in swept.stdout + swept.stderr, swept.stdout[-2000:]
    after = core.list_namespace(label_selector=KEPT_LABEL).items
    assert all(
        item.metadata.deletion_timestamp is not None
        for item in after
        if item.metadata.name == namespace
    )


def test_the_runs_evidence_bundle_verifies_and_holds_no_secret(
    failed_run: dict[str, Any],
) -> None:
    summary = _summary(failed_run)
    run_id = summary["facts"]["run_id"]
    bundle = failed_run["reports"] / f"evidence-{run_id}.tar.gz"
    assert f"evidence bundle {bundle}" in failed_run["finished"].stdout
    manifest, files = verify_bundle(bundle, failed_run["secrets"])
    diagnostics = [name for name in files if name.startswith("diagnostics/")]
    assert len(diagnostics) == 1
    assert b"CredentialsSeen" in files[diagnostics[0]]
    assert {"junit.xml", "summary.json", "report.html", "facts.json"} <= set(files)
    facts = json.loads(files["facts.json"])
    assert facts["server_version"]["git_version"]
    assert facts["node_groups"]
    assert facts["addon_images"]["daemonset/node-local-dns"]
    assert facts["config"]["content"]["cluster"]["name"] == summary["facts"]["cluster"]
    assert manifest["identities"]["kubernetes"]["username"]
    assert manifest["identities"]["aws"]["account"] == "123456789012"
