"""The scale benchmark's own parts: how it names requests, and that it runs end to end (small)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_scale

SERVER = "https://127.0.0.1:6443"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/pods?limit=500", ("list", "pods")),
        ("GET", "/api/v1/namespaces/ns/pods?watch=true", ("watch", "pods")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", ("get", "pods/log")),
        ("GET", "/api/v1/nodes/n/proxy/configz", ("get", "nodes/proxy")),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
         ("create", "selfsubjectaccessreviews")),
        ("DELETE", "/api/v1/namespaces/ns/pods", ("deletecollection", "pods")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale",
         ("patch", "deployments/scale")),
    ],
)  # fmt: skip
def test_requests_are_named_as_the_audit_log_names_them(method, path, expected) -> None:
    assert bench_scale.verb_and_resource(method, SERVER + path) == expected


def test_the_scale_benchmark_runs_on_a_small_twin(tmp_path: Path) -> None:
    result = bench_scale.bench(nodes=4, pods_per_node=2, sample=1, work=tmp_path)
    assert result["pytest_exit"] == 0, result
    assert result["outcomes"].get("passed", 0) > 0
    assert "failed" not in result["outcomes"]
    requests = result["requests"]
    assert requests.get("create selfsubjectaccessreviews", 0) > 0, requests
    assert requests.get("list pods", 0) > 0, requests
