"""Keeping secrets out of what a run leaves behind: diagnostics, reports and the evidence bundle.

Two nets, because neither is enough alone. Known values: the secrets this process holds (the
kubeconfig's bearer token, AWS keys and session token from the environment) are replaced
wherever they appear, whatever their shape. Shapes: what looks like a secret is replaced even
when it is not known here (a token printed by a probe pod, a key in a log line): JSON Web
Tokens, ``Bearer`` values, AWS access key ids, PEM private keys, and the value of any field
whose name says it is secret (``token``, ``password``, ``secretAccessKey``, ``client-key-data``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "<redacted>"
#: Shorter values are not treated as known secrets: replacing "1" everywhere says nothing.
MIN_KNOWN_LENGTH = 8
#: Environment variables whose values are secrets by name.
SECRET_ENV = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.IGNORECASE
)
#: Field names whose values are secrets (JSON/YAML keys, env names, query parameters).
SECRET_KEY = re.compile(
    r"^(.*[_-])?(token|password|passwd|secret|secret[_-]?access[_-]?key|session[_-]?token|"
    r"client[_-]key[_-]data|private[_-]key|api[_-]?key|authorization|credentials?)$",
    re.IGNORECASE,
)
_KEY_NAMES = (
    r"token|id_token|access_token|refresh_token|password|passwd|secret|aws_secret_access_key|"
    r"secretaccesskey|secret_access_key|aws_session_token|sessiontoken|session_token|"
    r"client-key-data|authorization|x-amz-security-token"
)
SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
        ),
        MASK,
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + MASK),
    (re.compile(r"\b(AKIA|ASIA|AIDA|AROA|ANPA|AGPA)[A-Z0-9]{16}\b"), r"\1" + MASK),
    (
        re.compile(rf"(?i)([\"']?\b(?:{_KEY_NAMES})\b[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}}&]{{6,}})"),
        r"\1" + MASK,
    ),
)


class Redactor:
    """Replaces the known secret values and every secret-shaped string."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        values = {value for value in known if value and len(value) >= MIN_KNOWN_LENGTH}
        # Longest first, so that a secret containing another is replaced whole.
        self.known = tuple(sorted(values, key=len, reverse=True))

    def text(self, value: str) -> str:
        for secret in self.known:
            value = value.replace(secret, MASK)
        for pattern, replacement in SHAPES:
            value = pattern.sub(replacement, value)
        return value

    def data(self, value: Any) -> Any:
        """A JSON-like structure with every secret field masked and every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: MASK
                if isinstance(key, str) and SECRET_KEY.match(key) and _is_value(item)
                else self.data(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value


def _is_value(item: Any) -> bool:
    return isinstance(item, str | bytes | int | float) and item not in ("", None)


def known_secrets(
    api_configuration: Any = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The secrets this process holds: the Kubernetes client's credentials (bearer token,
    basic-auth password) and the environment's secret-named variables (AWS keys and tokens)."""
    environ = os.environ if environ is None else environ
    found = [value for name, value in environ.items() if SECRET_ENV.search(name)]
    if api_configuration is not None:
        for value in (getattr(api_configuration, "api_key", None) or {}).values():
            found.append(str(value))
            found.append(str(value).removeprefix("Bearer ").strip())
        found.append(str(getattr(api_configuration, "password", "") or ""))
    return [value for value in found if value]
