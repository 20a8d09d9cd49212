"""IAM roles for service accounts: the OIDC provider, trust policies, and what pods are given.

The trust-policy analysis reads a role's trust policy the way STS evaluates it for a web
identity token of one service account, and reports each way it lets in more or less than that
service account, with the statement at fault:

- a ``:sub`` pattern that matches service accounts in any namespace (``system:serviceaccount:*``)
  or no ``:sub`` condition at all: any pod of the cluster can take the role;
- ``StringLike`` on a whole namespace (``system:serviceaccount:<ns>:*``) when the mapping does
  not say it is namespace-wide;
- a wildcard under ``StringEquals``, which compares literally and never matches;
- no ``:aud`` condition, or an ``:aud`` that holds a service-account subject (``:aud`` where
  ``:sub`` was meant), or an audience the tokens do not carry;
- a ``Federated`` principal, or condition keys, naming another OIDC provider;
- and, over all statements, that the service account cannot assume the role at all.

IAM semantics followed (FACTS.md): condition keys are case-insensitive, values are not;
``StringLike`` globbing knows ``*`` and ``?``; conditions of one statement are ANDed, values of
one condition ORed; the ``IfExists`` suffix and ``ForAnyValue:``/``ForAllValues:`` qualifiers
change nothing for the single-valued ``sub`` and ``aud`` keys of a web identity token.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError
from kubernetes import client

from clustergate.config import IrsaMapping

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience"
EXPIRATION_ANNOTATION = "eks.amazonaws.com/token-expiration"
TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
DEFAULT_EXPIRATION_S = 86400
MIN_EXPIRATION_S = 600
#: kube2iam (iam.amazonaws.com/role, /external-id, /allowed-roles) and kiam (/permitted).
KUBE2IAM_PREFIX = "iam.amazonaws.com/"
SUBJECT_PREFIX = "system:serviceaccount:"

_EQUALS = frozenset({"stringequals", "stringequalsignorecase"})
_LIKE = frozenset({"stringlike"})
_WILDCARD = re.compile(r"[*?]")


class ProblemKind(StrEnum):
    WILDCARD_SUB = "wildcard sub"
    NO_SUB = "no sub condition"
    NAMESPACE_WIDE_SUB = "namespace-wide sub"
    WILDCARD_UNDER_STRING_EQUALS = "wildcard under StringEquals"
    OTHER_SUBJECTS = "trusts other service accounts"
    NO_AUDIENCE = "no aud condition"
    AUD_HOLDS_SUBJECT = "aud where sub was meant"
    WRONG_AUDIENCE = "wrong audience"
    WRONG_PROVIDER = "wrong Federated provider"
    WRONG_ACTION = "wrong action"
    NOT_ASSUMABLE = "service account cannot assume the role"


@dataclass(frozen=True)
class TrustProblem:
    kind: ProblemKind
    detail: str
    #: The offending statement as written, and its position; None for whole-policy problems.
    statement: Mapping[str, Any] | None = None
    index: int | None = None

    def describe(self) -> str:
        if self.statement is None:
            return f"{self.kind}: {self.detail}"
        sid = self.statement.get("Sid")
        where = f"statement {self.index}" + (f" (Sid {sid})" if sid else "")
        text = json.dumps(self.statement, sort_keys=True)
        return f"{self.kind}: {self.detail}; offending {where}: {text}"


@dataclass(frozen=True)
class TrustExpectation:
    """What one mapping needs of its role's trust policy."""

    provider_arn: str
    namespace: str
    service_account: str
    audience: str = "sts.amazonaws.com"
    namespace_wide: bool = False
    #: Subjects of other configured mappings to the same role: trusted on purpose.
    shared_with: frozenset[str] = field(default_factory=frozenset)

    @property
    def subject(self) -> str:
        return f"{SUBJECT_PREFIX}{self.namespace}:{self.service_account}"

    @property
    def provider_path(self) -> str:
        """The issuer's host and path, as the condition keys spell it."""
        return provider_path(self.provider_arn)


def provider_path(provider_arn: str) -> str:
    return provider_arn.split(":oidc-provider/", 1)[-1]


def issuer_path(issuer: str) -> str:
    return issuer.removeprefix("https://").rstrip("/")


def subject_of(namespace: str, service_account: str) -> str:
    return f"{SUBJECT_PREFIX}{namespace}:{service_account}"


def mapping_label(mapping: IrsaMapping) -> str:
    return f"{mapping.namespace}/{mapping.service_account}"


def parse_policy(document: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The statements of a policy document given as JSON text (URL-encoded as IAM's API
    returns it, or not) or as the dict boto3 decodes it into."""
    if isinstance(document, str):
        text = document.strip()
        data = json.loads(unquote(text) if text.startswith("%") else text)
    else:
        data = document
    statements = data.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    return [dict(item) for item in statements]


@dataclass(frozen=True)
class _Test:
    operator: str
    base: str
    key: str
    values: tuple[str, ...]

    @property
    def positive(self) -> bool:
        return self.base in _EQUALS or self.base in _LIKE

    def matches(self, value: str) -> bool:
        if self.base == "stringequals":
            return value in self.values
        if self.base == "stringequalsignorecase":
            return value.casefold() in {item.casefold() for item in self.values}
        return any(_glob_match(pattern, value) for pattern in self.values)

    def describe(self) -> str:
        values = self.values[0] if len(self.values) == 1 else list(self.values)
        return f"{self.operator} {self.key} = {json.dumps(values)}"


def _glob_match(pattern: str, value: str) -> bool:
    """IAM StringLike: ``*`` any run of characters, ``?`` one character, nothing else special."""
    translated = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(translated, value, re.DOTALL) is not None


def _tests(statement: Mapping[str, Any]) -> Iterator[_Test]:
    for operator, block in (statement.get("Condition") or {}).items():
        base = operator.rsplit(":", 1)[-1].lower().removesuffix("ifexists")
        for key, values in (block or {}).items():
            listed = (values,) if isinstance(values, str) else tuple(str(v) for v in values)
            yield _Test(operator, base, key, listed)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def _federated(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping):
        return []
    return _as_list(principal.get("Federated"))


def _covers_web_identity(statement: Mapping[str, Any]) -> bool:
    return any(
        fnmatch.fnmatchcase(WEB_IDENTITY_ACTION.lower(), action.lower())
        for action in _as_list(statement.get("Action"))
    )


@dataclass
class _StatementReview:
    expectation: TrustExpectation
    statement: Mapping[str, Any]
    index: int
    problems: list[TrustProblem] = field(default_factory=list)
    admits: bool = True

    def report(self, kind: ProblemKind, detail: str) -> None:
        self.problems.append(TrustProblem(kind, detail, self.statement, self.index))


def analyse_trust_policy(
    document: str | Mapping[str, Any], expectation: TrustExpectation
) -> list[TrustProblem]:
    """Every way the trust policy differs from "exactly this service account, with StringEquals
    on :sub and :aud, through this cluster's provider"; empty when it is right."""
    statements = parse_policy(document)
    web_identity = [
        (index, item)
        for index, item in enumerate(statements)
        if item.get("Effect") == "Allow" and _federated(item)
    ]
    ours = [
        (index, item)
        for index, item in web_identity
        if expectation.provider_arn in _federated(item)
    ]
    if not ours:
        problems = [
            TrustProblem(
                ProblemKind.WRONG_PROVIDER,
                f"trusts {', '.join(_federated(item))}, not this cluster's provider "
                f"{expectation.provider_arn}",
                item,
                index,
            )
            for index, item in web_identity
        ]
        return problems or [
            TrustProblem(
                ProblemKind.WRONG_PROVIDER,
                f"no Allow statement has Federated principal {expectation.provider_arn}: no "
                "pod of this cluster can assume the role",
            )
        ]
    problems: list[TrustProblem] = []
    admitted = False
    for index, item in ours:
        review = _review_statement(expectation, item, index)
        problems.extend(review.problems)
        admitted = admitted or review.admits
    if not admitted:
        problems.append(
            TrustProblem(
                ProblemKind.NOT_ASSUMABLE,
                f"no statement lets a token with sub {expectation.subject} and aud "
                f"{expectation.audience} from {expectation.provider_path} assume the role",
            )
        )
    return problems


def _review_statement(
    expectation: TrustExpectation, statement: Mapping[str, Any], index: int
) -> _StatementReview:
    review = _StatementReview(expectation, statement, index)
    if not _covers_web_identity(statement):
        review.report(
            ProblemKind.WRONG_ACTION,
            f"Action {statement.get('Action')!r} does not include {WEB_IDENTITY_ACTION}",
        )
        review.admits = False
    ours = expectation.provider_path.lower()
    sub_tests, aud_tests = [], []
    for test in _tests(statement):
        issuer, _, claim = test.key.rpartition(":")
        claim = claim.lower()
        if claim not in ("sub", "aud") or not test.positive:
            continue
        if issuer.lower() != ours:
            review.report(
                ProblemKind.WRONG_PROVIDER,
                f"condition {test.describe()} names issuer {issuer}, not this cluster's "
                f"{expectation.provider_path}: tokens of this cluster never match it",
            )
            review.admits = review.admits and "ifexists" in test.operator.lower()
            continue
        (sub_tests if claim == "sub" else aud_tests).append(test)
    _review_sub(review, sub_tests, aud_tests)
    _review_aud(review, aud_tests)
    return review


def _review_sub(review: _StatementReview, sub_tests: list[_Test], aud_tests: list[_Test]) -> None:
    expectation = review.expectation
    if not sub_tests:
        misplaced = [
            value for test in aud_tests for value in test.values if value.startswith(SUBJECT_PREFIX)
        ]
        hint = f" (the subject {misplaced[0]} sits under :aud)" if misplaced else ""
        review.report(
            ProblemKind.NO_SUB,
            f"no condition on {expectation.provider_path}:sub: every service account of the "
            f"cluster can assume the role{hint}",
        )
        return
    for test in sub_tests:
        _review_sub_test(review, test)
        review.admits = review.admits and test.matches(expectation.subject)


def _review_sub_test(review: _StatementReview, test: _Test) -> None:
    expectation = review.expectation
    namespace_prefix = f"{SUBJECT_PREFIX}{expectation.namespace}:"
    others = []
    for value in test.values:
        wildcard = _WILDCARD.search(value)
        if wildcard and test.base in _EQUALS:
            review.report(
                ProblemKind.WILDCARD_UNDER_STRING_EQUALS,
                f"{test.describe()}: {test.operator} compares literally, so {value!r} never "
                "matches a token; use the exact subject",
            )
        elif wildcard:
            literal_prefix = value[: wildcard.start()]
            if literal_prefix.startswith(namespace_prefix):
                if not test.matches(expectation.subject):
                    others.append(value)
                elif not expectation.namespace_wide:
                    review.report(
                        ProblemKind.NAMESPACE_WIDE_SUB,
                        f"{test.describe()} lets every service account of namespace "
                        f"{expectation.namespace} matching {value!r} assume the role, but the "
                        "mapping is not namespace_wide; scope :sub to "
                        f"{expectation.subject} with StringEquals",
                    )
            else:
                review.report(
                    ProblemKind.WILDCARD_SUB,
                    f"{test.describe()} lets any service account matching {value!r}, in any "
                    f"namespace, assume the role; scope :sub to {expectation.subject} with "
                    "StringEquals",
                )
        elif value != expectation.subject and value not in expectation.shared_with:
            others.append(value)
    if others:
        review.report(
            ProblemKind.OTHER_SUBJECTS,
            f"{test.describe()} also trusts {', '.join(others)}, which no mapping of this role "
            "names",
        )


def _review_aud(review: _StatementReview, aud_tests: list[_Test]) -> None:
    expectation = review.expectation
    if not aud_tests:
        review.report(
            ProblemKind.NO_AUDIENCE,
            f"no condition on {expectation.provider_path}:aud; add StringEquals "
            f"{expectation.provider_path}:aud = {expectation.audience}",
        )
        return
    for test in aud_tests:
        subjects = [value for value in test.values if value.startswith(SUBJECT_PREFIX)]
        if subjects:
            review.report(
                ProblemKind.AUD_HOLDS_SUBJECT,
                f"{test.describe()} holds a service-account subject: :aud was written where "
                f":sub was meant; tokens carry aud {expectation.audience}",
            )
        elif not test.matches(expectation.audience):
            review.report(
                ProblemKind.WRONG_AUDIENCE,
                f"{test.describe()} does not admit the audience {expectation.audience} that "
                "the pods' tokens carry",
            )
        review.admits = review.admits and test.matches(expectation.audience)


# --- AWS: the cluster's issuer, its IAM OIDC provider, a role's trust policy ----------------


@dataclass(frozen=True)
class OidcProvider:
    arn: str
    client_ids: tuple[str, ...]


def cluster_issuer(eks: Any, cluster_name: str) -> str:
    """The cluster's service-account issuer URL, from eks:DescribeCluster."""
    cluster = eks.describe_cluster(name=cluster_name)["cluster"]
    issuer = ((cluster.get("identity") or {}).get("oidc") or {}).get("issuer")
    if not issuer:
        raise LookupError(f"EKS cluster {cluster_name} reports no OIDC issuer (identity.oidc)")
    return str(issuer)


def find_oidc_provider(iam: Any, issuer: str) -> OidcProvider | None:
    """The IAM OIDC provider whose URL is ``issuer``, or None when the account has none."""
    wanted = issuer_path(issuer)
    for item in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        arn = item["Arn"]
        if provider_path(arn) == wanted:
            details = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            return OidcProvider(arn, tuple(details.get("ClientIDList") or ()))
    return None


def role_name(role_arn: str) -> str:
    """``arn:aws:iam::123:role/path/name`` -> ``name`` (what GetRole and STS sessions use)."""
    return role_arn.split(":role/", 1)[-1].rsplit("/", 1)[-1]


def account_of(arn: str) -> str:
    return arn.split(":")[4]


def trust_policy(iam: Any, role_arn: str) -> str | Mapping[str, Any]:
    """The role's trust policy; raises LookupError naming the AWS error when it cannot be read."""
    try:
        role = iam.get_role(RoleName=role_name(role_arn))["Role"]
    except ClientError as error:
        details = error.response.get("Error", {})
        raise LookupError(
            f"iam:GetRole {role_name(role_arn)} failed: {details.get('Code')}: "
            f"{details.get('Message')}"
        ) from None
    return role["AssumeRolePolicyDocument"]


def is_assumed_role_of(caller_arn: str, role_arn: str) -> bool:
    """Whether ``caller_arn`` (GetCallerIdentity) is a session of ``role_arn``:
    ``arn:aws:sts::<acct>:assumed-role/<name>/<session>``."""
    parts = caller_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "sts" or parts[4] != account_of(role_arn):
        return False
    resource = parts[5].split("/")
    return (
        len(resource) >= 3 and resource[0] == "assumed-role" and resource[1] == role_name(role_arn)
    )


# --- Kubernetes: annotations, what the webhook should have injected --------------------------


def expected_expiration_s(
    service_account_annotations: Mapping[str, str], pod_annotations: Mapping[str, str]
) -> int:
    """The token lifetime the webhook asks for: pod annotation, then service-account
    annotation, then 86400 s; values under 600 s are raised to 600 s."""
    for source in (pod_annotations, service_account_annotations):
        value = source.get(EXPIRATION_ANNOTATION)
        if value is not None:
            try:
                return max(MIN_EXPIRATION_S, int(value))
            except ValueError:
                break
    return DEFAULT_EXPIRATION_S


def expected_audience(service_account_annotations: Mapping[str, str], default: str) -> str:
    return service_account_annotations.get(AUDIENCE_ANNOTATION) or default


@dataclass(frozen=True)
class InjectionExpectation:
    role_arn: str
    subject: str
    issuer: str
    audience: str
    expiration_s: int
    #: exp - iat may differ from the asked-for lifetime by this much.
    expiration_slack_s: float = 60.0


def injection_problems(observed: Mapping[str, Any], expected: InjectionExpectation) -> list[str]:
    """What the pod lacks of the webhook's mutation, from a ``web-identity`` probe result:
    ``env`` (AWS variables), ``token_file_present``, and ``claims`` or ``token_error``."""
    env = observed.get("env") or {}
    if "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env:
        return [
            "the pod identity webhook did not mutate the pod: no AWS_ROLE_ARN, no "
            "AWS_WEB_IDENTITY_TOKEN_FILE"
            + ("" if observed.get("token_file_present") else ", no token mounted")
            + "; is the webhook registered and running (kubectl get "
            "mutatingwebhookconfiguration pod-identity-webhook) and does the service account "
            f"carry {ROLE_ANNOTATION}?"
        ]
    problems = []
    if env.get("AWS_ROLE_ARN") != expected.role_arn:
        problems.append(
            f"AWS_ROLE_ARN is {env.get('AWS_ROLE_ARN')!r}, expected {expected.role_arn}"
        )
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") != TOKEN_FILE:
        problems.append(
            f"AWS_WEB_IDENTITY_TOKEN_FILE is {env.get('AWS_WEB_IDENTITY_TOKEN_FILE')!r}, "
            f"expected {TOKEN_FILE}"
        )
    if not observed.get("token_file_present"):
        problems.append(f"no token file at {TOKEN_FILE} (projected volume aws-iam-token)")
        return problems
    claims = observed.get("claims")
    if not isinstance(claims, Mapping):
        problems.append(f"the token cannot be read: {observed.get('token_error')}")
        return problems
    problems.extend(_claim_problems(claims, expected))
    return problems


def _claim_problems(claims: Mapping[str, Any], expected: InjectionExpectation) -> list[str]:
    problems = []
    audiences = _as_list(claims.get("aud"))
    if expected.audience not in audiences:
        problems.append(f"token aud is {audiences}, expected it to include {expected.audience}")
    if claims.get("sub") != expected.subject:
        problems.append(f"token sub is {claims.get('sub')!r}, expected {expected.subject}")
    if claims.get("iss") != expected.issuer:
        problems.append(f"token iss is {claims.get('iss')!r}, expected {expected.issuer}")
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        problems.append(f"token lacks iat/exp (iat={issued!r}, exp={expires!r})")
    elif abs((expires - issued) - expected.expiration_s) > expected.expiration_slack_s:
        problems.append(
            f"token lifetime exp - iat is {expires - issued:.0f} s, expected "
            f"{expected.expiration_s} s (webhook default, or {EXPIRATION_ANNOTATION})"
        )
    return problems


def kube2iam_leftovers(
    namespaces: Iterable[client.V1Namespace], pods: Iterable[client.V1Pod]
) -> list[str]:
    """Namespaces and pods still annotated for kube2iam/kiam, one line each."""
    found = []
    for namespace in namespaces:
        for key, value in (namespace.metadata.annotations or {}).items():
            if key.startswith(KUBE2IAM_PREFIX):
                found.append(f"namespace {namespace.metadata.name}: {key}={value}")
    for pod in pods:
        for key, value in (pod.metadata.annotations or {}).items():
            if key.startswith(KUBE2IAM_PREFIX):
                found.append(f"pod {pod.metadata.namespace}/{pod.metadata.name}: {key}={value}")
    return found
