"""What keeping managedFields costs the twin's API server per write (not collected by pytest).

    python -m tests.twin.bench_field_manager [--writes 2000]

Every create, update and patch records its manager's fields, as kube-apiserver does; this
prints the microseconds that adds to a pod's create, to a kubelet's status update and to a
server-side apply of a Deployment. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

from clustergate.twin.apiserver import field_manager

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.9",
                "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
    },
    "status": {"phase": "Pending"},
}
RUNNING = {
    "phase": "Running",
    "podIP": "10.0.128.9",
    "conditions": [{"type": "Ready", "status": "True"}],
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD["spec"]},
    },
}
NOW = "2026-01-01T00:00:00Z"


def per_write(writes: int, make: Callable[[], Any], write: Callable[[Any], Any]) -> float:
    inputs = [make() for _ in range(writes)]
    start = time.perf_counter()
    for each in inputs:
        write(each)
    return (time.perf_counter() - start) / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000)
    writes = parser.parse_args().writes
    created = copy.deepcopy(POD)
    field_manager.record_update("Pod", None, created, "kubectl-run", "", NOW)

    def running() -> Any:
        pod = copy.deepcopy(created)
        pod["status"] = copy.deepcopy(RUNNING)
        return pod

    figures = {
        "pod create": per_write(
            writes,
            lambda: copy.deepcopy(POD),
            lambda pod: field_manager.record_update("Pod", None, pod, "m", "", NOW),
        ),
        "pod status update": per_write(
            writes,
            running,
            lambda pod: field_manager.record_update("Pod", created, pod, "kubelet", "status", NOW),
        ),
        "deployment apply (create)": per_write(
            writes,
            lambda: copy.deepcopy(DEPLOYMENT),
            lambda body: field_manager.apply(None, body, "kubectl", False, "apps/v1", NOW),
        ),
    }
    for name, micros in figures.items():
        print(f"{name:>28}: {micros:7.0f} µs per write ({writes} writes)")


if __name__ == "__main__":
    main()
