"""The twin's kubelets running pods: probe-image pods as real processes in a sandbox (logs,
exec, resolv.conf, tokens, env), simulated pods, restarts and graceful deletion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from clustergate.twin.kubelet.node import node_status, reserved_cpu_millis
from clustergate.twin.kubelet.runtime import is_probe_image
from clustergate.twin.kubelet.sandbox import command_line, expand, resolv_conf
from clustergate.twin.settings import Network, TwinSettings
from tests.twin.test_controllers_e2e import (
    PROBE_IMAGE,
    TwinCluster,
    instance,
    start_cluster,
    wait_for,
)

PRINT_SANDBOX = """
import json, os
root = os.environ['CLUSTERGATE_ROOT']
print(open(root + '/etc/resolv.conf').read())
sa = root + '/var/run/secrets/kubernetes.io/serviceaccount/'
print('namespace-file', open(sa + 'namespace').read())
print('sa-token', len(open(sa + 'token').read().split('.')))
print('aud-token', len(open(root + '/var/run/secrets/aud/token').read().split('.')))
print('config', open(root + '/etc/app/greeting').read())
names = ('POD_NAME', 'NODE', 'POD_IP', 'GREETING', 'LINKED')
print('env', json.dumps({k: os.environ[k] for k in names}))
print('netmap', os.path.exists(os.environ['CLUSTERGATE_NETMAP']))
"""


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinCluster]:
    cluster, stop = start_cluster(tmp_path_factory.mktemp("kubelets"), nodes=2)
    try:
        yield cluster
    finally:
        stop()


def probe_pod(name: str, code: str, restart: str = "Never", **spec: Any) -> dict:
    container = {"name": "probe", "image": PROBE_IMAGE, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name},
        "spec": {"restartPolicy": restart, "containers": [container], **spec},
    }


def phase(twin: TwinCluster, ns: str, name: str) -> str:
    return twin.core.read_namespaced_pod_status(name, ns).status.phase


def is_ready(twin: TwinCluster, ns: str, name: str) -> bool:
    conditions = twin.core.read_namespaced_pod_status(name, ns).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_probe_pod_runs_in_its_sandbox_and_logs(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.core.create_namespaced_config_map(
        ns, {"metadata": {"name": "app"}, "data": {"greeting": "hello"}}
    )
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
        {"name": "LINKED", "value": "$(GREETING)-world"},
    ]
    pod = probe_pod(
        "sandboxed",
        PRINT_SANDBOX,
        container={
            "env": env,
            "volumeMounts": [
                {"name": "aud", "mountPath": "/var/run/secrets/aud"},
                {"name": "app", "mountPath": "/etc/app"},
            ],
        },
        volumes=[
            {
                "name": "aud",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "sts.amazonaws.com",
                                "expirationSeconds": 3600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
            {"name": "app", "configMap": {"name": "app"}},
        ],
    )
    twin.core.create_namespaced_pod(ns, pod)
    wait_for(lambda: phase(twin, ns, "sandboxed") == "Succeeded", "the sandboxed pod to succeed")
    status = twin.core.read_namespaced_pod_status("sandboxed", ns).status
    terminated = status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    log = twin.core.read_namespaced_pod_log("sandboxed", ns)
    assert (
        f"search {ns}.svc.cluster.local svc.cluster.local cluster.local us-west-2.compute.internal"
        in log
    )
    assert "nameserver 10.100.0.10" in log
    assert "options ndots:5" in log
    assert f"namespace-file {ns}" in log
    assert "sa-token 3" in log
    assert "aud-token 3" in log
    assert "config hello" in log
    assert "netmap True" in log
    printed = json.loads(log.split("env ", 1)[1].splitlines()[0])
    assert printed == {
        "POD_NAME": "sandboxed",
        "NODE": twin.core.read_namespaced_pod("sandboxed", ns).spec.node_name,
        "POD_IP": status.pod_ip,
        "GREETING": "hello",
        "LINKED": "hello-world",
    }
    assert status.pod_ip.startswith("10.0.1")  # the pod CIDR 10.0.128.0/17
    tail = twin.core.read_namespaced_pod_log("sandboxed", ns, tail_lines=1, timestamps=True)
    assert tail.startswith("20")
    assert tail.rstrip().endswith("netmap True")
    twin.core.delete_namespace(ns)


def test_exec_into_a_probe_pod_and_not_into_a_simulated_one(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.core.create_namespaced_pod(
        ns,
        probe_pod(
            "server", "import time; print('up', flush=True); time.sleep(300)", restart="Always"
        ),
    )
    twin.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    )
    wait_for(lambda: is_ready(twin, ns, "server") and is_ready(twin, ns, "web"), "both pods ready")
    out = stream(
        twin.core.connect_get_namespaced_pod_exec,
        "server",
        ns,
        command=["cat", "/etc/resolv.conf"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert "nameserver 10.100.0.10" in out
    out = stream(
        twin.core.connect_get_namespaced_pod_exec,
        "server",
        ns,
        command=[
            "python",
            "-c",
            "import os; print(os.environ['HOSTNAME'], os.getcwd() == os.environ['CLUSTERGATE_ROOT'])",  # noqa: E501
        ],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out.strip() == "server True"
    with pytest.raises(ApiException) as raised:
        stream(
            twin.core.connect_get_namespaced_pod_exec,
            "web",
            ns,
            command=["ls"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
    assert "simulates" in str(raised.value)
    node = twin.core.read_namespaced_pod("server", ns).spec.node_name
    kubelet = next(k for k in twin.pool.kubelets.values() if k.node_name == node)
    process = kubelet.workers[f"{ns}/server"].containers[0].process
    assert process is not None
    assert process.returncode is None
    twin.core.delete_namespaced_pod("server", ns)
    wait_for(
        lambda: not twin.core.list_namespaced_pod(ns, field_selector="metadata.name=server").items,
        "server to go",
    )
    assert process.returncode is not None
    twin.core.delete_namespace(ns)


def test_restart_policies(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.core.create_namespaced_pod(ns, probe_pod("crash", "raise SystemExit(2)", restart="Always"))
    twin.core.create_namespaced_pod(ns, probe_pod("fail", "raise SystemExit(2)", restart="Never"))

    def restarted() -> Any:
        statuses = twin.core.read_namespaced_pod_status("crash", ns).status.container_statuses or []
        return statuses[0] if statuses and statuses[0].restart_count >= 2 else None

    crash = wait_for(restarted, "crash to restart twice")
    assert crash.last_state.terminated.exit_code == 2
    wait_for(lambda: phase(twin, ns, "fail") == "Failed", "fail to fail")
    state = twin.core.read_namespaced_pod_status("fail", ns).status.container_statuses[0].state
    assert (state.terminated.exit_code, state.terminated.reason) == (2, "Error")
    twin.core.delete_namespace(ns)


def test_host_network_pod_gets_the_node_ip(twin: TwinCluster) -> None:
    ns = twin.namespace()
    twin.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "host"},
            "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    wait_for(lambda: is_ready(twin, ns, "host"), "host to be ready")
    status = twin.core.read_namespaced_pod_status("host", ns).status
    assert status.pod_ip == status.host_ip
    twin.core.delete_namespace(ns)


def test_never_ready_node_stays_not_ready(twin: TwinCluster) -> None:
    spec = instance(twin.settings, 5, never_ready=True)
    twin.loop.run(twin.pool.launch(spec))
    try:
        twin.loop.run(twin.pool.booted(spec.instance_id))
        node = twin.core.read_node(spec.node_name)
        ready = {c.type: c for c in node.status.conditions}["Ready"]
        assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
        taints = wait_for(
            lambda: twin.core.read_node(spec.node_name).spec.taints, "not-ready taints"
        )
        assert {(t.key, t.effect) for t in taints} == {
            ("node.kubernetes.io/not-ready", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
        }
    finally:
        twin.loop.run(twin.pool.terminate(spec.instance_id))


def test_resolv_conf_follows_dns_policy_and_proxy_mode(tmp_path: Path) -> None:
    settings = TwinSettings(state_dir=str(tmp_path))
    pod = {"metadata": {"namespace": "app"}, "spec": {}}
    assert resolv_conf(pod, settings) == (
        "search app.svc.cluster.local svc.cluster.local cluster.local us-west-2.compute.internal\n"
        "nameserver 10.100.0.10\noptions ndots:5\n"
    )
    ipvs = TwinSettings(state_dir=str(tmp_path), network=Network(proxy_mode="ipvs"))
    assert "nameserver 169.254.20.10\n" in resolv_conf(pod, ipvs)
    host = {"metadata": {"namespace": "app"}, "spec": {"hostNetwork": True}}
    assert resolv_conf(host, settings) == "search us-west-2.compute.internal\nnameserver 10.0.0.2\n"
    custom = {
        "metadata": {"namespace": "app"},
        "spec": {
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["1.1.1.1"],
                "searches": ["corp"],
                "options": [{"name": "ndots", "value": "2"}],
            },
        },
    }
    assert resolv_conf(custom, settings) == "search corp\nnameserver 1.1.1.1\noptions ndots:2\n"


def test_probe_image_command_lines() -> None:
    assert is_probe_image("ghcr.io/clustergate/clustergate-probe:0.1.0")
    assert is_probe_image("registry:5000/clustergate-probe@sha256:abc")
    assert not is_probe_image("ghcr.io/clustergate/clustergate-probe-sidecar:1")
    assert command_line({"args": ["dns", "--count", "$(N)"]}, {"N": "3"}, "/py") == [
        "/py", "-m", "clustergate.probe", "dns", "--count", "3"
    ]  # fmt: skip
    assert command_line({"command": ["python3", "-c", "x"]}, {}, "/py") == ["/py", "-c", "x"]
    assert expand("$(A)-$$(A)-$(B)", {"A": "1"}) == "1-$(A)-$(B)"


def test_node_allocatable_follows_the_eks_reservations() -> None:
    assert reserved_cpu_millis(2000) == 70
    assert reserved_cpu_millis(8000) == 90
    settings = TwinSettings(state_dir="/unused")
    status = node_status(instance(settings, 0), ready=True)
    assert status["allocatable"]["cpu"] == "1930m"
    assert status["allocatable"]["memory"] == f"{(7680 - 255 - 11 * 29 - 100) * 1024}Ki"
    assert status["capacity"]["cpu"] == "2"


def test_fault_kubelet_slow_ready(tmp_path: Path) -> None:
    """kubelet-slow-ready: every pod takes slow_start seconds longer to become Ready."""
    cluster, stop = start_cluster(tmp_path, nodes=1, faults=frozenset({"kubelet-slow-ready"}))
    try:
        ns = cluster.namespace()
        began = time.monotonic()
        cluster.core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "slow"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        )
        wait_for(lambda: is_ready(cluster, ns, "slow"), "the slow pod to become ready")
        timings = cluster.settings.timings
        assert time.monotonic() - began >= timings.pod_start + timings.slow_start
    finally:
        stop()
