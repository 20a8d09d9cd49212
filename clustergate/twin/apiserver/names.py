"""The name rules of apimachinery's validation (IsDNS1123Label, IsDNS1123Subdomain) and their
messages, shared by metadata.name checks and by fields that must be names (a RuntimeClass's
handler)."""

from __future__ import annotations

import re

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def is_label(value: str) -> bool:
    return len(value) <= 63 and LABEL.match(value) is not None


def is_subdomain(value: str) -> bool:
    return len(value) <= 253 and SUBDOMAIN.match(value) is not None
