"""admissionregistration.k8s.io/v1: the webhook configurations and ValidatingAdmissionPolicy
with its bindings (pkg/apis/admissionregistration: v1 defaults, validation). The admission
chain that reads them is clustergate.twin.apiserver.admission.
"""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType, status

GROUP_NAME = "admissionregistration.k8s.io"
_EXTENSIONS = ("api-extensions",)
_SIDE_EFFECTS = ("None", "NoneOnDryRun")
_REVIEW_VERSIONS = ("v1", "v1beta1")


def _default_rules(rules: list[Obj]) -> None:
    for rule in rules:
        rule.setdefault("scope", "*")


def _default_webhook(hook: Obj, mutating: bool) -> None:
    """SetDefaults_ValidatingWebhook / SetDefaults_MutatingWebhook."""
    hook.setdefault("failurePolicy", "Fail")
    hook.setdefault("matchPolicy", "Equivalent")
    hook.setdefault("namespaceSelector", {})
    hook.setdefault("objectSelector", {})
    hook.setdefault("timeoutSeconds", 10)
    if mutating:
        hook.setdefault("reinvocationPolicy", "Never")
    service = (hook.get("clientConfig") or {}).get("service")
    if isinstance(service, dict):
        service.setdefault("port", 443)
    _default_rules(hook.get("rules") or [])


def default_mutating(obj: Obj) -> None:
    for hook in obj.get("webhooks") or []:
        _default_webhook(hook, mutating=True)


def default_validating(obj: Obj) -> None:
    for hook in obj.get("webhooks") or []:
        _default_webhook(hook, mutating=False)


def default_policy(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("failurePolicy", "Fail")
    constraints = spec.setdefault("matchConstraints", {})
    constraints.setdefault("matchPolicy", "Equivalent")
    constraints.setdefault("namespaceSelector", {})
    constraints.setdefault("objectSelector", {})
    _default_rules(constraints.get("resourceRules") or [])


def validate_webhooks(obj: Obj) -> list[Cause]:
    """What ValidateValidatingWebhookConfiguration checks that kubectl users meet first."""
    causes: list[Cause] = []
    seen: set[str] = set()
    for index, hook in enumerate(obj.get("webhooks") or []):
        at = f"webhooks[{index}]"
        name = str(hook.get("name") or "")
        if not name:
            causes.append((f"{at}.name", "FieldValueRequired", "Required value"))
        elif name.count(".") < 2:
            causes.append(
                (
                    f"{at}.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": should be a domain with at least three segments '
                    "separated by dots",
                )
            )
        elif name in seen:
            causes.append((f"{at}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        seen.add(name)
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            causes.append(
                (
                    f"{at}.sideEffects",
                    "FieldValueRequired",
                    "Required value: must specify one of None, NoneOnDryRun",
                )
            )
        elif side_effects not in _SIDE_EFFECTS:
            causes.append(
                (
                    f"{at}.sideEffects",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{side_effects}": supported values: "None", '
                    '"NoneOnDryRun"',
                )
            )
        if not set(hook.get("admissionReviewVersions") or ()) & set(_REVIEW_VERSIONS):
            causes.append(
                (
                    f"{at}.admissionReviewVersions",
                    "FieldValueRequired",
                    "Required value: must specify one of v1, v1beta1",
                )
            )
        config = hook.get("clientConfig") or {}
        if bool(config.get("url")) == bool(config.get("service")):
            causes.append(
                (
                    f"{at}.clientConfig",
                    "FieldValueRequired",
                    "Required value: exactly one of url or service is required",
                )
            )
    return causes


def validate_policy(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not (spec.get("matchConstraints") or {}).get("resourceRules"):
        causes.append(
            ("spec.matchConstraints.resourceRules", "FieldValueRequired", "Required value")
        )
    for index, validation in enumerate(spec.get("validations") or []):
        if not validation.get("expression"):
            causes.append(
                (f"spec.validations[{index}].expression", "FieldValueRequired", "Required value")
            )
    return causes


def validate_binding(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not spec.get("policyName"):
        causes.append(("spec.policyName", "FieldValueRequired", "Required value"))
    if not spec.get("validationActions"):
        causes.append(("spec.validationActions", "FieldValueRequired", "Required value"))
    return causes


GROUP = ApiGroup(
    GROUP_NAME,
    (
        ResourceType(
            GROUP_NAME,
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            False,
            categories=_EXTENSIONS,
        ),
        ResourceType(
            GROUP_NAME,
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            False,
            categories=_EXTENSIONS,
        ),
        ResourceType(
            GROUP_NAME,
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            False,
            subresources=(status("ValidatingAdmissionPolicy"),),
            categories=_EXTENSIONS,
            tracks_generation=True,
        ),
        ResourceType(
            GROUP_NAME,
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            False,
            categories=_EXTENSIONS,
            tracks_generation=True,
        ),
    ),
    defaults={
        "mutatingwebhookconfigurations": default_mutating,
        "validatingwebhookconfigurations": default_validating,
        "validatingadmissionpolicies": default_policy,
    },
    validators={
        "mutatingwebhookconfigurations": validate_webhooks,
        "validatingwebhookconfigurations": validate_webhooks,
        "validatingadmissionpolicies": validate_policy,
        "validatingadmissionpolicybindings": validate_binding,
    },
)
