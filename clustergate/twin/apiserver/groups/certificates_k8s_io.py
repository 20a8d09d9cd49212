"""certificates.k8s.io/v1: CertificateSigningRequest with its status and approval
subresources (pkg/apis/certificates/validation). No signer runs: a CSR is approved or denied
through the API and stays unsigned."""

from __future__ import annotations

import base64
import binascii

from clustergate.twin.apiserver.resource_type import (
    STATUS_VERBS,
    ApiGroup,
    Cause,
    Obj,
    ResourceType,
    Subresource,
    status,
)

_PEM_HEADER = b"-----BEGIN CERTIFICATE REQUEST-----"


def go_bytes(value: bytes | None) -> str:
    """A byte slice as Go's %#v prints it in a field error: ``[]byte(nil)``, ``[]byte{0x2d}``."""
    if value is None:
        return "[]byte(nil)"
    return "[]byte{" + ", ".join(f"0x{byte:x}" for byte in value) + "}"


def validate_csr(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    request = spec.get("request")
    pem: bytes | None = None
    if request:
        try:
            pem = base64.b64decode(request, validate=True)
        except (binascii.Error, ValueError):
            pem = b""
    if pem is None or _PEM_HEADER not in pem:
        causes.append(
            (
                "spec.request",
                "FieldValueInvalid",
                f"Invalid value: {go_bytes(pem)}: PEM block type must be CERTIFICATE REQUEST",
            )
        )
    if not spec.get("usages"):
        causes.append(
            ("spec.usages", "FieldValueRequired", "Required value: usages must be provided")
        )
    if not spec.get("signerName"):
        causes.append(("spec.signerName", "FieldValueRequired", "Required value"))
    return causes


GROUP = ApiGroup(
    "certificates.k8s.io",
    (
        ResourceType(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            False,
            ("csr",),
            subresources=(
                Subresource("approval", "CertificateSigningRequest", STATUS_VERBS),
                status("CertificateSigningRequest"),
            ),
        ),
    ),
    validators={"certificatesigningrequests": validate_csr},
)
