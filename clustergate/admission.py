"""Reading an admission refusal: which webhook or policy turned a create down, and why.

On real clusters a policy engine's webhook (Kyverno, Gatekeeper) or a ValidatingAdmissionPolicy
that rejects a check's pods is one of the commonest reasons a gate fails. The API server's
answer names the refuser in fixed words (k8s.io/apiserver: webhook errors, the validating
policy plugin); this module finds them in the answer so a check can say who refused what
instead of waiting for a pod that will never come.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

_WEBHOOK_DENIED = re.compile(
    r'admission webhook "(?P<name>[^"]+)" denied the request(?P<rest>.*)', re.S
)
_WEBHOOK_FAILED = re.compile(r'failed calling webhook "(?P<name>[^"]+)": (?P<rest>.*)', re.S)
_POLICY_DENIED = re.compile(
    r"ValidatingAdmissionPolicy '(?P<name>[^']+)' with binding '(?P<binding>[^']+)' "
    r"denied request: (?P<rest>.*)",
    re.S,
)
_LOOK_WEBHOOKS = (
    "kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations "
    "-o custom-columns=CONFIGURATION:.metadata.name,WEBHOOKS:.webhooks[*].name"
)


@dataclass(frozen=True)
class Refusal:
    """Who refused (``admission webhook "X"`` or ``ValidatingAdmissionPolicy 'P'``), why, and
    the command that shows the refuser's configuration."""

    refuser: str
    reason: str
    look: str

    def sentence(self, what: str) -> str:
        """One line: policy engines' messages come with line breaks of their own."""
        reason = " ".join(self.reason.split())
        return f"{self.refuser} refused {what}: {reason} (look: {self.look})"


def _message(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return str(error.body or error.reason or "")
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def refusal(error: ApiException) -> Refusal | None:
    """The admission refusal ``error`` carries, or None when it is another kind of error."""
    return refusal_in(_message(error))


def refusal_in(message: str) -> Refusal | None:
    """The admission refusal an API message states (a create's answer, or a controller's
    FailedCreate condition that quotes it), or None."""
    found = _WEBHOOK_DENIED.search(message)
    if found:
        reason = found["rest"].removeprefix(":").strip() or "without explanation"
        return Refusal(f'admission webhook "{found["name"]}"', reason, _LOOK_WEBHOOKS)
    found = _WEBHOOK_FAILED.search(message)
    if found:
        reason = f"it could not be called and its failurePolicy is Fail: {found['rest'].strip()}"
        return Refusal(f'admission webhook "{found["name"]}"', reason, _LOOK_WEBHOOKS)
    found = _POLICY_DENIED.search(message)
    if found:
        look = (
            f"kubectl get validatingadmissionpolicy {found['name']} -o yaml; "
            f"kubectl get validatingadmissionpolicybinding {found['binding']} -o yaml"
        )
        refuser = f"ValidatingAdmissionPolicy '{found['name']}' (binding '{found['binding']}')"
        return Refusal(refuser, found["rest"].strip(), look)
    return None
