"""Dynamic admission in the twin's API server: webhook configurations made through the API
call a real HTTPS webhook (a small server in this test, with its own CA given as caBundle)
with an AdmissionReview v1, and their answers (patches, refusals, failures) reach the client
as kube-apiserver answers them.

One API server and one webhook server serve the whole module; each test installs its own
configuration and removes it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client

from clustergate.twin.apiserver.tls import issue_serving_files
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.pod_identity_webhook import CONFIGURATION, SKIP_LABEL, PodIdentityWebhook
from clustergate.twin.pod_identity_webhook.mutation import Flags
from tests.twin.test_apiserver import RunningServer, error_of, pod_body
from tests.webhook_server import WebhookServer, allow

Obj = dict[str, Any]
SERVICE_NAME = "hooks"
SERVICE_NAMESPACE = "webhooks"


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("admission"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def hook_server(
    twin: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookServer]:
    server = WebhookServer(
        tmp_path_factory.mktemp("webhook"), (f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc",)
    )
    core = client.CoreV1Api(twin.api())
    twin.namespace(SERVICE_NAMESPACE)
    core.create_namespaced_service(
        SERVICE_NAMESPACE,
        {
            "metadata": {"name": SERVICE_NAME},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": server.port}]},
        },
    )
    core.create_namespaced_endpoints(
        SERVICE_NAMESPACE,
        {
            "metadata": {"name": SERVICE_NAME},
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.1"}],
                    "ports": [{"name": "https", "port": server.port}],
                }
            ],
        },
    )
    yield server
    server.close()


@pytest.fixture
def hooks(hook_server: WebhookServer) -> Iterator[WebhookServer]:
    hook_server.reviews.clear()
    hook_server.responder = allow
    yield hook_server
    hook_server.responder = allow


@pytest.fixture(scope="module")
def registration(twin: RunningServer) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(twin.api())


@pytest.fixture
def ns(twin: RunningServer, request: pytest.FixtureRequest) -> str:
    return twin.namespace(request.node.name.replace("_", "-").lower()[:50].strip("-"))


@pytest.fixture(scope="module")
def core(twin: RunningServer) -> client.CoreV1Api:
    return client.CoreV1Api(twin.api())


def webhook(
    name: str, client_config: Obj, resources: tuple[str, ...] = ("pods",), **fields: Any
) -> Obj:
    return {
        "name": name,
        "clientConfig": client_config,
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": list(resources),
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **fields,
    }


def by_service(hooks: WebhookServer, path: str = "/validate") -> Obj:
    service = {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "path": path}
    return {"service": service, "caBundle": hooks.ca_bundle}


def by_url(hooks: WebhookServer, path: str = "/validate") -> Obj:
    return {"url": hooks.url(path), "caBundle": hooks.ca_bundle}


@pytest.fixture
def install(
    registration: client.AdmissionregistrationV1Api,
) -> Iterator[Callable[[str, str, list[Obj]], None]]:
    made: list[tuple[str, str]] = []

    def make(kind: str, name: str, webhooks: list[Obj]) -> None:
        body = {"metadata": {"name": name}, "webhooks": webhooks}
        if kind == "validating":
            registration.create_validating_webhook_configuration(body)
        else:
            registration.create_mutating_webhook_configuration(body)
        made.append((kind, name))

    yield make
    for kind, name in made:
        if kind == "validating":
            registration.delete_validating_webhook_configuration(name)
        else:
            registration.delete_mutating_webhook_configuration(name)


def test_webhook_gets_the_admission_review_the_api_server_sends(
    twin: RunningServer, hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    install("validating", "review", [webhook("review.example.com", by_service(hooks, "/check"))])
    core.create_namespaced_pod(ns, pod_body("reviewed", labels={"app": "x"}))
    path, review = hooks.reviews[-1]
    assert path.startswith("/check?timeout=10s")
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    request = review["request"]
    assert request["uid"]
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert (request["namespace"], request["name"], request["operation"]) == (
        ns,
        "reviewed",
        "CREATE",
    )
    assert request["userInfo"]["username"] == "kubernetes-admin"
    assert "system:masters" in request["userInfo"]["groups"]
    assert request["object"]["metadata"]["labels"] == {"app": "x"}
    assert request["oldObject"] is None
    assert request["dryRun"] is False

    core.patch_namespaced_pod("reviewed", ns, {"metadata": {"labels": {"app": "y"}}})
    update = hooks.reviews[-1][1]["request"]
    assert update["operation"] == "UPDATE"
    assert update["oldObject"]["metadata"]["labels"] == {"app": "x"}
    assert update["object"]["metadata"]["labels"] == {"app": "y"}


def test_refusal_names_the_webhook_and_its_message(
    hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    hooks.responder = lambda review: {
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "no limits"},
    }
    install("validating", "deny", [webhook("deny.example.com", by_url(hooks))])
    status, body = error_of(lambda: core.create_namespaced_pod(ns, pod_body("refused")))
    assert status == 403
    assert body["message"] == 'admission webhook "deny.example.com" denied the request: no limits'
    hooks.responder = lambda review: {"allowed": False}
    status, body = error_of(lambda: core.create_namespaced_pod(ns, pod_body("refused")))
    assert (status, body["message"]) == (
        400,
        'admission webhook "deny.example.com" denied the request without explanation',
    )


def test_unreachable_webhook_fails_closed_or_is_ignored_by_its_failure_policy(
    hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    gone = {"service": {"namespace": SERVICE_NAMESPACE, "name": "nothing-here"}}
    install(
        "validating",
        "unreachable-ignored",
        [webhook("ignored.example.com", gone, failurePolicy="Ignore")],
    )
    core.create_namespaced_pod(ns, pod_body("passes"))
    install("validating", "unreachable-fails", [webhook("fails.example.com", gone)])
    status, body = error_of(lambda: core.create_namespaced_pod(ns, pod_body("blocked")))
    assert status == 500
    assert body["message"].startswith(
        'Internal error occurred: failed calling webhook "fails.example.com": '
    )
    assert 'service "nothing-here" not found' in body["message"]


def test_wrong_ca_bundle_is_a_failed_call(
    hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    other = issue_serving_files(tmp_path, ["x.example.com"], ["127.0.0.1"], stem="other")
    config = {**by_url(hooks), "caBundle": base64.b64encode(other.ca_cert.read_bytes()).decode()}
    install("validating", "bad-ca", [webhook("bad-ca.example.com", config)])
    status, body = error_of(lambda: core.create_namespaced_pod(ns, pod_body("untrusted")))
    assert status == 500
    assert "certificate verify failed" in body["message"]
    assert not hooks.reviews


def test_selectors_and_rules_choose_the_requests_a_webhook_sees(
    twin: RunningServer, hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    core.patch_namespace(ns, {"metadata": {"labels": {"policy": "enforced"}}})
    selected = webhook(
        "selected.example.com",
        by_url(hooks, "/selected"),
        namespaceSelector={"matchLabels": {"policy": "enforced"}},
        objectSelector={"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
    )
    services_only = webhook("services.example.com", by_url(hooks, "/services"), ("services",))
    status_only = webhook("status.example.com", by_url(hooks, "/status"), ("pods/status",))
    install("validating", "selected", [selected, services_only, status_only])
    other = twin.namespace(f"{ns[:40]}-other")

    core.create_namespaced_pod(ns, pod_body("seen"))
    core.create_namespaced_pod(ns, pod_body("skipped", labels={"skip": "yes"}))
    core.create_namespaced_pod(other, pod_body("elsewhere"))
    core.patch_namespaced_pod_status("seen", ns, {"status": {"phase": "Running"}})
    seen = [(path.partition("?")[0], review["request"]) for path, review in hooks.reviews]
    assert [(path, r["name"], r.get("subResource", "")) for path, r in seen] == [
        ("/selected", "seen", ""),
        ("/status", "seen", "status"),
    ]


def test_mutating_patches_apply_in_order_before_validation(
    hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    def answer(review: Obj) -> Obj:
        path = hooks.reviews[-1][0].partition("?")[0]
        labels = review["request"]["object"]["metadata"].get("labels") or {}
        if path == "/first":
            patch = [{"op": "add", "path": "/metadata/labels", "value": {"order": "first"}}]
        elif path == "/second":
            patch = [{"op": "replace", "path": "/metadata/labels/order", "value": "second"}]
            assert labels == {"order": "first"}
        else:
            return {"allowed": labels == {"order": "second"}}
        encoded = base64.b64encode(json.dumps(patch).encode()).decode()
        return {"allowed": True, "patchType": "JSONPatch", "patch": encoded}

    hooks.responder = answer
    install("validating", "judge", [webhook("judge.example.com", by_url(hooks, "/judge"))])
    install(
        "mutating",
        "a-labels",
        [
            webhook("first.example.com", by_url(hooks, "/first")),
            webhook("second.example.com", by_url(hooks, "/second")),
        ],
    )
    created = core.create_namespaced_pod(ns, pod_body("patched"))
    assert created.metadata.labels == {"order": "second"}
    paths = [path.partition("?")[0] for path, _ in hooks.reviews]
    assert paths == ["/first", "/second", "/judge"]


def test_dry_run_reaches_only_webhooks_without_side_effects(
    hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    install(
        "validating",
        "side-effects",
        [webhook("effects.example.com", by_url(hooks), sideEffects="NoneOnDryRun")],
    )
    core.create_namespaced_pod(ns, pod_body("dry"), dry_run="All")
    assert hooks.reviews[-1][1]["request"]["dryRun"] is True


def test_configurations_are_validated_and_defaulted(
    registration: client.AdmissionregistrationV1Api, hooks: WebhookServer, install: Any
) -> None:
    bad = webhook("short.name", by_url(hooks), sideEffects="Unknown")
    status, body = error_of(
        lambda: registration.create_validating_webhook_configuration(
            {"metadata": {"name": "bad"}, "webhooks": [bad]}
        )
    )
    assert status == 422
    causes = [(cause["field"], cause["reason"]) for cause in body["details"]["causes"]]
    assert causes == [
        ("webhooks[0].name", "FieldValueInvalid"),
        ("webhooks[0].sideEffects", "FieldValueNotSupported"),
    ]
    install("mutating", "defaults", [webhook("defaults.example.com", by_url(hooks))])
    stored = registration.read_mutating_webhook_configuration("defaults").webhooks[0]
    assert (stored.failure_policy, stored.timeout_seconds, stored.reinvocation_policy) == (
        "Fail",
        10,
        "Never",
    )
    assert stored.rules[0].scope == "*"


# ---- ValidatingAdmissionPolicy (CEL)

LIMITS_POLICY = {
    "metadata": {"name": "require-limits"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["pods"],
                }
            ]
        },
        "validations": [
            {
                "expression": "object.spec.containers.all(c, has(c.resources) && "
                "has(c.resources.limits) && 'cpu' in c.resources.limits)",
                "messageExpression": "'container ' + object.spec.containers[0].name + "
                "' of ' + object.metadata.name + ' sets no CPU limit'",
            },
            {"expression": "object.metadata.name.size() < 20"},
        ],
    },
}


@pytest.fixture
def policy(registration: client.AdmissionregistrationV1Api) -> Iterator[Callable[[Obj], None]]:
    registration.create_validating_admission_policy(LIMITS_POLICY)
    bindings: list[str] = []

    def bind(spec: Obj) -> None:
        name = f"require-limits-{len(bindings)}"
        body = {"metadata": {"name": name}, "spec": {"policyName": "require-limits", **spec}}
        registration.create_validating_admission_policy_binding(body)
        bindings.append(name)

    yield bind
    for name in bindings:
        registration.delete_validating_admission_policy_binding(name)
    registration.delete_validating_admission_policy("require-limits")


def limited_pod(name: str) -> Obj:
    body = pod_body(name)
    body["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "100m"}}
    return body


def test_policy_without_binding_judges_nothing(
    policy: Any, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod_body("unbound"))


def test_bound_policy_denies_with_its_message(policy: Any, core: client.CoreV1Api, ns: str) -> None:
    policy({"validationActions": ["Deny"]})
    status, body = error_of(lambda: core.create_namespaced_pod(ns, pod_body("unlimited")))
    assert status == 422
    assert body["message"] == (
        "pods \"unlimited\" is forbidden: ValidatingAdmissionPolicy 'require-limits' with "
        "binding 'require-limits-0' denied request: container main of unlimited sets no CPU "
        "limit"
    )
    core.create_namespaced_pod(ns, limited_pod("limited"))
    status, body = error_of(
        lambda: core.create_namespaced_pod(ns, limited_pod("a-name-of-twenty-chars"))
    )
    assert status == 422
    assert body["message"].endswith(
        "denied request: failed expression: object.metadata.name.size() < 20"
    )


def test_binding_match_resources_and_actions_narrow_the_policy(
    twin: RunningServer, policy: Any, core: client.CoreV1Api, ns: str
) -> None:
    core.patch_namespace(ns, {"metadata": {"labels": {"limits": "required"}}})
    policy(
        {
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"limits": "required"}}},
        }
    )
    policy({"validationActions": ["Audit"]})
    other = twin.namespace(f"{ns[:40]}-free")
    core.create_namespaced_pod(other, pod_body("free"))
    status, _ = error_of(lambda: core.create_namespaced_pod(ns, pod_body("held")))
    assert status == 422


# ---- the pod identity webhook, registered as EKS registers it


@pytest.fixture(scope="module")
def pod_identity_server(
    twin: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodIdentityWebhook]:
    server = twin.server
    webhook = PodIdentityWebhook(
        tmp_path_factory.mktemp("pod-identity"),
        twin.netmap,
        lambda: KubeClient(server.url, server.ca_pem_path, server.internal_token),
        Flags(aws_default_region=twin.settings.network.region),
    )
    twin.call(webhook.start())
    yield webhook
    twin.call(webhook.stop())


@pytest.fixture
def pod_identity(
    twin: RunningServer,
    pod_identity_server: PodIdentityWebhook,
    registration: client.AdmissionregistrationV1Api,
) -> Iterator[None]:
    server = twin.server

    async def register() -> None:
        kube = KubeClient(server.url, server.ca_pem_path, server.internal_token)
        try:
            await pod_identity_server.register(kube)
        finally:
            await kube.close()

    twin.call(register())
    yield
    with contextlib.suppress(client.ApiException):
        registration.delete_mutating_webhook_configuration(CONFIGURATION)


def _irsa_account(core: client.CoreV1Api, ns: str, name: str, annotations: dict[str, str]) -> None:
    core.create_namespaced_service_account(
        ns, {"metadata": {"name": name, "annotations": annotations}}
    )


ROLE = "arn:aws:iam::123456789012:role/app"
MOUNT = "/var/run/secrets/eks.amazonaws.com/serviceaccount"


def test_webhook_mutates_pods_of_annotated_accounts(
    twin: RunningServer, pod_identity: None, core: client.CoreV1Api, ns: str
) -> None:
    _irsa_account(
        core,
        ns,
        "irsa",
        {
            "eks.amazonaws.com/role-arn": ROLE,
            "eks.amazonaws.com/sts-regional-endpoints": "true",
            "eks.amazonaws.com/audience": "custom-aud",
        },
    )
    body = pod_body("mutated")
    body["metadata"]["annotations"] = {
        "eks.amazonaws.com/token-expiration": "100",
        "eks.amazonaws.com/skip-containers": "skipped",
    }
    body["spec"]["serviceAccountName"] = "irsa"
    body["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    body["spec"]["containers"].append({"name": "skipped", "image": "busybox"})
    pod = core.create_namespaced_pod(ns, body)
    region = twin.settings.network.region

    main = pod.spec.containers[0]
    env = {e.name: e.value for e in main.env}
    assert env == {
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": f"{MOUNT}/token",
    }
    assert [(m.name, m.mount_path, m.read_only) for m in main.volume_mounts] == [
        ("aws-iam-token", MOUNT, True)
    ]
    assert {e.name for e in pod.spec.init_containers[0].env} >= {"AWS_ROLE_ARN"}
    assert not pod.spec.containers[1].env
    assert not pod.spec.containers[1].volume_mounts
    volume = next(v for v in pod.spec.volumes if v.name == "aws-iam-token")
    token = volume.projected.sources[0].service_account_token
    assert (token.audience, token.expiration_seconds, token.path) == ("custom-aud", 600, "token")


def test_webhook_leaves_other_pods_alone(
    pod_identity: None, core: client.CoreV1Api, ns: str
) -> None:
    _irsa_account(core, ns, "plain", {})
    _irsa_account(core, ns, "irsa", {"eks.amazonaws.com/role-arn": ROLE})
    plain = pod_body("plain")
    plain["spec"]["serviceAccountName"] = "plain"
    assert not core.create_namespaced_pod(ns, plain).spec.volumes
    preset = pod_body("preset")
    preset["spec"]["serviceAccountName"] = "irsa"
    preset["spec"]["containers"][0]["env"] = [{"name": "AWS_ROLE_ARN", "value": "mine"}]
    pod = core.create_namespaced_pod(ns, preset)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["AWS_ROLE_ARN"] == "mine"
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" not in env
    assert "AWS_STS_REGIONAL_ENDPOINTS" not in env
    token = next(v for v in pod.spec.volumes if v.name == "aws-iam-token").projected.sources[0]
    assert token.service_account_token.audience == "sts.amazonaws.com"
    assert token.service_account_token.expiration_seconds == 86400


def test_without_its_configuration_the_webhook_injects_nothing(
    pod_identity: None,
    registration: client.AdmissionregistrationV1Api,
    core: client.CoreV1Api,
    ns: str,
) -> None:
    """What an operator's ``kubectl delete mutatingwebhookconfiguration pod-identity-webhook``
    does on EKS, and the skip label on a single pod."""
    _irsa_account(core, ns, "irsa", {"eks.amazonaws.com/role-arn": ROLE})
    skipped = pod_body("skipped", labels={SKIP_LABEL: "true"})
    skipped["spec"]["serviceAccountName"] = "irsa"
    assert not core.create_namespaced_pod(ns, skipped).spec.volumes
    registration.delete_mutating_webhook_configuration(CONFIGURATION)
    body = pod_body("unmutated")
    body["spec"]["serviceAccountName"] = "irsa"
    pod = core.create_namespaced_pod(ns, body)
    assert not pod.spec.volumes
    assert not pod.spec.containers[0].env


def test_policy_reads_the_params_its_binding_names(
    registration: client.AdmissionregistrationV1Api, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "limits"}, "data": {"max": "2"}})
    registration.create_validating_admission_policy(
        {
            "metadata": {"name": "max-containers"},
            "spec": {
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": LIMITS_POLICY["spec"]["matchConstraints"],
                "validations": [
                    {
                        "expression": "object.spec.containers.size() <= int(params.data.max)",
                        "message": "too many containers",
                    }
                ],
            },
        }
    )
    binding = {
        "metadata": {"name": "max-containers"},
        "spec": {
            "policyName": "max-containers",
            "paramRef": {"name": "limits", "namespace": ns},
            "validationActions": ["Deny"],
        },
    }
    registration.create_validating_admission_policy_binding(binding)
    try:
        body = pod_body("crowded")
        body["spec"]["containers"] *= 3
        for index, container in enumerate(body["spec"]["containers"]):
            body["spec"]["containers"][index] = {**container, "name": f"c{index}"}
        status, answer = error_of(lambda: core.create_namespaced_pod(ns, body))
        assert (status, answer["message"].rpartition(": ")[2]) == (422, "too many containers")
        core.create_namespaced_pod(ns, pod_body("alone"))
    finally:
        registration.delete_validating_admission_policy_binding("max-containers")
        registration.delete_validating_admission_policy("max-containers")


def _apply(twin: RunningServer, path: str, manifest: Obj, manager: str, query: str = "") -> Any:
    """A server-side apply as kubectl --server-side sends it; the status and the answer."""
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path)
    answer = http.request(
        "PATCH",
        f"{twin.server.url}{path}?fieldManager={manager}{query}",
        body=json.dumps(manifest).encode(),
        headers={
            "Authorization": f"Bearer {twin.server.admin_token}",
            "Content-Type": "application/apply-patch+yaml",
        },
    )
    return answer.status, json.loads(answer.data)


def test_server_side_apply_is_admitted_as_a_create_then_as_an_update(
    twin: RunningServer, hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    """The patch handler names an apply CREATE when it creates and UPDATE otherwise; the
    object reviewed already carries the applier's managedFields (recorded before admission)."""
    rule = ("configmaps",)
    install("validating", "applied", [webhook("applied.example.com", by_url(hooks), rule)])
    path = f"/api/v1/namespaces/{ns}/configmaps/applied"
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}}
    assert _apply(twin, path, {**manifest, "data": {"a": "1"}}, "tester")[0] == 201
    assert _apply(twin, path, {**manifest, "data": {"a": "2"}}, "tester")[0] == 200
    reviewed = [review["request"] for _, review in hooks.reviews]
    assert [(r["operation"], r["name"]) for r in reviewed] == [
        ("CREATE", "applied"),
        ("UPDATE", "applied"),
    ]
    created, updated = reviewed
    assert created["oldObject"] is None
    assert (updated["oldObject"]["data"], updated["object"]["data"]) == ({"a": "1"}, {"a": "2"})
    owners = created["object"]["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in owners] == [("tester", "Apply")]

    hooks.responder = lambda review: {"allowed": False, "status": {"message": "frozen"}}
    status, body = _apply(twin, path, {**manifest, "data": {"a": "3"}}, "tester")
    assert (status, body["message"]) == (
        400,
        'admission webhook "applied.example.com" denied the request: frozen',
    )
    assert core.read_namespaced_config_map("applied", ns).data == {"a": "2"}


def test_dry_run_apply_is_reviewed_as_a_dry_run(
    twin: RunningServer, hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    rule = ("configmaps",)
    install("validating", "dry-apply", [webhook("dry.example.com", by_url(hooks), rule)])
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}
    path = f"/api/v1/namespaces/{ns}/configmaps/dry"
    assert _apply(twin, path, manifest, "tester", "&dryRun=All")[0] == 201
    assert hooks.reviews[-1][1]["request"]["dryRun"] is True
    assert core.list_namespaced_config_map(ns).items == []


def test_a_mutating_webhooks_changes_are_owned_by_no_manager(
    twin: RunningServer, hooks: WebhookServer, install: Any, core: client.CoreV1Api, ns: str
) -> None:
    """k8s.io/apiserver records the request's manager before it calls mutating admission
    (create, update and patch handlers alike), so what a webhook adds is owned by nobody:
    neither by the webhook nor by the manager of the request it mutated."""

    def inject(review: Obj) -> Obj:
        patch = [{"op": "add", "path": "/metadata/labels", "value": {"injected": "yes"}}]
        encoded = base64.b64encode(json.dumps(patch).encode()).decode()
        return {"allowed": True, "patchType": "JSONPatch", "patch": encoded}

    hooks.responder = inject
    install("mutating", "inject", [webhook("inject.example.com", by_url(hooks), ("configmaps",))])
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}}
    path = f"/api/v1/namespaces/{ns}/configmaps/applied"
    status, applied = _apply(twin, path, {**manifest, "data": {"a": "1"}}, "tester")
    assert status == 201
    made = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "created"}, "data": {"a": "1"}}, field_manager="creator"
    )
    for obj, manager, operation, fields in (
        (applied, "tester", "Apply", {"f:data": {"f:a": {}}}),
        (made.to_dict(), "creator", "Update", {"f:data": {".": {}, "f:a": {}}}),
    ):
        meta = obj["metadata"]
        assert meta["labels"] == {"injected": "yes"}
        owners = meta.get("managedFields") or meta["managed_fields"]
        assert [(m["manager"], m["operation"]) for m in owners] == [(manager, operation)]
        assert (owners[0].get("fieldsV1") or owners[0]["fields_v1"]) == fields


def test_custom_resources_and_their_subresources_reach_webhooks(
    twin: RunningServer, hooks: WebhookServer, install: Any, ns: str
) -> None:
    api = twin.api()
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"count": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"count": {"type": "integer"}}},
        },
    }
    scale = {"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.count"}
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}, "scale": scale},
    }
    names = {"plural": "gadgets", "kind": "Gadget"}
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        {
            "metadata": {"name": "gadgets.hooks.example.com"},
            "spec": {
                "group": "hooks.example.com",
                "scope": "Namespaced",
                "names": names,
                "versions": [version],
            },
        }
    )
    hook = webhook("gadgets.example.com", by_url(hooks), ("gadgets", "gadgets/scale"))
    hook["rules"][0]["apiGroups"] = ["hooks.example.com"]
    install("validating", "gadgets", [hook])
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "hooks.example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"count": 1},
    }
    group = ("hooks.example.com", "v1", ns, "gadgets")
    deadline = time.monotonic() + 10
    while True:  # served once the CRD is Established
        try:
            custom.create_namespaced_custom_object(*group, body)
            break
        except client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    custom.patch_namespaced_custom_object_scale(*group, "g", {"spec": {"replicas": 3}})
    custom.patch_namespaced_custom_object_status(*group, "g", {"status": {"count": 3}})
    reviewed = [review["request"] for _, review in hooks.reviews]
    assert [(r["operation"], r.get("subResource", "")) for r in reviewed] == [
        ("CREATE", ""),
        ("UPDATE", "scale"),
    ]
    created, scaled = reviewed
    assert created["kind"] == {"group": "hooks.example.com", "version": "v1", "kind": "Gadget"}
    # Through the scale subresource, webhooks see the Scale (as kube-apiserver sends it).
    assert scaled["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert scaled["resource"] == {
        "group": "hooks.example.com",
        "version": "v1",
        "resource": "gadgets",
    }
    assert (scaled["oldObject"]["spec"], scaled["object"]["spec"]) == (
        {"replicas": 1},
        {"replicas": 3},
    )


def test_a_mutating_webhook_may_change_a_scale(
    twin: RunningServer, hooks: WebhookServer, install: Any, ns: str
) -> None:
    def at_most_two(review: Obj) -> Obj:
        patch = [{"op": "replace", "path": "/spec/replicas", "value": 2}]
        encoded = base64.b64encode(json.dumps(patch).encode()).decode()
        return {"allowed": True, "patchType": "JSONPatch", "patch": encoded}

    hooks.responder = at_most_two
    hook = webhook("scale.example.com", by_url(hooks), ("deployments/scale",))
    hook["rules"][0]["apiGroups"] = ["apps"]
    install("mutating", "scale-cap", [hook])
    apps = client.AppsV1Api(twin.api())
    labels = {"app": "capped"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "capped"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                },
            },
        },
    )
    answered = apps.patch_namespaced_deployment_scale("capped", ns, {"spec": {"replicas": 5}})
    assert answered.spec.replicas == 2
    assert apps.read_namespaced_deployment("capped", ns).spec.replicas == 2
    assert [review["request"]["kind"]["kind"] for _, review in hooks.reviews] == ["Scale"]
