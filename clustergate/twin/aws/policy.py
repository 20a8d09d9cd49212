"""IAM policy evaluation for the parts a role's trust policy uses.

A request is described by its principal, its action and its condition context (key -> values).
Evaluation follows IAM's rules: a matching ``Deny`` statement always wins; otherwise some
matching ``Allow`` statement is needed; with none the answer is an implicit deny. A statement
matches when its principal, its action and every one of its conditions match.

Conditions: ``String*`` operators with the ``IfExists`` suffix and the ``ForAnyValue:`` /
``ForAllValues:`` set qualifiers. Condition keys are case-insensitive, values are not (except
under ``*IgnoreCase``). ``StringLike`` globbing knows ``*`` and ``?`` only; ``StringEquals``
compares literally, so a wildcard under it never matches, as on AWS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class PolicyError(ValueError):
    """The policy document uses something this evaluator does not know."""


@dataclass(frozen=True)
class Request:
    principal_type: str  # "Federated", "AWS", "Service"
    principal: str  # arn:aws:iam::123456789012:oidc-provider/oidc.eks...
    action: str  # sts:AssumeRoleWithWebIdentity
    context: Mapping[str, Sequence[str]]


@lru_cache(maxsize=512)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(value: str, pattern: str) -> bool:
    return _glob(pattern).fullmatch(value) is not None


def _equals(value: str, pattern: str) -> bool:
    return value == pattern


def _equals_ignore_case(value: str, pattern: str) -> bool:
    return value.casefold() == pattern.casefold()


#: operator -> (comparison, negated)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "stringequals": (_equals, False),
    "stringnotequals": (_equals, True),
    "stringequalsignorecase": (_equals_ignore_case, False),
    "stringnotequalsignorecase": (_equals_ignore_case, True),
    "stringlike": (_like, False),
    "stringnotlike": (_like, True),
}


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def condition_matches(operator: str, key: str, policy_values: Any, request: Request) -> bool:
    """One ``"Operator": {"key": values}`` entry against the request context."""
    name = operator
    qualifier = ""
    if ":" in name:
        qualifier, _, name = name.partition(":")
        qualifier = qualifier.casefold()
        if qualifier not in ("foranyvalue", "forallvalues"):
            raise PolicyError(f"unknown condition set qualifier {qualifier!r} in {operator!r}")
    if_exists = name.casefold().endswith("ifexists")
    base = name[: -len("IfExists")] if if_exists else name
    if base.casefold() not in _OPERATORS:
        raise PolicyError(f"unsupported condition operator {operator!r}")
    compare, negated = _OPERATORS[base.casefold()]
    wanted = _as_list(policy_values)
    context = {k.casefold(): v for k, v in request.context.items()}
    present = key.casefold() in context
    values = list(context.get(key.casefold(), ()))

    def matches_any(value: str) -> bool:
        return any(compare(value, pattern) for pattern in wanted)

    if qualifier == "forallvalues":
        # True for an absent or empty key; otherwise every value must pass the operator.
        if negated:
            return all(not matches_any(value) for value in values)
        return all(matches_any(value) for value in values)
    if not present or not values:
        # Absent key: positive operators fail, negated ones pass; IfExists passes either way.
        return if_exists or (negated and not qualifier)
    if negated:
        if qualifier == "foranyvalue":
            return any(not matches_any(value) for value in values)
        return not any(matches_any(value) for value in values)
    return any(matches_any(value) for value in values)


def _principal_matches(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise PolicyError(f"unsupported Principal {principal!r}")
    for principal_type, names in principal.items():
        if principal_type == request.principal_type and any(
            name in ("*", request.principal) for name in _as_list(names)
        ):
            return True
    return False


def _action_matches(actions: Any, request: Request) -> bool:
    return any(
        _glob(pattern, ignore_case=True).fullmatch(request.action) for pattern in _as_list(actions)
    )


def statement_matches(statement: Mapping[str, Any], request: Request) -> bool:
    if "Principal" not in statement or "Action" not in statement:
        raise PolicyError(f"a trust policy statement needs Principal and Action: {statement!r}")
    if not _principal_matches(statement["Principal"], request):
        return False
    if not _action_matches(statement["Action"], request):
        return False
    conditions: Mapping[str, Mapping[str, Any]] = statement.get("Condition", {})
    return all(
        condition_matches(operator, key, values, request)
        for operator, entries in conditions.items()
        for key, values in entries.items()
    )


def is_allowed(document: Mapping[str, Any], request: Request) -> bool:
    """Whether ``document`` allows ``request``: an explicit Deny wins over any Allow."""
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        if not statement_matches(statement, request):
            continue
        effect = statement.get("Effect")
        if effect == "Deny":
            return False
        if effect == "Allow":
            allowed = True
        else:
            raise PolicyError(f"statement Effect must be Allow or Deny, got {effect!r}")
    return allowed
