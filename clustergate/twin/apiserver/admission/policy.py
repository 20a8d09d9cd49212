"""ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) with CEL, as
k8s.io/apiserver pkg/admission/plugin/policy/validating evaluates it.

A binding names a policy (``policyName``); the request must match the policy's
matchConstraints and the binding's matchResources. Each validation's ``expression`` sees
``object``, ``oldObject``, ``request``, ``params`` (paramKind with the binding's paramRef),
``namespaceObject`` and ``variables``; false means a violation. With validationActions Deny
the request is refused:
``ValidatingAdmissionPolicy 'P' with binding 'B' denied request: MESSAGE``, where MESSAGE is
messageExpression's result, else message, else ``failed expression: EXPR``; 422 Invalid unless
the validation names another reason. An expression that errors follows failurePolicy (Fail
by default): Fail denies with the error, Ignore lets the request through. Warn and Audit
actions are accepted and do not refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from celpy import celtypes

from clustergate.twin.apiserver.admission.matching import (
    Attributes,
    namespace_matches,
    object_matches,
    rules_match,
)

Obj = dict[str, Any]
_REASON_CODES = {
    "Unauthorized": 401,
    "Forbidden": 403,
    "Invalid": 422,
    "RequestEntityTooLarge": 413,
}
_ENV = celpy.Environment()


class ExpressionError(Exception):
    pass


@cache
def _program(expression: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(expression))
    except celpy.CELParseError as error:
        raise ExpressionError(f"compilation failed: {error}") from error


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    """The CEL result as a Python value; ExpressionError when it cannot be had."""
    try:
        result = _program(expression).evaluate(activation)
    except celpy.CELEvalError as error:
        raise ExpressionError(str(error)) from error
    if isinstance(result, celpy.CELEvalError):
        raise ExpressionError(str(result.args[0] if result.args else result))
    return result


@dataclass(frozen=True)
class Denial:
    policy: str
    binding: str
    message: str
    reason: str

    @property
    def code(self) -> int:
        return _REASON_CODES.get(self.reason, 422)

    @property
    def text(self) -> str:
        return (
            f"ValidatingAdmissionPolicy '{self.policy}' with binding '{self.binding}' denied "
            f"request: {self.message}"
        )


def _resource_rules_match(
    constraints: Obj | None, attrs: Attributes, ns: Obj | None, obj: Obj | None, old: Obj | None
) -> bool:
    """A MatchResources: resourceRules (with resourceNames), excludeResourceRules, selectors."""
    if constraints is None:
        return True

    def named(rules: list[Obj] | None) -> bool:
        return any(
            rules_match([rule], attrs)
            and (not rule.get("resourceNames") or attrs.name in rule["resourceNames"])
            for rule in rules or []
        )

    rules = constraints.get("resourceRules")
    if rules is not None and not named(rules):
        return False
    if named(constraints.get("excludeResourceRules")):
        return False
    return namespace_matches(constraints.get("namespaceSelector"), attrs, ns) and object_matches(
        constraints.get("objectSelector"), obj, old
    )


def _request_of(attrs: Attributes, user: tuple[str, tuple[str, ...]], dry_run: bool) -> Obj:
    return {
        "kind": attrs.kind_of(),
        "resource": {"group": attrs.group, "version": attrs.version, "resource": attrs.resource},
        "subResource": attrs.subresource,
        "name": attrs.name,
        "namespace": attrs.namespace,
        "operation": attrs.operation,
        "userInfo": {"username": user[0], "groups": list(user[1])},
        "dryRun": dry_run,
    }


def _cel(value: Any) -> Any:
    return celtypes.NullType() if value is None else celpy.json_to_cel(value)


def _python(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value


@dataclass(frozen=True)
class Request:
    attrs: Attributes
    obj: Obj | None
    old: Obj | None
    namespace: Obj | None
    user: tuple[str, tuple[str, ...]]
    dry_run: bool


def check(policy: Obj, binding: Obj, params: Obj | None, request: Request) -> Denial | None:
    """The first Deny of ``binding`` (already known to name ``policy``) for ``request``."""
    spec, binding_spec = policy.get("spec") or {}, binding.get("spec") or {}
    attrs = request.attrs
    for constraints in (spec.get("matchConstraints"), binding_spec.get("matchResources")):
        if not _resource_rules_match(
            constraints, attrs, request.namespace, request.obj, request.old
        ):
            return None
    if "Deny" not in (binding_spec.get("validationActions") or []):
        return None
    names = (policy["metadata"]["name"], binding["metadata"]["name"])
    activation: dict[str, Any] = {
        "object": _cel(request.obj),
        "oldObject": _cel(request.old),
        "request": _cel(_request_of(attrs, request.user, request.dry_run)),
        "params": _cel(params),
        "namespaceObject": _cel(request.namespace),
    }
    fail_closed = spec.get("failurePolicy", "Fail") != "Ignore"
    try:
        _bind_variables(spec.get("variables") or [], activation)
    except ExpressionError as error:
        failed = f"variable evaluation failed: {error}"
        return Denial(*names, failed, "Invalid") if fail_closed else None
    for validation in spec.get("validations") or []:
        expression = validation["expression"]
        try:
            allowed = evaluate(expression, activation)
            if not isinstance(allowed, celtypes.BoolType | bool):
                raise ExpressionError(f"expected a bool, got {type(allowed).__name__}")
        except ExpressionError as error:
            if fail_closed:
                failed = f"expression '{expression}' resulted in error: {error}"
                return Denial(*names, failed, "Invalid")
            continue
        if not bool(allowed):
            reason = validation.get("reason") or "Invalid"
            return Denial(*names, _message(validation, activation), reason)
    return None


def _bind_variables(variables: list[Obj], activation: dict[str, Any]) -> None:
    """``variables.NAME``, each seeing those before it (composition upstream)."""
    bound: dict[Any, Any] = {}
    activation["variables"] = celtypes.MapType(bound)
    for variable in variables:
        value = evaluate(variable["expression"], activation)
        bound[celtypes.StringType(variable["name"])] = value
        activation["variables"] = celtypes.MapType(bound)


def _message(validation: Obj, activation: dict[str, Any]) -> str:
    if validation.get("messageExpression"):
        try:
            text = _python(evaluate(validation["messageExpression"], activation))
            if isinstance(text, str) and text.strip():
                return text
        except ExpressionError:
            pass
    if validation.get("message"):
        return str(validation["message"])
    return f"failed expression: {validation['expression']}"
