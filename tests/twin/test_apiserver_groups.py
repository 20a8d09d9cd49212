"""The API groups served from clustergate.twin.apiserver.groups, against the official client:
discovery, built-in objects, Priority admission, CSR approval and SelfSubjectReview.

Their defaulting and 422 causes are compared with a real kube-apiserver's answers in
tests/twin/test_apiserver_corpus.py (cases horizontal_pod_autoscalers, networking_objects,
priority_classes, storage_node_and_certificates, endpoint_slices)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client

from tests.twin.test_apiserver import RunningServer, error_of, pod_body

#: What an EKS 1.31 API server serves of these groups (kubectl api-resources there).
SERVED = {
    ("autoscaling/v2", "horizontalpodautoscalers"): (True, ["hpa"]),
    ("networking.k8s.io/v1", "ingresses"): (True, ["ing"]),
    ("networking.k8s.io/v1", "ingressclasses"): (False, []),
    ("networking.k8s.io/v1", "networkpolicies"): (True, ["netpol"]),
    ("discovery.k8s.io/v1", "endpointslices"): (True, []),
    ("scheduling.k8s.io/v1", "priorityclasses"): (False, ["pc"]),
    ("storage.k8s.io/v1", "storageclasses"): (False, ["sc"]),
    ("storage.k8s.io/v1", "csidrivers"): (False, []),
    ("storage.k8s.io/v1", "csinodes"): (False, []),
    ("storage.k8s.io/v1", "volumeattachments"): (False, []),
    ("storage.k8s.io/v1", "csistoragecapacities"): (True, []),
    ("node.k8s.io/v1", "runtimeclasses"): (False, []),
    ("certificates.k8s.io/v1", "certificatesigningrequests"): (False, ["csr"]),
    ("flowcontrol.apiserver.k8s.io/v1", "flowschemas"): (False, []),
    ("flowcontrol.apiserver.k8s.io/v1", "prioritylevelconfigurations"): (False, []),
    ("authentication.k8s.io/v1", "selfsubjectreviews"): (False, []),
}


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("apiserver-groups"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def api(twin: RunningServer) -> client.ApiClient:
    return twin.api()


def send(twin: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request with a JSON body as given: the client's own models would refuse the
    invalid objects these tests send before the server could."""
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path, retries=False)
    answer = http.request(
        method,
        twin.server.url + path,
        body=None if body is None else json.dumps(body),
        headers={
            "Authorization": f"Bearer {twin.server.admin_token}",
            "Content-Type": "application/json",
        },
    )
    return answer.status, json.loads(answer.data)


def _get(twin: RunningServer, path: str) -> Any:
    status, body = send(twin, "GET", path)
    assert status == 200, body
    return body


def test_discovery_lists_each_group_version_and_resource(twin: RunningServer) -> None:
    for (group_version, plural), (namespaced, short_names) in SERVED.items():
        listed = _get(twin, f"/apis/{group_version}")
        entry = next((r for r in listed["resources"] if r["name"] == plural), None)
        assert entry is not None, f"{plural} missing from /apis/{group_version}: {listed}"
        assert entry["namespaced"] is namespaced, plural
        assert entry.get("shortNames", []) == short_names, plural
    groups = {g["name"] for g in _get(twin, "/apis")["groups"]}
    assert {gv.split("/")[0] for gv, _ in SERVED} <= groups


def test_built_in_priority_classes_flow_control_and_gp2(api: client.ApiClient) -> None:
    classes = client.SchedulingV1Api(api).list_priority_class().items
    values = {pc.metadata.name: pc.value for pc in classes}
    assert values == {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
    flow = client.FlowcontrolApiserverV1Api(api)
    schemas = {
        fs.metadata.name: fs.spec.matching_precedence for fs in flow.list_flow_schema().items
    }
    assert schemas["exempt"] == 1
    assert schemas["catch-all"] == 10000
    levels = {p.metadata.name: p.spec.type for p in flow.list_priority_level_configuration().items}
    assert levels["exempt"] == "Exempt"
    assert levels["workload-low"] == "Limited"
    (gp2,) = client.StorageV1Api(api).list_storage_class().items
    assert (gp2.metadata.name, gp2.provisioner) == ("gp2", "kubernetes.io/aws-ebs")
    assert gp2.metadata.annotations is None, "EKS 1.30+ does not mark gp2 default"


def test_priority_admission(twin: RunningServer, api: client.ApiClient) -> None:
    ns = twin.namespace("priority")
    core = client.CoreV1Api(api)
    critical = pod_body("critical", "", {"app": "p"})
    critical["spec"]["priorityClassName"] = "system-node-critical"
    created = core.create_namespaced_pod(ns, critical)
    assert created.spec.priority == 2000001000
    assert created.spec.preemption_policy == "PreemptLowerPriority"
    assert core.create_namespaced_pod(ns, pod_body("plain", "", {})).spec.priority == 0

    unknown = pod_body("unknown", "", {})
    unknown["spec"]["priorityClassName"] = "gold"
    status, body = error_of(lambda: core.create_namespaced_pod(ns, unknown))
    assert status == 403
    assert (
        body["message"] == 'pods "unknown" is forbidden: no PriorityClass with name gold was found'
    )

    scheduling = client.SchedulingV1Api(api)
    scheduling.create_priority_class(
        {
            "metadata": {"name": "batch-low"},
            "value": 100,
            "globalDefault": True,
            "preemptionPolicy": "Never",
        }
    )
    try:
        defaulted = core.create_namespaced_pod(ns, pod_body("defaulted", "", {}))
        assert (defaulted.spec.priority_class_name, defaulted.spec.priority) == ("batch-low", 100)
        assert defaulted.spec.preemption_policy == "Never"
        handset = pod_body("handset", "", {})
        handset["spec"]["priority"] = 7
        status, body = error_of(lambda: core.create_namespaced_pod(ns, handset))
        assert status == 403
        assert "must not be provided in pod spec" in body["message"]
    finally:
        scheduling.delete_priority_class("batch-low")


def test_csr_approval_subresource(api: client.ApiClient) -> None:
    certificates = client.CertificatesV1Api(api)
    pem = base64.b64encode(
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
    )
    csr = certificates.create_certificate_signing_request(
        {
            "metadata": {"name": "me"},
            "spec": {
                "request": pem.decode(),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
            },
        }
    )
    csr.status = client.V1CertificateSigningRequestStatus(
        conditions=[
            client.V1CertificateSigningRequestCondition(
                type="Approved", status="True", reason="Test", message="approved"
            )
        ]
    )
    approved = certificates.replace_certificate_signing_request_approval("me", csr)
    assert [c.type for c in approved.status.conditions] == ["Approved"]


def test_self_subject_review(twin: RunningServer) -> None:
    token = "viewer-token"
    twin.server.add_token(token, "viewer", ["viewers"])
    review = client.AuthenticationV1Api(twin.api(token)).create_self_subject_review({})
    assert review.status.user_info.username == "viewer"
    assert review.status.user_info.groups == ["viewers", "system:authenticated"]
