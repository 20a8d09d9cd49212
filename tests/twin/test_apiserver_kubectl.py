"""The twin's API server driven by the system kubectl and by the kubernetes client's streams:
get, describe, apply, cordon/uncordon, drain, scale, rollout status, wait, logs, exec, proxy.

Logs and exec reach a node through the KubeletHub. The kubelet here is a test double: it runs
the exec'd command as a local subprocess and serves fixed log lines, which is what the real
kubelet's side of those two calls amounts to.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from aiohttp import web
from kubernetes import client
from kubernetes.stream import stream

from clustergate.twin.kubelet_hub import ContainerNotFound, LogOptions
from tests.twin.test_apiserver import RunningServer, kubeconfig_text, pod_body

NODE = "node-k"
LOG_LINES = [f"line {index}" for index in range(5)]


class SubprocessExec:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def write_stdin(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    async def close_stdin(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()

    async def _read(self, reader: asyncio.StreamReader | None) -> AsyncIterator[bytes]:
        assert reader is not None
        while chunk := await reader.read(4096):
            yield chunk

    def stdout(self) -> AsyncIterator[bytes]:
        return self._read(self._process.stdout)

    def stderr(self) -> AsyncIterator[bytes]:
        return self._read(self._process.stderr)

    async def wait(self) -> int:
        return await self._process.wait()

    async def resize(self, width: int, height: int) -> None:
        return None

    async def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


class FakeKubelet:
    """Test double of a node's kubelet: canned logs, commands run as local subprocesses."""

    async def logs(
        self, namespace: str, pod: str, container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        if container != "main":
            raise ContainerNotFound(container)
        lines = LOG_LINES[-options.tail_lines :] if options.tail_lines else LOG_LINES
        for line in lines:
            yield f"{line}\n".encode()

    async def exec(
        self, namespace: str, pod: str, container: str, command: list[str], tty: bool
    ) -> SubprocessExec:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return SubprocessExec(process)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("apiserver-kubectl"))
    running.kubelets.register(NODE, FakeKubelet())
    yield running
    running.close()


@pytest.fixture(scope="module")
def kubectl(twin: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kubeconfig = tmp_path_factory.mktemp("kubeconfig") / "config"
    kubeconfig.write_text(kubeconfig_text(twin))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, check: bool = True, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    return run


@pytest.fixture(scope="module")
def core(twin: RunningServer) -> client.CoreV1Api:
    api = client.CoreV1Api(twin.api())
    api.create_node(
        {
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.50"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )
    api.create_namespaced_pod("default", pod_body("runner", NODE, {"app": "runner"}))
    api.patch_namespaced_pod_status(
        "runner",
        "default",
        {
            "status": {
                "phase": "Running",
                "podIP": "10.0.128.50",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
    )
    return api


def test_kubectl_get_and_describe(kubectl: Any, core: client.CoreV1Api) -> None:
    assert NODE in kubectl("get", "nodes").stdout
    pods = json.loads(kubectl("get", "pods", "-l", "app=runner", "-o", "json").stdout)
    assert [p["metadata"]["name"] for p in pods["items"]] == ["runner"]
    described = kubectl("describe", "pod", "runner").stdout
    assert "Node:" in described
    assert NODE in described
    assert "busybox:1.36" in described
    missing = kubectl("get", "pod", "nope", check=False)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr


def test_kubectl_apply_and_delete(kubectl: Any, core: client.CoreV1Api, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    )
    assert "created" in kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  b: '2'\n"
    )
    assert "configured" in kubectl("apply", "-f", str(manifest)).stdout
    assert core.read_namespaced_config_map("applied", "default").data == {"b": "2"}
    kubectl("delete", "-f", str(manifest))
    assert kubectl("get", "cm", "applied", check=False).returncode != 0


def test_kubectl_apply_server_side(kubectl: Any, core: client.CoreV1Api, tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"

    def deployment(replicas: int, image: str) -> str:
        return (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\nspec:\n"
            f"  replicas: {replicas}\n  selector:\n    matchLabels: {{app: ssa}}\n"
            "  template:\n    metadata:\n      labels: {app: ssa}\n    spec:\n"
            f"      containers:\n      - name: app\n        image: {image}\n"
        )

    manifest.write_text(deployment(1, "registry.k8s.io/pause:3.9"))
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    manifest.write_text(deployment(2, "registry.k8s.io/pause:3.9"))
    dry = kubectl("apply", "--server-side", "--dry-run=server", "-f", str(manifest)).stdout
    assert "serverside-applied (server dry run)" in dry
    diff = kubectl("diff", "--server-side", "-f", str(manifest), check=False)
    assert diff.returncode == 1, diff.stderr  # 1: differences found
    assert "+  replicas: 2" in diff.stdout, diff.stdout
    unchanged = json.loads(kubectl("get", "deployment", "ssa", "-o", "json").stdout)
    assert unchanged["spec"]["replicas"] == 1, "a dry run keeps nothing"
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    got = json.loads(
        kubectl("get", "deployment", "ssa", "-o", "json", "--show-managed-fields").stdout
    )
    assert got["spec"]["replicas"] == 2
    managers = {(m["manager"], m["operation"]) for m in got["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers, managers

    manifest.write_text(deployment(3, "registry.k8s.io/pause:3.10"))
    other = ("apply", "--server-side", "--field-manager=rollout-bot", "-f", str(manifest))
    refused = kubectl(*other, check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 2 conflicts: conflicts with "kubectl"' in refused.stderr, (
        refused.stderr
    )
    assert ".spec.replicas" in refused.stderr, refused.stderr
    kubectl(*other, "--force-conflicts")
    got = json.loads(
        kubectl("get", "deployment", "ssa", "-o", "json", "--show-managed-fields").stdout
    )
    assert got["spec"]["replicas"] == 3
    replicas_owners = {
        m["manager"]
        for m in got["metadata"]["managedFields"]
        if "f:replicas" in m["fieldsV1"].get("f:spec", {})
    }
    assert replicas_owners == {"rollout-bot"}, got["metadata"]["managedFields"]
    kubectl("delete", "-f", str(manifest))


CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
"""


def _widget(size: int) -> str:
    return (
        f"apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: {size}\n"
    )


def test_kubectl_custom_resources(kubectl: Any, core: client.CoreV1Api, tmp_path: Path) -> None:
    crd, widget = tmp_path / "crd.yaml", tmp_path / "widget.yaml"
    crd.write_text(CRD_YAML)
    assert "created" in kubectl("apply", "-f", str(crd)).stdout
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    listed = printed(kubectl("get", "crd").stdout)
    assert listed[0] == ["NAME", "CREATED AT"]
    assert "widgets.example.com" in [row[0] for row in listed[1:]]
    assert "size\t<integer> -required-" in kubectl("explain", "widgets.spec").stdout
    widget.write_text(_widget(3))
    assert "created" in kubectl("apply", "-f", str(widget)).stdout
    assert printed(kubectl("get", "widgets").stdout) == [["NAME", "SIZE", "READY"], ["w1", "3"]]
    got = json.loads(kubectl("get", "wd", "w1", "-o", "json").stdout)
    assert got["spec"] == {"size": 3}

    strict = tmp_path / "strict.yaml"
    strict.write_text(_widget(3).replace("w1", "w2") + "  unknown: 1\n")
    refused = kubectl("apply", "-f", str(strict), check=False)
    assert refused.returncode != 0
    assert (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "spec.unknown"'
    ) in refused.stderr, refused.stderr

    widget.write_text(_widget(0))
    refused = kubectl("apply", "-f", str(widget), check=False)
    assert refused.returncode != 0
    assert "spec.size in body should be greater than or equal to 1" in refused.stderr
    widget.write_text(_widget(5))
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(widget)).stdout
    assert json.loads(kubectl("get", "wd", "w1", "-o", "json").stdout)["spec"]["size"] == 5

    kubectl("delete", "-f", str(crd), "--wait=true", "--timeout=10s")
    assert kubectl("get", "crd", "widgets.example.com", check=False).returncode != 0
    gone = kubectl("get", "widgets", check=False)
    assert gone.returncode != 0
    # kubectl's discovery cache may still name the type: then the list itself is a 404.
    assert (
        "doesn't have a resource type" in gone.stderr
        or "could not find the requested resource" in gone.stderr
    ), gone.stderr


def printed(output: str) -> list[list[str]]:
    """kubectl's table output as rows of cells (columns are separated by 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


def test_kubectl_cordon_and_uncordon(kubectl: Any, core: client.CoreV1Api) -> None:
    kubectl("cordon", NODE)
    assert core.read_node(NODE).spec.unschedulable is True
    header, row = printed(kubectl("get", "node", NODE).stdout)
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert row[:3] == [NODE, "Ready,SchedulingDisabled", "<none>"]
    kubectl("uncordon", NODE)
    assert not core.read_node(NODE).spec.unschedulable
    assert printed(kubectl("get", "node", NODE).stdout)[1][1] == "Ready"


def test_kubectl_get_prints_the_server_side_columns(
    twin: RunningServer, kubectl: Any, core: client.CoreV1Api
) -> None:
    header, *rows = printed(kubectl("get", "pods", "-l", "app=runner", "-o", "wide").stdout)
    assert header == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert [row[:4] + row[5:7] for row in rows] == [
        ["runner", "0/1", "Running", "0", "10.0.128.50", NODE]
    ]
    namespace = twin.namespace("printing")
    labels = {"app": "printed"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": "c:1"}]},
    }
    workload = {"selector": {"matchLabels": labels}, "template": template}
    apps = client.AppsV1Api(twin.api())
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "web"}, "spec": workload})
    apps.create_namespaced_daemon_set(namespace, {"metadata": {"name": "agent"}, "spec": workload})
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 80}]},
        },
    )
    client.PolicyV1Api(twin.api()).create_namespaced_pod_disruption_budget(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
        },
    )
    tables = [
        printed(block)
        for block in kubectl("get", "deploy,ds,svc,pdb", "-n", namespace).stdout.split("\n\n")
    ]
    assert [table[0] for table in tables] == [
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
    ]
    deployment, daemonset, service, budget = (table[1] for table in tables)
    assert deployment[:4] == ["deployment.apps/web", "0/1", "0", "0"]
    assert daemonset[:7] == ["daemonset.apps/agent", "0", "0", "0", "0", "0", "<none>"]
    node_port = core.read_namespaced_service("web", namespace).spec.ports[0].node_port
    assert service[:2] == ["service/web", "NodePort"]
    assert service[3:5] == ["<none>", f"80:{node_port}/TCP"]
    assert budget[:4] == ["poddisruptionbudget.policy/web", "1", "N/A", "0"]
    labelled = printed(kubectl("get", "pods", "-A", "--show-labels", "-l", "app=runner").stdout)
    assert labelled[0][0] == "NAMESPACE"
    assert (labelled[1][0], labelled[1][-1]) == ("default", "app=runner")


def test_kubectl_logs(kubectl: Any, core: client.CoreV1Api) -> None:
    assert kubectl("logs", "runner").stdout.splitlines() == LOG_LINES
    assert kubectl("logs", "runner", "--tail=2").stdout.splitlines() == LOG_LINES[-2:]
    wrong = kubectl("logs", "runner", "-c", "other", check=False)
    assert wrong.returncode != 0
    assert "container other is not valid for pod runner" in wrong.stderr


def test_kubectl_exec_streams_and_exit_code(kubectl: Any, core: client.CoreV1Api) -> None:
    done = kubectl(
        "exec", "runner", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert "err" in done.stderr
    echoed = kubectl("exec", "-i", "runner", "--", "cat", stdin="hello stdin\n")
    assert echoed.stdout == "hello stdin\n"


def test_python_client_exec_uses_channel_protocol(core: client.CoreV1Api) -> None:
    output = stream(
        core.connect_get_namespaced_pod_exec,
        "runner",
        "default",
        command=["sh", "-c", "echo from-python"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert output == "from-python\n"
    session = stream(
        core.connect_get_namespaced_pod_exec,
        "runner",
        "default",
        command=["sh", "-c", "exit 4"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    session.run_forever(timeout=10)
    assert session.returncode == 4


def test_kubectl_wait_scale_and_rollout_status(
    twin: RunningServer, kubectl: Any, core: client.CoreV1Api
) -> None:
    apps = client.AppsV1Api(twin.api())
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "roll"},
            "spec": {
                "selector": {"matchLabels": {"app": "roll"}},
                "template": {
                    "metadata": {"labels": {"app": "roll"}},
                    "spec": {"containers": [{"name": "c", "image": "c:1"}]},
                },
            },
        },
    )
    kubectl("scale", "deployment/roll", "--replicas=3")
    deployment = apps.read_namespaced_deployment("roll", "default")
    assert deployment.spec.replicas == 3

    def report_rolled_out() -> None:
        time.sleep(0.5)
        status = {
            "observedGeneration": deployment.metadata.generation,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
            ],
        }
        apps.patch_namespaced_deployment_status("roll", "default", {"status": status})

    reporter = threading.Thread(target=report_rolled_out)
    reporter.start()
    rolled = kubectl("rollout", "status", "deployment/roll", "--timeout=10s")
    reporter.join()
    assert "successfully rolled out" in rolled.stdout
    waited = kubectl("wait", "--for=condition=Available", "deployment/roll", "--timeout=10s")
    assert "condition met" in waited.stdout


def test_kubectl_drain_evicts_through_budget(
    twin: RunningServer, kubectl: Any, core: client.CoreV1Api
) -> None:
    core.create_node({"metadata": {"name": "drain-me"}})
    core.create_namespaced_pod("default", pod_body("drained", "drain-me", {"app": "drained"}))
    core.patch_namespaced_pod_status(
        "drained",
        "default",
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    policy = client.PolicyV1Api(twin.api())
    policy.create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "drained"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "drained"}}},
        },
    )
    status = {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 1}
    policy.patch_namespaced_pod_disruption_budget_status("drained", "default", {"status": status})
    done = kubectl("drain", "drain-me", "--force", "--grace-period=0", "--timeout=20s")
    assert "evicting pod default/drained" in done.stderr + done.stdout
    assert core.read_node("drain-me").spec.unschedulable is True
    assert core.list_namespaced_pod("default", field_selector="spec.nodeName=drain-me").items == []


def test_proxy_to_pod_port_and_503(twin: RunningServer, core: client.CoreV1Api) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.path} {request.query.get('q')}")

    async def serve() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    runner, port = twin.call(serve())
    try:
        twin.netmap.publish("10.0.128.50", 8080, ("127.0.0.1", port))
        http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path)
        headers = {"Authorization": f"Bearer {twin.server.admin_token}"}
        base = f"{twin.server.url}/api/v1/namespaces/default/pods/runner:8080/proxy"
        answer = http.request("GET", f"{base}/greet?q=1", headers=headers)
        assert (answer.status, answer.data) == (200, b"hello /greet 1")
        twin.netmap.withdraw("10.0.128.50", 8080)
        refused = http.request("GET", f"{base}/greet", headers=headers)
        assert refused.status == 503
        assert json.loads(refused.data)["kind"] == "Status"
    finally:
        twin.call(runner.cleanup())
