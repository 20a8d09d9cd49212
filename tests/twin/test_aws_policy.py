"""IAM policy evaluation as trust policies use it."""

from __future__ import annotations

import pytest

from clustergate.twin.aws.policy import PolicyError, Request, condition_matches, is_allowed

PROVIDER = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
HOST = "oidc.eks.us-west-2.amazonaws.com/id/ABC"


def request(sub: str, aud: str | None = "sts.amazonaws.com", principal: str = PROVIDER) -> Request:
    context = {f"{HOST}:sub": [sub]}
    if aud is not None:
        context[f"{HOST}:aud"] = [aud]
    return Request("Federated", principal, "sts:AssumeRoleWithWebIdentity", context)


def trust(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(condition: dict, principal: object = None, action: object = None) -> dict:
    return {
        "Effect": "Allow",
        "Principal": principal if principal is not None else {"Federated": PROVIDER},
        "Action": action or "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }


SA = "system:serviceaccount:payments:payments-api"


@pytest.mark.parametrize(
    ("operator", "pattern", "value", "expected"),
    [
        ("StringEquals", SA, SA, True),
        ("StringEquals", SA, SA + "x", False),
        ("StringEquals", "system:serviceaccount:payments:*", SA, False),
        ("StringLike", "system:serviceaccount:payments:*", SA, True),
        ("StringLike", "system:serviceaccount:orders:*", SA, False),
        ("StringLike", "system:serviceaccount:*", SA, True),
        ("StringLike", "system:serviceaccount:payments:payments-ap?", SA, True),
        ("StringLike", "system:serviceaccount:payments:payments-a?", SA, False),
        ("StringLike", "system:serviceaccount:payments.*", SA, False),
        ("StringNotEquals", SA, SA, False),
        ("StringNotLike", "system:serviceaccount:orders:*", SA, True),
        ("StringEqualsIgnoreCase", SA.upper(), SA, True),
        ("ForAnyValue:StringLike", ["nope", "system:*"], SA, True),
        ("ForAllValues:StringEquals", ["nope"], SA, False),
    ],
)
def test_string_operators(operator: str, pattern: object, value: str, expected: bool) -> None:
    assert condition_matches(operator, f"{HOST}:sub", pattern, request(value)) is expected


def test_condition_keys_are_case_insensitive() -> None:
    assert condition_matches("StringEquals", f"{HOST.upper()}:SUB", SA, request(SA))


def test_absent_key_fails_positive_and_passes_negated_and_if_exists() -> None:
    no_aud = request(SA, aud=None)
    key = f"{HOST}:aud"
    assert not condition_matches("StringEquals", key, "sts.amazonaws.com", no_aud)
    assert condition_matches("StringNotEquals", key, "sts.amazonaws.com", no_aud)
    assert condition_matches("StringEqualsIfExists", key, "sts.amazonaws.com", no_aud)
    assert not condition_matches("ForAnyValue:StringEquals", key, "x", no_aud)
    assert condition_matches("ForAllValues:StringEquals", key, "x", no_aud)


def test_every_condition_of_a_statement_must_hold() -> None:
    policy = trust(
        allow(
            {
                "StringEquals": {f"{HOST}:sub": SA, f"{HOST}:aud": "sts.amazonaws.com"},
            }
        )
    )
    assert is_allowed(policy, request(SA))
    assert not is_allowed(policy, request(SA, aud="other"))
    assert not is_allowed(policy, request("system:serviceaccount:payments:other"))


def test_any_allow_statement_suffices() -> None:
    policy = trust(
        allow({"StringEquals": {f"{HOST}:sub": "system:serviceaccount:orders:orders-worker"}}),
        allow({"StringEquals": {f"{HOST}:sub": SA}}),
    )
    assert is_allowed(policy, request(SA))
    assert not is_allowed(policy, request("system:serviceaccount:orders:other"))


def test_deny_wins_over_allow() -> None:
    policy = trust(
        allow({"StringLike": {f"{HOST}:sub": "system:serviceaccount:payments:*"}}),
        {
            "Effect": "Deny",
            "Principal": {"Federated": PROVIDER},
            "Action": "sts:*",
            "Condition": {"StringEquals": {f"{HOST}:sub": SA}},
        },
    )
    assert not is_allowed(policy, request(SA))
    assert is_allowed(policy, request("system:serviceaccount:payments:batch"))


def test_principal_and_action_must_match() -> None:
    condition = {"StringEquals": {f"{HOST}:sub": SA}}
    other_provider = PROVIDER.replace("ABC", "XYZ")
    assert not is_allowed(trust(allow(condition)), request(SA, principal=other_provider))
    assert not is_allowed(trust(allow(condition, action="sts:AssumeRole")), request(SA))
    assert is_allowed(trust(allow(condition, action=["sts:Tag*", "sts:Assume*"])), request(SA))
    service = {"Service": "ec2.amazonaws.com"}
    assert not is_allowed(trust(allow(condition, principal=service)), request(SA))


def test_no_statement_is_an_implicit_deny() -> None:
    assert not is_allowed(trust(), request(SA))


def test_unknown_operator_is_an_error_not_a_silent_match() -> None:
    with pytest.raises(PolicyError, match="NumericLessThan"):
        is_allowed(trust(allow({"NumericLessThan": {f"{HOST}:sub": "3"}})), request(SA))
