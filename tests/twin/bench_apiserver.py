"""Benchmark: 1,000 nodes and 10,000 pods in the twin's API server, then a full pod list in
pages of 500 (as informers and kubectl do), through the kubernetes client's raw responses and
through its typed models. Prints figures; asserts nothing about time.

    python -m tests.twin.bench_apiserver
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import urllib3
from kubernetes import client

from clustergate.kube import list_all
from tests.twin.test_apiserver import RunningServer

NODES = 1_000
PODS = 10_000
PAGE = 500


def load(twin: RunningServer) -> None:
    """Plain HTTP posts: the typed client's request validation would dominate the load time."""
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path)
    headers = {
        "Authorization": f"Bearer {twin.server.admin_token}",
        "Content-Type": "application/json",
    }

    def post(path: str, body: dict[str, object]) -> None:
        response = http.request(
            "POST", twin.server.url + path, body=json.dumps(body), headers=headers
        )
        assert response.status == 201, response.data

    for index in range(NODES):
        post("/api/v1/nodes", {"metadata": {"name": f"node-{index:04d}"}})
    for index in range(PODS):
        body = {
            "metadata": {"name": f"pod-{index:05d}", "labels": {"app": f"app-{index % 50}"}},
            "spec": {
                "nodeName": f"node-{index % NODES:04d}",
                "containers": [{"name": "main", "image": "registry.example/app:1.0"}],
            },
        }
        post("/api/v1/namespaces/default/pods", body)


def paged_raw(core: client.CoreV1Api) -> int:
    token, total = None, 0
    while True:
        response = core.list_pod_for_all_namespaces(
            limit=PAGE, _continue=token, _preload_content=False
        )
        page = json.loads(response.data)
        total += len(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return total


def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        twin = RunningServer(Path(state))
        try:
            core = client.CoreV1Api(twin.api())
            started = time.perf_counter()
            load(twin)
            print(f"load: {NODES} nodes + {PODS} pods in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            count = paged_raw(core)
            print(
                f"paged list (limit={PAGE}), raw JSON: {count} pods in "
                f"{time.perf_counter() - started:.2f} s"
            )
            started = time.perf_counter()
            count = sum(
                len(
                    core.list_namespaced_pod(
                        "default",
                        field_selector=f"spec.nodeName=node-{i:04d}",
                        _preload_content=False,
                    ).data
                )
                > 0
                for i in range(0, NODES, 10)
            )
            print(
                f"100 per-node lists (spec.nodeName index): {time.perf_counter() - started:.2f} s"
            )
            started = time.perf_counter()
            count = len(list_all(core.list_pod_for_all_namespaces, page_size=PAGE))
            print(
                f"paged list (limit={PAGE}), typed models: {count} pods in "
                f"{time.perf_counter() - started:.2f} s"
            )
            counts = twin.server.request_counts()
            for key in sorted(counts):
                print(f"requests {key[0]:>8} {key[1]}: {counts[key]}")
        finally:
            twin.close()


if __name__ == "__main__":
    main()
