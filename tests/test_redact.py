"""Redaction: secrets known to the process and secret-shaped strings never reach reports, and
what is not secret (ids, hashes, AWS error codes) stays readable."""

from __future__ import annotations

import hashlib
import json

from kubernetes import client

from clustergate.redact import MASK, Redactor, known_secrets

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENabcdef0123456789"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9."
    "eyJpc3MiOiJodHRwczovL29pZGMuZWtzIiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50In0."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----"


def test_known_values_are_replaced_wherever_they_appear() -> None:
    redactor = Redactor([SECRET_KEY, "short"])
    text = f"url=https://x/?sig={SECRET_KEY}&a=1 and json {json.dumps({'k': SECRET_KEY})}"
    redacted = redactor.text(text)
    assert SECRET_KEY not in redacted
    assert redacted.count(MASK) == 2
    assert "short" in redactor.text("short values are not taken for secrets")


def test_secret_shapes_are_replaced_without_being_known() -> None:
    redactor = Redactor()
    samples = {
        "jwt": f"token file holds {JWT} today",
        "bearer": "Authorization: Bearer abcdefghijklmnop0123456789",
        "access key": f"access key {ACCESS_KEY} used",
        "pem": f"key:\n{PEM}\nend",
        "aws secret": f"aws_secret_access_key = {SECRET_KEY}",
        "json field": json.dumps({"SessionToken": SESSION}),
        "yaml field": "    token: abcdefghijklmnopqrstuvwxyz012345",
        "env": f"AWS_SESSION_TOKEN={SESSION}",
    }
    for name, sample in samples.items():
        redacted = redactor.text(sample)
        for secret in (JWT, SECRET_KEY, SESSION, "abcdefghijklmnop0123456789", "MIIEowIBAAKCAQEA"):
            assert secret not in redacted, f"{name}: {secret[:12]}... left in {redacted!r}"
        assert "IOSFODNN7EXAMPLE" not in redacted, name
        assert MASK in redacted, name


def test_what_is_not_secret_stays() -> None:
    redactor = Redactor()
    digest = hashlib.sha256(b"x").hexdigest()
    text = (
        f"sha256 {digest} run cg-20261204t1330-4f2a AccessDenied: Not authorized to perform "
        "sts:AssumeRoleWithWebIdentity on arn:aws:iam::123456789012:role/web "
        "tokens_per_second=5 expirationSeconds: 3600"
    )
    assert redactor.text(text) == text


def test_structures_mask_secret_fields_and_redact_every_string() -> None:
    redactor = Redactor([SECRET_KEY])
    data = {
        "users": [
            {"name": "admin", "user": {"token": "t0k3n-value-123", "client-key-data": "QUJD"}}
        ],
        "env": [{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::1:role/web"}],
        "password": "hunter2hunter2",
        "note": f"seen {SECRET_KEY}",
        "count": 3,
        "tokens": ["not", "secret"],
    }
    redacted = redactor.data(data)
    assert redacted["users"][0]["user"] == {"token": MASK, "client-key-data": MASK}
    assert redacted["users"][0]["name"] == "admin"
    assert redacted["env"][0]["value"] == "arn:aws:iam::1:role/web"
    assert redacted["password"] == MASK
    assert redacted["note"] == f"seen {MASK}"
    assert redacted["count"] == 3
    assert redacted["tokens"] == ["not", "secret"]


def test_the_process_secrets_are_known() -> None:
    configuration = client.Configuration()
    # As the kubernetes client's kubeconfig loader sets it.
    configuration.api_key = {"BearerToken": "Bearer kube-token-0123456789"}
    found = known_secrets(
        configuration,
        {
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SESSION_TOKEN": SESSION,
            "AWS_REGION": "us-west-2",
            "HOME": "/root",
        },
    )
    assert {SECRET_KEY, ACCESS_KEY, SESSION, "kube-token-0123456789"} <= set(found)
    assert "us-west-2" not in found
    assert "/root" not in found
