"""The trust-policy analysis against the matrix of mistakes FACTS.md lists, and its helpers."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from clustergate import irsa
from clustergate.irsa import ProblemKind, TrustExpectation

ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
OTHER_ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/FEDCBA9876543210"
OTHER_PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{OTHER_ISSUER}"
SUBJECT = "system:serviceaccount:payments:payments-api"
EXPECT = TrustExpectation(PROVIDER, "payments", "payments-api")


def statement(conditions: dict | None, provider: str = PROVIDER, **extra: object) -> dict:
    item: dict = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
        **extra,
    }
    if conditions is not None:
        item["Condition"] = conditions
    return item


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def documented(sub: str = SUBJECT, aud: str = "sts.amazonaws.com") -> dict:
    return {"StringEquals": {f"{ISSUER}:sub": sub, f"{ISSUER}:aud": aud}}


def kinds(document: object, expectation: TrustExpectation = EXPECT) -> list[ProblemKind]:
    return [problem.kind for problem in irsa.analyse_trust_policy(document, expectation)]


def test_documented_trust_policy_has_no_problem() -> None:
    assert kinds(policy(statement(documented()))) == []


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda doc: json.dumps(doc), id="json-text"),
        pytest.param(lambda doc: quote(json.dumps(doc)), id="url-encoded"),
        pytest.param(lambda doc: doc, id="decoded-dict"),
    ],
)
def test_every_form_iam_returns_is_read(form) -> None:
    wildcard = {
        "StringLike": {f"{ISSUER}:sub": "system:serviceaccount:*"},
        "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
    }
    assert kinds(form(policy(statement(wildcard)))) == [ProblemKind.WILDCARD_SUB]


def test_single_statement_object_is_read_like_a_list() -> None:
    document = {"Version": "2012-10-17", "Statement": statement(documented())}
    assert kinds(document) == []


def test_wildcard_sub_is_reported_with_the_offending_statement() -> None:
    bad = statement(
        {
            "StringLike": {f"{ISSUER}:sub": "system:serviceaccount:*"},
            "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
        },
        Sid="AnyPod",
    )
    (problem,) = irsa.analyse_trust_policy(policy(statement(documented()), bad), EXPECT)
    assert problem.kind is ProblemKind.WILDCARD_SUB
    assert problem.index == 1
    assert problem.statement == bad
    text = problem.describe()
    assert "statement 1 (Sid AnyPod)" in text
    assert '"system:serviceaccount:*"' in text
    assert SUBJECT in text


def test_namespace_pattern_is_a_problem_unless_the_mapping_is_namespace_wide() -> None:
    document = policy(
        statement(
            {
                "StringLike": {f"{ISSUER}:sub": "system:serviceaccount:payments:*"},
                "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
            }
        )
    )
    assert kinds(document) == [ProblemKind.NAMESPACE_WIDE_SUB]
    wide = TrustExpectation(PROVIDER, "payments", "payments-api", namespace_wide=True)
    assert kinds(document, wide) == []


def test_pattern_on_another_namespace_is_a_wildcard_and_does_not_admit() -> None:
    document = policy(
        statement(
            {
                "StringLike": {f"{ISSUER}:sub": "system:serviceaccount:pay*"},
                "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
            }
        )
    )
    assert kinds(document) == [ProblemKind.WILDCARD_SUB]


def test_wildcard_under_string_equals_never_matches() -> None:
    document = policy(statement(documented(sub="system:serviceaccount:payments:*")))
    assert kinds(document) == [
        ProblemKind.WILDCARD_UNDER_STRING_EQUALS,
        ProblemKind.NOT_ASSUMABLE,
    ]


def test_missing_audience_condition() -> None:
    document = policy(statement({"StringEquals": {f"{ISSUER}:sub": SUBJECT}}))
    problems = irsa.analyse_trust_policy(document, EXPECT)
    assert [p.kind for p in problems] == [ProblemKind.NO_AUDIENCE]
    assert f"{ISSUER}:aud = sts.amazonaws.com" in problems[0].detail


def test_aud_where_sub_was_meant() -> None:
    document = policy(statement({"StringEquals": {f"{ISSUER}:aud": SUBJECT}}))
    found = kinds(document)
    assert ProblemKind.AUD_HOLDS_SUBJECT in found
    assert ProblemKind.NO_SUB in found
    assert ProblemKind.NOT_ASSUMABLE in found


def test_no_condition_at_all_lets_every_pod_in() -> None:
    assert kinds(policy(statement(None))) == [ProblemKind.NO_SUB, ProblemKind.NO_AUDIENCE]


def test_wrong_federated_provider() -> None:
    problems = irsa.analyse_trust_policy(
        policy(statement(documented(), provider=OTHER_PROVIDER)), EXPECT
    )
    assert [p.kind for p in problems] == [ProblemKind.WRONG_PROVIDER]
    assert OTHER_PROVIDER in problems[0].detail
    assert problems[0].index == 0


def test_second_cluster_statement_is_fine_when_ours_is_right() -> None:
    other = statement(
        {"StringEquals": {f"{OTHER_ISSUER}:sub": SUBJECT, f"{OTHER_ISSUER}:aud": "sts"}},
        provider=OTHER_PROVIDER,
    )
    assert kinds(policy(other, statement(documented()))) == []


def test_no_web_identity_statement_at_all() -> None:
    service = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}
    assert kinds(policy(service)) == [ProblemKind.WRONG_PROVIDER]


def test_condition_keys_of_another_issuer_never_match() -> None:
    conditions = {
        "StringEquals": {f"{OTHER_ISSUER}:sub": SUBJECT, f"{OTHER_ISSUER}:aud": "sts.amazonaws.com"}
    }
    found = kinds(policy(statement(conditions)))
    assert found.count(ProblemKind.WRONG_PROVIDER) == 2
    assert ProblemKind.NOT_ASSUMABLE in found


def test_other_subjects_are_reported_unless_another_mapping_shares_the_role() -> None:
    shared = "system:serviceaccount:orders:orders-worker"
    document = policy(statement(documented(sub=[SUBJECT, shared])))  # type: ignore[arg-type]
    assert kinds(document) == [ProblemKind.OTHER_SUBJECTS]
    sharing = TrustExpectation(
        PROVIDER, "payments", "payments-api", shared_with=frozenset({shared})
    )
    assert kinds(document, sharing) == []


def test_statement_only_for_another_service_account_is_not_assumable() -> None:
    document = policy(statement(documented(sub="system:serviceaccount:orders:orders-worker")))
    assert kinds(document) == [ProblemKind.OTHER_SUBJECTS, ProblemKind.NOT_ASSUMABLE]


def test_wrong_audience_value() -> None:
    assert kinds(policy(statement(documented(aud="sts.amazonaws.com.cn")))) == [
        ProblemKind.WRONG_AUDIENCE,
        ProblemKind.NOT_ASSUMABLE,
    ]


def test_wrong_action() -> None:
    document = policy(statement(documented(), Action="sts:AssumeRole"))
    assert kinds(document) == [ProblemKind.WRONG_ACTION, ProblemKind.NOT_ASSUMABLE]


def test_action_wildcard_and_key_case_follow_iam() -> None:
    conditions = {"StringEquals": {f"{ISSUER}:SUB": SUBJECT, f"{ISSUER}:Aud": "sts.amazonaws.com"}}
    assert kinds(policy(statement(conditions, Action=["sts:*"]))) == []


def test_negated_operators_do_not_scope_sub() -> None:
    conditions = {
        "StringNotEquals": {f"{ISSUER}:sub": "system:serviceaccount:kube-system:default"},
        "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
    }
    assert kinds(policy(statement(conditions))) == [ProblemKind.NO_SUB]


def test_deny_statement_is_not_read_as_trust() -> None:
    deny = statement(None, Effect="Deny")
    assert kinds(policy(deny, statement(documented()))) == []


@pytest.mark.parametrize(
    ("caller", "role", "expected"),
    [
        (
            "arn:aws:sts::123456789012:assumed-role/payments-api/clustergate-probe",
            "arn:aws:iam::123456789012:role/payments-api",
            True,
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/payments-api/s",
            "arn:aws:iam::123456789012:role/team/payments-api",
            True,
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/orders-worker/s",
            "arn:aws:iam::123456789012:role/payments-api",
            False,
        ),
        (
            "arn:aws:sts::210987654321:assumed-role/payments-api/s",
            "arn:aws:iam::123456789012:role/payments-api",
            False,
        ),
        (
            "arn:aws:iam::123456789012:user/payments-api",
            "arn:aws:iam::123456789012:role/payments-api",
            False,
        ),
    ],
)
def test_assumed_role_session_is_recognised(caller: str, role: str, expected: bool) -> None:
    assert irsa.is_assumed_role_of(caller, role) is expected


@pytest.mark.parametrize(
    ("sa", "pod", "expected"),
    [
        ({}, {}, 86400),
        ({irsa.EXPIRATION_ANNOTATION: "3600"}, {}, 3600),
        ({irsa.EXPIRATION_ANNOTATION: "3600"}, {irsa.EXPIRATION_ANNOTATION: "7200"}, 7200),
        ({irsa.EXPIRATION_ANNOTATION: "60"}, {}, 600),
    ],
)
def test_expected_token_lifetime_follows_the_webhook(sa: dict, pod: dict, expected: int) -> None:
    assert irsa.expected_expiration_s(sa, pod) == expected
