"""A policy engine's admission webhook that refuses the checks' pods fails the gate, and the
gate says which webhook refused and why, instead of timing out waiting for pods.

The webhook is Kyverno-style: a validating webhook that denies every pod whose containers do
not all set CPU and memory limits, answering in Kyverno's words. It runs in this process
(Kyverno's own image cannot run here) and is installed with ``kubectl apply -f`` as an
operator installs a policy engine's configuration; it is removed afterwards, so the shared
twin stays healthy.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from clustergate import workloads
from clustergate.kube import connect
from clustergate.runctx import RunContext
from tests.conftest import RunningTwin
from tests.webhook_server import WebhookServer

Obj = dict[str, Any]
CONFIGURATION = "kyverno-resource-validating-webhook-cfg"
WEBHOOK = "validate.kyverno.svc-fail"
REASON = "CPU and memory limits are required"
#: Far more than a refusal takes to show, so a test that waits it out is plainly wrong.
DEADLINE_S = 60.0


def require_limits(review: Obj) -> Obj:
    """Kyverno's require-limits policy: each container sets limits.cpu and limits.memory."""
    request = review["request"]
    pod = request["object"]
    for index, container in enumerate(pod["spec"].get("containers") or []):
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource in ("cpu", "memory"):
            if resource not in limits:
                where = f"/spec/containers/{index}/resources/limits/{resource}/"
                message = (
                    f"\n\nresource Pod/{request['namespace']}/{request['name']} was blocked due "
                    f"to the following policies \n\nrequire-limits:\n  validate-limits: "
                    f"'validation error: {REASON}. rule validate-limits failed at path {where}'"
                )
                return {"allowed": False, "status": {"code": 400, "message": message}}
    return {"allowed": True}


def kubectl(twin: RunningTwin, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(twin.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def kyverno(twin: RunningTwin, tmp_path: Path) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path / "kyverno")
    server.responder = require_limits
    manifest = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [
            {
                "name": WEBHOOK,
                "clientConfig": {"url": server.url("/validate/fail"), "caBundle": server.ca_bundle},
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", "kyverno"],
                        }
                    ]
                },
                "failurePolicy": "Fail",
                "sideEffects": "NoneOnDryRun",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }
    path = tmp_path / "kyverno-webhook.yaml"
    path.write_text(yaml.safe_dump(manifest))
    applied = kubectl(twin, "apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    listed = kubectl(twin, "get", "validatingwebhookconfigurations", CONFIGURATION)
    assert listed.stdout.split()[:5] == ["NAME", "WEBHOOKS", "AGE", CONFIGURATION, "1"]
    try:
        yield server
    finally:
        kubectl(twin, "delete", "-f", str(path), "--ignore-not-found")
        server.close()


def test_gate_fails_naming_the_webhook_that_refused_its_pods(
    twin: RunningTwin, kyverno: WebhookServer
) -> None:
    # --maxfail 1: the first check that starts a pod is refused, which is all this shows.
    result = twin.pytest("-m", "gate", "--maxfail", "1", "-q", "-o", "log_cli=false", timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert kyverno.reviews, "the webhook was never called"
    assert f'admission webhook "{WEBHOOK}" refused probe pod' in output, output[-3000:]
    assert REASON in output, output[-3000:]
    assert "validatingwebhookconfigurations" in output, output[-3000:]
    assert "timed out" not in output, output[-3000:]


def test_deployment_whose_pods_are_refused_fails_at_once_naming_the_webhook(
    twin: RunningTwin, kyverno: WebhookServer
) -> None:
    """Pods a controller creates: the refusal is in the ReplicaSet's ReplicaFailure condition,
    and the wait for the Deployment reports it instead of running out its deadline."""
    cluster = connect(str(twin.kubeconfig), None)
    core = cluster.core()
    namespace = "admission-refused-deployment"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    run = RunContext(cluster, "cg-admission-test", namespace, {})
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError) as refused:
            workloads.deploy(
                run, "refused", replicas=2, affinity={}, min_available=1, timeout_s=DEADLINE_S
            )
    finally:
        run.undo_all()
        core.delete_namespace(namespace)
    assert time.monotonic() - started < DEADLINE_S / 2
    message = str(refused.value)
    assert message.startswith(
        f'admission webhook "{WEBHOOK}" refused the pods of Deployment {namespace}/refused: '
    )
    assert REASON in message
