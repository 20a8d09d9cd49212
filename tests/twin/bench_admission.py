"""Benchmark: what the pod identity webhook costs a pod create. Pods of an IRSA service account
are created one after the other, first with no webhook registered, then through
``pod-identity-webhook`` (an HTTPS call per pod, the account from the webhook's informer).
Prints figures; asserts nothing about time, only that the second batch was mutated.

    python -m tests.twin.bench_admission
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubernetes import client

from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.pod_identity_webhook import PodIdentityWebhook
from clustergate.twin.pod_identity_webhook.mutation import VOLUME_NAME, Flags
from tests.twin.test_apiserver import RunningServer, pod_body

PODS = 300
ROLE = "arn:aws:iam::123456789012:role/bench"


def create_pods(twin: RunningServer, namespace: str) -> float:
    """Mean milliseconds per sequential pod create."""
    core = client.CoreV1Api(twin.api())
    twin.namespace(namespace)
    account = {"metadata": {"name": "irsa", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}}
    core.create_namespaced_service_account(namespace, account)
    started = time.perf_counter()
    for index in range(PODS):
        body = pod_body(f"pod-{index}")
        body["spec"]["serviceAccountName"] = "irsa"
        core.create_namespaced_pod(namespace, body)
    return (time.perf_counter() - started) / PODS * 1000


def main() -> None:
    twin = RunningServer(Path(tempfile.mkdtemp(prefix="bench-admission-")))
    server = twin.server

    def kube() -> KubeClient:
        return KubeClient(server.url, server.ca_pem_path, server.internal_token)

    webhook = PodIdentityWebhook(
        Path(tempfile.mkdtemp(prefix="bench-pod-identity-")),
        twin.netmap,
        kube,
        Flags(aws_default_region=twin.settings.network.region),
    )
    try:
        plain = create_pods(twin, "plain")
        twin.call(webhook.start())

        async def register() -> None:
            registrar = kube()
            try:
                await webhook.register(registrar)
            finally:
                await registrar.close()

        twin.call(register())
        hooked = create_pods(twin, "hooked")
        pod = client.CoreV1Api(twin.api()).read_namespaced_pod("pod-0", "hooked")
        assert any(volume.name == VOLUME_NAME for volume in pod.spec.volumes or [])
        print(f"pod create, mean of {PODS} sequential creates:")
        print(f"  no webhook registered:       {plain:6.1f} ms")
        print(f"  through pod-identity-webhook: {hooked:6.1f} ms (+{hooked - plain:.1f} ms)")
    finally:
        twin.call(webhook.stop())
        twin.close()


if __name__ == "__main__":
    main()
