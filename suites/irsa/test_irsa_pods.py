"""What pods really get: each mapped service account's pod gets exactly its own role, is refused
every other role, a same-named service account elsewhere is refused, and a pod without a role
reaches no AWS credentials at all, not even the node's through instance metadata.

One probe pod per mapping (``web-identity``) reports the webhook's injection, the token's
claims, its own role's caller identity and an attempt at each other role; the checks below
read that one result.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate import irsa
from clustergate.config import AwsCall, ClusterConfig, IrsaMapping
from clustergate.kube import Cluster
from clustergate.probes import ProbeResult, ProbeSpec, run_probe
from clustergate.results import Recorder
from clustergate.runctx import RunContext

pytestmark = [pytest.mark.irsa, pytest.mark.gate]

NO_ROLE_ACCOUNT = "clustergate-no-role"
ACCESS_DENIED = "AccessDenied"
#: Probe pods started at once; each is short and light.
PARALLEL_PROBES = 4


def _probe_all(
    run: RunContext, config: ClusterConfig, specs: dict[str, ProbeSpec]
) -> dict[str, ProbeResult | str]:
    """Run the probes side by side; a probe that produced no result maps to why."""

    def one(spec: ProbeSpec) -> ProbeResult | str:
        try:
            return run_probe(run, config.probe.image, spec, config.timeouts.probe_s)
        except (AssertionError, ApiException) as error:
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=PARALLEL_PROBES) as pool:
        return dict(zip(specs, pool.map(one, specs.values()), strict=True))


def _call_arg(call: AwsCall) -> str:
    return f"{call.service}:{call.operation}:{json.dumps(call.parameters)}"


def _others(mapping: IrsaMapping, mappings: tuple[IrsaMapping, ...]) -> list[str]:
    """Roles of other mappings this service account must not get: not its own, and not one
    that trusts its whole namespace on purpose."""
    allowed = {mapping.role_arn} | {
        other.role_arn
        for other in mappings
        if other.namespace_wide and other.namespace == mapping.namespace
    }
    return sorted({other.role_arn for other in mappings} - allowed)


def _create_service_account(run: RunContext, name: str, role_arn: str | None) -> None:
    metadata = run.metadata(name)
    if role_arn:
        metadata.annotations = {**(metadata.annotations or {}), irsa.ROLE_ANNOTATION: role_arn}
    try:
        run.cluster.core().create_namespaced_service_account(
            run.namespace, client.V1ServiceAccount(metadata=metadata)
        )
    except ApiException as error:
        if error.status != 409:
            raise


def _denial(attempt: dict) -> str | None:
    """None when the attempt was refused with AccessDenied, else what happened instead."""
    if attempt.get("ok"):
        return f"was GRANTED (caller {attempt.get('caller_arn')})"
    if attempt.get("error_code") == ACCESS_DENIED:
        return None
    if attempt.get("error_code"):
        return (
            f"failed with {attempt['error_code']} ({attempt.get('error_message')}) instead of "
            f"{ACCESS_DENIED}"
        )
    return f"could not be tried: {attempt.get('error')}"


@pytest.fixture(scope="module")
def pod_identities(
    run: RunContext, cluster_config: ClusterConfig, mappings: tuple[IrsaMapping, ...]
) -> dict[str, ProbeResult | str]:
    specs = {}
    for mapping in mappings:
        args = [arg for role in _others(mapping, mappings) for arg in ("--try-role", role)]
        for call in (*mapping.must_allow, *mapping.must_deny):
            args += ["--call", _call_arg(call)]
        specs[irsa.mapping_label(mapping)] = ProbeSpec(
            "web-identity",
            args=tuple(args),
            namespace=mapping.namespace,
            service_account=mapping.service_account,
        )
    results = _probe_all(run, cluster_config, specs)
    return {
        label: result
        if isinstance(result, str) or result.get("ok")
        else f"probe pod {result.pod} failed: {result.get('error')}"
        for label, result in results.items()
    }


def test_each_pod_gets_the_webhook_injection(
    cluster: Cluster,
    cluster_config: ClusterConfig,
    mappings: tuple[IrsaMapping, ...],
    issuer: str,
    pod_identities: dict[str, ProbeResult | str],
) -> None:
    reports = []
    for mapping in mappings:
        label = irsa.mapping_label(mapping)
        result = pod_identities[label]
        if isinstance(result, str):
            reports.append(f"{label}: probe pod gave no result: {result}")
            continue
        account = cluster.core().read_namespaced_service_account(
            mapping.service_account, mapping.namespace
        )
        annotations = account.metadata.annotations or {}
        expected = irsa.InjectionExpectation(
            role_arn=mapping.role_arn,
            subject=irsa.subject_of(mapping.namespace, mapping.service_account),
            issuer=issuer,
            audience=irsa.expected_audience(annotations, cluster_config.irsa.audience),
            expiration_s=irsa.expected_expiration_s(annotations, {}),
        )
        problems = irsa.injection_problems(result.data, expected)
        if problems:
            reports.append(f"{label} (pod {result.pod} on {result.node}): " + "; ".join(problems))
    assert not reports, "pods did not get the pod identity webhook's injection:\n" + "\n".join(
        reports
    )


def test_each_pod_assumes_exactly_its_role(
    mappings: tuple[IrsaMapping, ...],
    pod_identities: dict[str, ProbeResult | str],
    measure: Recorder,
) -> None:
    reports = []
    for mapping in mappings:
        label = irsa.mapping_label(mapping)
        result = pod_identities[label]
        if isinstance(result, str):
            reports.append(f"{label}: probe pod gave no result: {result}")
            continue
        own = result["assume"]
        if not own.get("ok"):
            reports.append(
                f"{label} (pod {result.pod}): no credentials for its role: {_why_not(own)}"
            )
            continue
        measure(
            "irsa_seconds_to_credentials",
            own["seconds_to_credentials"],
            "s",
            service_account=label,
            node=result.node,
        )
        if not irsa.is_assumed_role_of(own["caller_arn"], mapping.role_arn):
            reports.append(
                f"{label}: caller identity is {own['caller_arn']}, expected a session of "
                f"{mapping.role_arn}"
            )
    assert not reports, "\n".join(reports)


def _why_not(assumed: dict[str, object]) -> str:
    """Why a pod got no credentials for its role: AWS's error, or the probe's."""
    if assumed.get("error_code"):
        return f"{assumed['error_code']}: {assumed.get('error_message')}"
    return str(assumed.get("error"))


def test_each_pod_is_refused_every_other_mapped_role(
    mappings: tuple[IrsaMapping, ...], pod_identities: dict[str, ProbeResult | str]
) -> None:
    if not any(_others(mapping, mappings) for mapping in mappings):
        pytest.skip("the mappings name a single role: there is no other role to be refused")
    reports = []
    for mapping in mappings:
        label = irsa.mapping_label(mapping)
        result = pod_identities[label]
        if isinstance(result, str):
            reports.append(f"{label}: probe pod gave no result: {result}")
            continue
        for attempt in result["tried"]:
            outcome = _denial(attempt)
            if outcome:
                reports.append(
                    f"{label} (pod {result.pod}) asking for {attempt['role_arn']} with its own "
                    f"token {outcome}"
                )
    assert not reports, (
        f"every other role must refuse a service account's token with {ACCESS_DENIED}; check "
        "those roles' trust policies (:sub):\n" + "\n".join(reports)
    )


def test_same_named_service_account_in_another_namespace_is_refused(
    run: RunContext, cluster_config: ClusterConfig, mappings: tuple[IrsaMapping, ...]
) -> None:
    by_name = {}
    for mapping in mappings:
        by_name.setdefault(mapping.service_account, mapping)
    for name, mapping in by_name.items():
        _create_service_account(run, name, mapping.role_arn)
    results = _probe_all(
        run,
        cluster_config,
        {name: ProbeSpec("assume", service_account=name) for name in by_name},
    )
    reports = []
    for name, mapping in by_name.items():
        result = results[name]
        where = f"service account {run.namespace}/{name} (annotated with {mapping.role_arn})"
        if isinstance(result, str):
            reports.append(f"{where}: probe pod gave no result: {result}")
            continue
        outcome = _denial(result.data)
        if outcome:
            reports.append(f"{where}, pod {result.pod}: {outcome}")
    assert not reports, (
        "a service account of the same name in another namespace must be refused the role "
        f"with {ACCESS_DENIED} (the trust policy must name the namespace in :sub):\n"
        + "\n".join(reports)
    )


def test_configured_calls_are_allowed_and_denied(
    mappings: tuple[IrsaMapping, ...], pod_identities: dict[str, ProbeResult | str]
) -> None:
    checked = [m for m in mappings if m.must_allow or m.must_deny]
    if not checked:
        pytest.skip("no irsa.mappings[] entry lists must_allow or must_deny calls")
    reports = []
    for mapping in checked:
        label = irsa.mapping_label(mapping)
        result = pod_identities[label]
        if isinstance(result, str):
            reports.append(f"{label}: probe pod gave no result: {result}")
            continue
        if not result["assume"].get("ok"):
            reports.append(
                f"{label}: no credentials to make the calls with: {_why_not(result['assume'])}"
            )
            continue
        wanted = [(call, True) for call in mapping.must_allow] + [
            (call, False) for call in mapping.must_deny
        ]
        for (call, allowed), made in zip(wanted, result["assume"]["calls"], strict=True):
            named = f"{label}: {call.service}:{call.operation}" + (
                f" {call.parameters}" if call.parameters else ""
            )
            if made["allowed"] is None:
                reports.append(f"{named} got no answer from AWS: {made['error']}")
            elif made["allowed"] != allowed:
                verdict = "allowed" if allowed else "denied"
                reports.append(f"{named} must be {verdict}, got {made['code'] or 'success'}")
    assert not reports, "\n".join(reports)


@pytest.fixture(scope="module")
def no_role_account(run: RunContext) -> str:
    _create_service_account(run, NO_ROLE_ACCOUNT, None)
    return NO_ROLE_ACCOUNT


def test_pod_without_a_role_gets_no_aws_credentials(
    run: RunContext, cluster_config: ClusterConfig, no_role_account: str
) -> None:
    result = run_probe(
        run,
        cluster_config.probe.image,
        ProbeSpec(
            "default-credentials",
            args=("--region", cluster_config.cluster.region),
            service_account=no_role_account,
        ),
        cluster_config.timeouts.probe_s,
    )
    if not result.get("credentials"):
        return
    source, caller = result.get("source"), result.get("caller_arn")
    where = f"pod {result.pod} on node {result.node} (service account without a role)"
    if source == "iam-role":
        if cluster_config.irsa.expect_imds_blocked:
            pytest.fail(
                f"{where} got the node role's credentials ({caller}) from instance metadata: "
                "the IMDSv2 hop limit lets containers through; set HttpPutResponseHopLimit to 1 "
                "in the node groups' launch templates",
                pytrace=False,
            )
        return
    pytest.fail(f"{where} got AWS credentials from {source} ({caller})", pytrace=False)


def test_pod_cannot_reach_node_credentials_through_imds(
    run: RunContext, cluster_config: ClusterConfig, no_role_account: str
) -> None:
    if not cluster_config.irsa.expect_imds_blocked:
        pytest.skip("irsa.expect_imds_blocked is false: pods may reach instance metadata")
    result = run_probe(
        run,
        cluster_config.probe.image,
        ProbeSpec("imds", service_account=no_role_account),
        cluster_config.timeouts.probe_s,
    )
    roles = ", ".join(result.get("roles") or [])
    reached = f"and listed node role(s) {roles}" if roles else "(no role listed)"
    token = bool(result.get("token"))
    assert not token, (
        f"pod {result.pod} on node {result.node} (no host network) got an IMDSv2 token from "
        f"169.254.169.254 {reached}: the hop limit lets containers reach the node's "
        "credentials; set HttpPutResponseHopLimit to 1 in the node groups' launch templates"
    )
