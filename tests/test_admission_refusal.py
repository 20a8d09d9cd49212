"""Admission refusals as the API server words them → the sentence a check reports."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from clustergate.admission import refusal

POD = "probe pod ns/p (dns)"
CASES = [
    (
        'admission webhook "deny.example.com" denied the request: no limits',
        'admission webhook "deny.example.com" refused probe pod ns/p (dns): no limits',
    ),
    (
        'admission webhook "deny.example.com" denied the request without explanation',
        'admission webhook "deny.example.com" refused probe pod ns/p (dns): without explanation',
    ),
    (
        'Internal error occurred: failed calling webhook "down.example.com": failed to call '
        'webhook: Post "https://h.ns.svc:443/?timeout=10s": no endpoints',
        'admission webhook "down.example.com" refused probe pod ns/p (dns): it could not be '
        "called and its failurePolicy is Fail: failed to call webhook: Post "
        '"https://h.ns.svc:443/?timeout=10s": no endpoints',
    ),
    (
        "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'limits' with binding "
        "'limits-everywhere' denied request: set limits",
        "ValidatingAdmissionPolicy 'limits' (binding 'limits-everywhere') refused probe pod "
        "ns/p (dns): set limits",
    ),
]


@pytest.mark.parametrize(("message", "sentence"), CASES)
def test_refusals_name_the_refuser_and_its_reason(message: str, sentence: str) -> None:
    error = ApiException(status=400, reason="BadRequest")
    error.body = json.dumps({"kind": "Status", "message": message})
    found = refusal(error)
    assert found is not None
    assert found.sentence(POD).startswith(sentence + " (look: kubectl get ")


def test_other_errors_are_not_refusals() -> None:
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": 'pods is forbidden: User "x" cannot create resource'})
    assert refusal(error) is None
