"""What a pod should have received from the pod identity webhook, judged from probe output;
and the AWS look-ups (issuer, OIDC provider, trust policy) against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from kubernetes import client
from moto import mock_aws

from clustergate import irsa
from clustergate.irsa import InjectionExpectation

ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
ROLE = "arn:aws:iam::123456789012:role/payments-api"
SUBJECT = "system:serviceaccount:payments:payments-api"
EXPECTED = InjectionExpectation(ROLE, SUBJECT, ISSUER, "sts.amazonaws.com", 86400)


def observed(**changes: object) -> dict:
    claims = {
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": ["sts.amazonaws.com"],
        "iat": 1_700_000_000,
        "exp": 1_700_086_400,
    }
    data = {
        "env": {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": irsa.TOKEN_FILE},
        "token_file_present": True,
        "claims": claims,
        "token_error": None,
    }
    for key, value in changes.items():
        if key in claims:
            claims[key] = value
        else:
            data[key] = value
    return data


def test_full_injection_passes() -> None:
    assert irsa.injection_problems(observed(), EXPECTED) == []


def test_region_variables_are_accepted_either_way() -> None:
    env = {
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": irsa.TOKEN_FILE,
        "AWS_REGION": "us-west-2",
        "AWS_DEFAULT_REGION": "us-west-2",
    }
    assert irsa.injection_problems(observed(env=env), EXPECTED) == []


def test_unmutated_pod_names_the_webhook() -> None:
    (problem,) = irsa.injection_problems(
        observed(env={}, token_file_present=False, claims=None), EXPECTED
    )
    assert "webhook did not mutate" in problem
    assert "no token mounted" in problem


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"aud": ["kubernetes.default.svc"]}, "token aud"),
        ({"sub": "system:serviceaccount:other:payments-api"}, "token sub"),
        ({"iss": "https://kubernetes.default.svc"}, "token iss"),
        ({"exp": 1_700_003_600}, "lifetime"),
        ({"token_file_present": False}, "no token file"),
        ({"claims": None, "token_error": "unreadable"}, "cannot be read"),
    ],
)
def test_each_injection_defect_is_named(change: dict, needle: str) -> None:
    problems = irsa.injection_problems(observed(**change), EXPECTED)
    assert len(problems) == 1
    assert needle in problems[0]


def test_wrong_role_in_env_is_named() -> None:
    env = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/x", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}
    problems = irsa.injection_problems(observed(env=env), EXPECTED)
    assert any("AWS_ROLE_ARN" in p for p in problems)
    assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in p for p in problems)


def test_kube2iam_leftovers_on_pods_and_namespaces() -> None:
    namespaces = [
        client.V1Namespace(metadata=client.V1ObjectMeta(name="clean")),
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name="legacy", annotations={"iam.amazonaws.com/allowed-roles": '["a"]'}
            )
        ),
    ]
    pods = [
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name="api-1",
                namespace="legacy",
                annotations={"iam.amazonaws.com/role": "legacy-role", "other": "x"},
            )
        )
    ]
    assert irsa.kube2iam_leftovers(namespaces, pods) == [
        'namespace legacy: iam.amazonaws.com/allowed-roles=["a"]',
        "pod legacy/api-1: iam.amazonaws.com/role=legacy-role",
    ]


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(
            region_name="us-west-2", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def test_provider_is_found_for_the_issuer_with_its_audiences(aws: boto3.Session) -> None:
    iam = aws.client("iam")
    iam.create_open_id_connect_provider(
        Url="https://oidc.eks.us-west-2.amazonaws.com/id/OTHER", ThumbprintList=["a" * 40]
    )
    arn = iam.create_open_id_connect_provider(
        Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )["OpenIDConnectProviderArn"]
    provider = irsa.find_oidc_provider(iam, ISSUER)
    assert provider == irsa.OidcProvider(arn, ("sts.amazonaws.com",))
    assert irsa.find_oidc_provider(iam, ISSUER.replace("ABCDEF", "000000")) is None


def test_trust_policy_is_read_and_analysed(aws: boto3.Session) -> None:
    iam = aws.client("iam")
    path = ISSUER.removeprefix("https://")
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{path}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringLike": {f"{path}:sub": "system:serviceaccount:*"}},
            }
        ],
    }
    role = iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=json.dumps(document))
    trust = irsa.trust_policy(iam, role["Role"]["Arn"])
    expectation = irsa.TrustExpectation(
        f"arn:aws:iam::123456789012:oidc-provider/{path}", "payments", "payments-api"
    )
    kinds = [p.kind for p in irsa.analyse_trust_policy(trust, expectation)]
    assert kinds == [irsa.ProblemKind.WILDCARD_SUB, irsa.ProblemKind.NO_AUDIENCE]
    with pytest.raises(LookupError, match="NoSuchEntity"):
        irsa.trust_policy(iam, "arn:aws:iam::123456789012:role/missing")
