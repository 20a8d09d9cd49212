"""The twin's API server against the official kubernetes client: CRUD, errors, selectors,
paging, watch, patches, subresources, deletion semantics, tokens, admission and authorization.

The server runs in a background thread with its own event loop, as it runs in the twin.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import kubernetes
import pytest
import urllib3
from kubernetes import client, watch

from clustergate.twin.apiserver import ApiServer
from clustergate.twin.apiserver.api_faults import ApiFaults
from clustergate.twin.apiserver.registry import CONTINUE_EXPIRED, WATCH_EXPIRED
from clustergate.twin.apiserver.resources import resource
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

RBAC_GROUP = "rbac.authorization.k8s.io"

ACCOUNTS = resource("", "v1", "serviceaccounts")


class RunningServer:
    """An ApiServer on its own event loop in a daemon thread. No controllers run, so the
    harness gives each namespace it makes its "default" ServiceAccount, as the
    ServiceAccount controller would (pods need it to be admitted)."""

    def __init__(self, state_dir: Path, **options: Any) -> None:
        faults = options.pop("faults", frozenset())
        self.settings = TwinSettings(
            state_dir=str(state_dir),
            faults=frozenset(faults),
            api_fault_rate=options.pop("api_fault_rate", 0.0),
        )
        self.netmap = Netmap()
        self.kubelets = KubeletHub()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ApiServer(self.settings, self.netmap, self.kubelets, **options)
        self.call(self.server.start())
        self.call(self._default_accounts())

    async def _default_accounts(self) -> None:
        """For the namespaces the server starts with; in its loop, past any injected faults."""
        registry = self.server.registry
        for namespace in registry.store.scan("namespaces"):
            registry.create(
                ACCOUNTS, namespace["metadata"]["name"], {"metadata": {"name": "default"}}
            )

    def namespace(self, name: str) -> str:
        core = client.CoreV1Api(self.api())
        core.create_namespace({"metadata": {"name": name}})
        default_account(core, name)
        return name

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def api(self, token: str | None = None) -> client.ApiClient:
        config = client.Configuration()
        config.host = self.server.url
        config.ssl_ca_cert = self.server.ca_pem_path
        config.api_key = {"authorization": f"Bearer {token or self.server.admin_token}"}
        return client.ApiClient(config)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("apiserver"), bookmark_interval=0.3)
    yield running
    running.close()


@pytest.fixture(scope="module")
def core(twin: RunningServer) -> client.CoreV1Api:
    return client.CoreV1Api(twin.api())


def default_account(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})


@pytest.fixture
def ns(twin: RunningServer, request: pytest.FixtureRequest) -> str:
    return twin.namespace(request.node.name.replace("_", "-").lower()[:50].strip("-"))


def error_of(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(client.ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = probe()
        if seen:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {seen!r}")


def raw_request(
    twin: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> urllib3.BaseHTTPResponse:
    """One plain HTTPS request, without the client's retries (faults must show as they are)."""
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path, retries=False)
    sent = dict(headers or {})
    if token != "":
        sent["Authorization"] = f"Bearer {token or twin.server.admin_token}"
    return http.request(method, twin.server.url + path, headers=sent)


def pod_body(name: str, node: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


# ---- CRUD, metadata and errors


def test_create_get_update_and_stale_update_conflict(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    first_version = created.metadata.resource_version
    created.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("cm", ns, created)
    assert int(updated.metadata.resource_version) > int(first_version)
    assert updated.metadata.uid == created.metadata.uid

    created.metadata.resource_version = first_version
    created.data = {"a": "3"}
    status, body = error_of(lambda: core.replace_namespaced_config_map("cm", ns, created))
    assert status == 409
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "cm": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "cm", "kind": "configmaps"},
        "code": 409,
    }
    assert core.read_namespaced_config_map("cm", ns).data == {"a": "2"}


def test_not_found_already_exists_and_invalid_bodies(twin: RunningServer, ns: str) -> None:
    apps = client.AppsV1Api(twin.api())
    core = client.CoreV1Api(twin.api())
    status, body = error_of(lambda: apps.read_namespaced_deployment("missing", ns))
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "missing" not found'
    assert body["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}

    core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    status, body = error_of(
        lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    )
    assert (status, body["reason"], body["message"]) == (
        409,
        "AlreadyExists",
        'configmaps "dup" already exists',
    )

    status, body = error_of(
        lambda: core.create_namespaced_pod(
            ns, {"metadata": {"name": "empty"}, "spec": {"containers": []}}
        )
    )
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == 'Pod "empty" is invalid: spec.containers: Required value'
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]
    status, body = error_of(
        lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    )
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"

    status, body = error_of(
        lambda: core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    )
    assert (status, body["message"]) == (404, 'namespaces "no-such-ns" not found')


def test_generate_name_and_pod_defaults(core: client.CoreV1Api, ns: str) -> None:
    body = {
        "metadata": {"generateName": "web-"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "nginx:1.27",
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            ]
        },
    }
    pod = core.create_namespaced_pod(ns, body)
    assert pod.metadata.name.startswith("web-")
    assert len(pod.metadata.name) == len("web-") + 5
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.dns_policy == "ClusterFirst"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.spec.service_account_name == "default"
    assert pod.status.phase == "Pending"
    assert pod.status.qos_class == "Guaranteed"
    assert pod.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "64Mi"}
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_pods_need_their_service_account(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "fresh"}})
    status, body = error_of(lambda: core.create_namespaced_pod("fresh", pod_body("early")))
    assert (status, body["reason"], body["details"]) == (
        403,
        "Forbidden",
        {"name": "early", "kind": "pods"},
    )
    assert body["message"] == (
        'pods "early" is forbidden: error looking up service account fresh/default: '
        'serviceaccount "default" not found'
    )
    robot = pod_body("robot")
    robot["spec"]["serviceAccountName"] = "robot"
    default_account(core, "fresh")
    status, body = error_of(lambda: core.create_namespaced_pod("fresh", robot))
    assert status == 403
    assert "error looking up service account fresh/robot" in body["message"]
    assert core.create_namespaced_pod("fresh", pod_body("early")).metadata.name == "early"
    mirror = pod_body("static")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    mirror["spec"]["serviceAccountName"] = "robot"
    assert core.create_namespaced_pod("fresh", mirror).metadata.name == "static"


def test_service_cluster_ip_allocation(
    twin: RunningServer, core: client.CoreV1Api, ns: str
) -> None:
    spec = {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "x"}}
    first = core.create_namespaced_service(ns, {"metadata": {"name": "one"}, "spec": spec})
    second = core.create_namespaced_service(ns, {"metadata": {"name": "two"}, "spec": spec})
    assert first.spec.cluster_ip != second.spec.cluster_ip
    assert first.spec.cluster_ip.startswith("10.100.")
    assert first.spec.ports[0].protocol == "TCP"
    dns_ip = twin.settings.network.kube_dns_ip
    dns = core.create_namespaced_service(
        ns, {"metadata": {"name": "kube-dns"}, "spec": {**spec, "clusterIP": dns_ip}}
    )
    assert dns.spec.cluster_ips == [dns_ip]
    status, body = error_of(
        lambda: core.create_namespaced_service(
            ns, {"metadata": {"name": "clash"}, "spec": {**spec, "clusterIP": dns_ip}}
        )
    )
    assert status == 422
    assert "provided IP is already allocated" in body["message"]
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "10.100.0.1"


# ---- selectors and paging


def test_label_and_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod_body("a", "node-1", {"tier": "web", "env": "prod"}))
    core.create_namespaced_pod(ns, pod_body("b", "node-2", {"tier": "db", "env": "prod"}))
    core.create_namespaced_pod(ns, pod_body("c", "", {"tier": "web"}))

    def names(**selectors: str) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod(ns, **selectors).items]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web,env=prod") == ["a"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="tier in (db, web),env") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="spec.nodeName=node-2") == ["b"]
    assert names(field_selector="spec.nodeName=") == ["c"]
    assert names(field_selector="metadata.name!=a,status.phase=Pending") == ["b", "c"]
    status, body = error_of(lambda: core.list_namespaced_pod(ns, field_selector="spec.bogus=1"))
    assert status == 400
    assert body["message"] == "field label not supported: spec.bogus"
    across = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert len(across.items) == 3


def test_limit_and_continue_paging(core: client.CoreV1Api, ns: str) -> None:
    for index in range(25):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{index:02d}"}})
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=10, _continue=token)
        pages += 1
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert seen == [f"cm-{index:02d}" for index in range(25)]


def test_later_pages_show_the_first_pages_snapshot(core: client.CoreV1Api, ns: str) -> None:
    for index in range(6):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{index}"}})
    first = core.list_namespaced_config_map(ns, limit=2)
    snapshot = first.metadata.resource_version
    core.delete_namespaced_config_map("cm-3", ns)
    core.patch_namespaced_config_map("cm-4", ns, {"data": {"changed": "yes"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm-5a"}})
    rest = core.list_namespaced_config_map(ns, _continue=first.metadata._continue)
    assert rest.metadata.resource_version == snapshot
    assert [(c.metadata.name, c.data) for c in rest.items] == [
        ("cm-2", None),
        ("cm-3", None),
        ("cm-4", None),
        ("cm-5", None),
    ]
    assert all(int(c.metadata.resource_version) <= int(snapshot) for c in rest.items)


def test_expired_continue_token_is_gone(tmp_path: Path) -> None:
    small = RunningServer(tmp_path, watch_history=5)
    try:
        core = client.CoreV1Api(small.api())
        for index in range(3):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})
        first = core.list_namespaced_config_map("default", limit=1)
        for index in range(6):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"late{index}"}})
        status, body = error_of(
            lambda: core.list_namespaced_config_map("default", _continue=first.metadata._continue)
        )
        assert (status, body) == (
            410,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": CONTINUE_EXPIRED,
                "reason": "Expired",
                "code": 410,
            },
        )
    finally:
        small.close()


# ---- watch


def test_watch_events_resume_and_bookmarks(core: client.CoreV1Api, ns: str) -> None:
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w", "labels": {"k": "v"}}})
    core.patch_namespaced_config_map("w", ns, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w", ns)
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=start,
        timeout_seconds=1,
        allow_watch_bookmarks=True,
        _preload_content=False,
    )
    events = [(event["type"], event["raw_object"]["metadata"].get("name")) for event in stream]
    assert events[:3] == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert ("BOOKMARK", None) in events[3:]


def test_watch_selector_transitions(core: client.CoreV1Api, ns: str) -> None:
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "s"}})
    core.patch_namespaced_config_map("s", ns, {"metadata": {"labels": {"pick": "me"}}})
    core.patch_namespaced_config_map("s", ns, {"metadata": {"labels": {"pick": None}}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="pick=me",
        resource_version=start,
        timeout_seconds=1,
    )
    assert [event["type"] for event in stream] == ["ADDED", "DELETED"]


def test_watch_too_old_resource_version_is_gone(tmp_path: Path) -> None:
    small = RunningServer(tmp_path, watch_history=5)
    try:
        core = client.CoreV1Api(small.api())
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for index in range(10):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})
        response = core.list_namespaced_config_map(
            "default", watch=True, resource_version=start, _preload_content=False
        )
        lines = [json.loads(line) for line in response.read().splitlines()]
        assert lines[0]["type"] == "ERROR"
        assert lines[0]["object"]["code"] == 410
        assert lines[0]["object"]["reason"] == "Expired"
        assert lines[0]["object"]["message"] == WATCH_EXPIRED
        with pytest.raises(client.ApiException) as caught:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=start
            ):
                pass
        assert caught.value.status == 410
    finally:
        small.close()


# ---- server-side printing

TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def test_tables_honour_include_object(twin: RunningServer, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    path = f"/api/v1/namespaces/{ns}/configmaps"
    accept = {"Accept": TABLE_ACCEPT}
    table = raw_request(twin, "GET", path, accept).json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    row = table["rows"][0]
    assert row["cells"][:2] == ["cm", 1]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "cm"
    whole = raw_request(twin, "GET", path + "?includeObject=Object", accept).json()
    assert whole["rows"][0]["object"]["data"] == {"a": "1"}
    bare = raw_request(twin, "GET", path + "/cm?includeObject=None", accept).json()
    assert bare["rows"] == [{"cells": bare["rows"][0]["cells"], "object": None}]
    assert (
        bare["metadata"]["resourceVersion"]
        == whole["rows"][0]["object"]["metadata"]["resourceVersion"]
    )
    plain = raw_request(twin, "GET", path, {"Accept": "application/json"}).json()
    assert plain["kind"] == "ConfigMapList"
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "data": {"k": "dg=="}})
    secrets = raw_request(twin, "GET", f"/api/v1/namespaces/{ns}/secrets", accept).json()
    assert [c["name"] for c in secrets["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert secrets["rows"][0]["cells"][:3] == ["s", "Opaque", 1]


def test_pod_rows_show_status_and_restarts_as_kubectl_does(
    twin: RunningServer, core: client.CoreV1Api, ns: str
) -> None:
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 750))
    crashing = {
        "name": "main",
        "ready": False,
        "restartCount": 3,
        "image": "busybox:1.36",
        "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": finished}},
    }
    core.create_namespaced_pod(ns, pod_body("crashy", "node-1"))
    core.patch_namespaced_pod_status(
        "crashy",
        ns,
        {"status": {"phase": "Running", "containerStatuses": [crashing]}},
        _preload_content=False,
    )
    core.create_namespaced_pod(ns, pod_body("leaving", "node-1"))
    core.delete_namespaced_pod("leaving", ns)
    table = raw_request(
        twin, "GET", f"/api/v1/namespaces/{ns}/pods", {"Accept": TABLE_ACCEPT}
    ).json()
    rows = {row["cells"][0]: row["cells"][:4] for row in table["rows"]}
    assert rows == {
        "crashy": ["crashy", "0/1", "CrashLoopBackOff", "3 (12m ago)"],
        "leaving": ["leaving", "0/1", "Terminating", "0"],
    }


def test_watch_prints_rows_when_asked_for_tables(
    twin: RunningServer, core: client.CoreV1Api, ns: str
) -> None:
    start = core.list_namespaced_pod(ns).metadata.resource_version
    core.create_namespaced_pod(ns, pod_body("watched", "node-3"))
    response = raw_request(
        twin,
        "GET",
        f"/api/v1/namespaces/{ns}/pods?watch=1&timeoutSeconds=1&resourceVersion={start}",
        {"Accept": TABLE_ACCEPT},
    )
    event = json.loads(response.data.splitlines()[0])
    assert (event["type"], event["object"]["kind"]) == ("ADDED", "Table")
    cells = event["object"]["rows"][0]["cells"]
    assert (cells[:3], cells[6]) == (["watched", "0/1", "Pending"], "node-3")


# ---- patches, status, scale, generation


def test_merge_strategic_and_json_patches(twin: RunningServer, ns: str) -> None:
    apps = client.AppsV1Api(twin.api())
    containers = [{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "d", "labels": {"keep": "1"}},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": containers},
                },
            },
        },
    )
    patched = apps.patch_namespaced_deployment(
        "d",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:2"}]}}}},
    )
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == [
        ("app", "app:1"),
        ("side", "side:2"),
    ]
    assert patched.metadata.generation == 2
    relabelled = apps.patch_namespaced_deployment("d", ns, {"metadata": {"labels": {"new": "x"}}})
    assert relabelled.metadata.labels == {"keep": "1", "new": "x"}
    assert relabelled.metadata.generation == 2

    merged = apps.patch_namespaced_deployment(
        "d",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["only"]
    replaced = apps.patch_namespaced_deployment(
        "d", ns, [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    )
    assert replaced.spec.replicas == 4
    status, body = error_of(
        lambda: apps.patch_namespaced_deployment(
            "d", ns, [{"op": "test", "path": "/spec/replicas", "value": 5}]
        )
    )
    assert (status, body["reason"]) == (422, "Invalid")


def test_node_taints_are_replaced_and_status_conditions_merge_by_key(
    core: client.CoreV1Api,
) -> None:
    """Taints carry no patch strategy, so a strategic patch replaces the list (as recorded from
    kube-apiserver in tests/apiserver_corpus); conditions merge by type."""
    core.create_node(
        {
            "metadata": {"name": "patch-node"},
            "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }
    )
    core.patch_node("patch-node", {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}})
    core.patch_node_status(
        "patch-node",
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "MemoryPressure", "status": "False"},
                ]
            }
        },
    )
    node = core.read_node("patch-node")
    assert [t.key for t in node.spec.taints] == ["b"]
    assert [(c.type, c.status) for c in node.status.conditions] == [
        ("Ready", "True"),
        ("MemoryPressure", "False"),
    ]
    core.delete_node("patch-node")


def test_status_subresource_isolation_and_scale(twin: RunningServer, ns: str) -> None:
    apps = client.AppsV1Api(twin.api())
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "s"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "s"}},
                "template": {
                    "metadata": {"labels": {"app": "s"}},
                    "spec": {"containers": [{"name": "c", "image": "c:1"}]},
                },
            },
        },
    )
    status_patch = {"status": {"replicas": 2, "observedGeneration": 1}, "spec": {"replicas": 9}}
    after = apps.patch_namespaced_deployment_status("s", ns, status_patch)
    assert (after.spec.replicas, after.status.replicas) == (2, 2)
    main_patch = {"status": {"replicas": 7}}
    after = apps.patch_namespaced_deployment("s", ns, main_patch)
    assert after.status.replicas == 2
    assert after.spec.strategy.rolling_update.max_surge == "25%"
    assert after.spec.revision_history_limit == 10
    assert after.spec.progress_deadline_seconds == 600

    scale = apps.read_namespaced_deployment_scale("s", ns)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=s")
    scaled = apps.patch_namespaced_deployment_scale("s", ns, {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    deployment = apps.read_namespaced_deployment("s", ns)
    assert (deployment.spec.replicas, deployment.metadata.generation) == (5, 2)


def test_binding_sets_node_once(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod_body("bind-me"))
    target = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bind-me"}}
    target["target"] = {"kind": "Node", "name": "node-7"}
    core.create_namespaced_binding(ns, target, _preload_content=False)
    pod = core.read_namespaced_pod("bind-me", ns)
    assert pod.spec.node_name == "node-7"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    status, body = error_of(
        lambda: core.create_namespaced_binding(ns, target, _preload_content=False)
    )
    assert status == 409
    assert body["reason"] == "Conflict"


# ---- deletion


def test_graceful_pod_deletion_and_finalizers(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod_body("unbound"))
    core.delete_namespaced_pod("unbound", ns)
    assert error_of(lambda: core.read_namespaced_pod("unbound", ns))[0] == 404

    core.create_namespaced_pod(ns, pod_body("bound", "node-1"))
    deleting = core.delete_namespaced_pod("bound", ns)
    assert deleting.metadata.deletion_timestamp is not None
    assert deleting.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("bound", ns).metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    assert error_of(lambda: core.read_namespaced_pod("bound", ns))[0] == 404

    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    core.delete_namespaced_config_map("held", ns)
    held = core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    assert error_of(lambda: core.read_namespaced_config_map("held", ns))[0] == 404


def test_typed_deletes_decode_the_real_answers(twin: RunningServer, ns: str) -> None:
    core = client.CoreV1Api(twin.api())
    apps = client.AppsV1Api(twin.api())
    core.create_namespaced_service(
        ns, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    service = core.delete_namespaced_service("svc", ns)
    assert isinstance(service, client.V1Service)
    assert (service.metadata.name, service.spec.ports[0].port) == ("svc", 80)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    assert core.delete_namespaced_service_account("robot", ns).metadata.name == "robot"

    core.create_namespaced_pod(ns, pod_body("gone-now"))
    pod = core.delete_namespaced_pod("gone-now", ns)
    assert isinstance(pod, client.V1Pod)
    assert pod.metadata.name == "gone-now"
    core.create_namespaced_pod(ns, pod_body("pending", "node-1"))
    pending, code, _ = core.delete_namespaced_pod_with_http_info(
        "pending", ns, orphan_dependents=False
    )
    assert (code, pending.metadata.deletion_timestamp is not None) == (202, True)
    core.create_namespaced_pod(ns, pod_body("graceful", "node-1"))
    graceful, code, _ = core.delete_namespaced_pod_with_http_info("graceful", ns)
    assert (code, graceful.metadata.deletion_grace_period_seconds) == (200, 30)

    config = core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    assert core.delete_namespaced_config_map("cm", ns) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "cm", "kind": "configmaps", "uid": config.metadata.uid},
    }
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": pod_body("", labels={"app": "d"}),
            },
        },
    )
    status = apps.delete_namespaced_deployment("d", ns)
    assert (status["status"], status["details"]["group"]) == ("Success", "apps")


def test_delete_collection_answers_the_list_it_deleted(twin: RunningServer, ns: str) -> None:
    core = client.CoreV1Api(twin.api())
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        core.create_namespaced_pod(ns, pod_body(name, labels={"tier": tier}))
    answer = core.delete_collection_namespaced_pod(ns, label_selector="tier=web")
    assert isinstance(answer, client.V1Status)
    assert answer.kind == "PodList"
    raw = core.delete_collection_namespaced_pod(
        ns, label_selector="tier=db", _preload_content=False
    )
    body = json.loads(raw.data)
    assert (body["kind"], [p["metadata"]["name"] for p in body["items"]]) == ("PodList", ["c"])
    assert core.list_namespaced_pod(ns).items == []
    core.create_namespaced_pod(ns, pod_body("survivor"))
    for everything in ("/api/v1/namespaces", "/api/v1/pods"):
        refused = raw_request(twin, "DELETE", everything)
        assert (refused.status, refused.json()["reason"]) == (405, "MethodNotAllowed")
    assert core.read_namespaced_pod("survivor", ns).metadata.deletion_timestamp is None


def test_namespace_delete_then_conflict_while_terminating(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "twice"}})
    # Content with a finalizer holds the namespace in Terminating until the test lets it go;
    # an empty one may be purged before the second delete arrives.
    held = {"metadata": {"name": "held", "finalizers": ["clustergate.io/test-hold"]}}
    core.create_namespaced_config_map("twice", held)
    first = core.delete_namespace("twice")
    assert first["status"]["phase"] == "Terminating"
    status, body = error_of(lambda: core.delete_namespace("twice"))
    core.patch_namespaced_config_map("held", "twice", {"metadata": {"finalizers": None}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on namespaces "twice": The system is ensuring all content '
        "is removed from this namespace.  Upon completion, this namespace will automatically be "
        "purged by the system."
    )


def test_namespace_termination_deletes_contents(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    default_account(core, "doomed")
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}})
    core.create_namespaced_pod("doomed", pod_body("p"))
    core.delete_namespace("doomed")
    phase = core.read_namespace("doomed").status.phase
    status, body = error_of(
        lambda: core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    )
    assert (phase, status) == ("Terminating", 403)
    assert "because it is being terminated" in body["message"]

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for("namespace doomed to be deleted", gone)


# ---- eviction


def _ready_pod(core: client.CoreV1Api, ns: str, name: str, labels: dict[str, str]) -> None:
    core.create_namespaced_pod(ns, pod_body(name, "node-1", labels))
    core.patch_namespaced_pod_status(
        name,
        ns,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )


def _budget(twin: RunningServer, ns: str, name: str, allowed: int, **spec: Any) -> None:
    policy = client.PolicyV1Api(twin.api())
    policy.create_namespaced_pod_disruption_budget(
        ns,
        {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "e"}}, **spec}},
    )
    status = {
        "observedGeneration": 1,
        "currentHealthy": 2,
        "desiredHealthy": 2 - allowed if allowed <= 2 else 0,
        "disruptionsAllowed": allowed,
        "expectedPods": 2,
    }
    policy.patch_namespaced_pod_disruption_budget_status(name, ns, {"status": status})


def _evict(core: client.CoreV1Api, ns: str, name: str) -> tuple[int, dict[str, Any]]:
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    }
    try:
        response = core.create_namespaced_pod_eviction(name, ns, body, _preload_content=False)
    except client.ApiException as error:
        return error.status, json.loads(error.body)
    return response.status, json.loads(response.data)


def test_eviction_respects_budget(twin: RunningServer, core: client.CoreV1Api, ns: str) -> None:
    _ready_pod(core, ns, "e1", {"app": "e"})
    _ready_pod(core, ns, "e2", {"app": "e"})
    _budget(twin, ns, "pdb-e", allowed=1, minAvailable=1)

    status, body = _evict(core, ns, "e1")
    assert (status, body["status"]) == (201, "Success")
    pdb = client.PolicyV1Api(twin.api()).read_namespaced_pod_disruption_budget("pdb-e", ns)
    assert pdb.status.disruptions_allowed == 0
    assert "e1" in pdb.status.disrupted_pods

    status, body = _evict(core, ns, "e2")
    assert status == 429
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget pdb-e needs 1 healthy pods and has 2 currently",
        }
    ]
    assert core.read_namespaced_pod("e2", ns).metadata.deletion_timestamp is None
    assert _evict(core, ns, "missing")[0] == 404


def test_eviction_special_cases(twin: RunningServer, core: client.CoreV1Api, ns: str) -> None:
    policy = client.PolicyV1Api(twin.api())
    _ready_pod(core, ns, "e1", {"app": "e"})
    _budget(twin, ns, "stale", allowed=1)
    policy.patch_namespaced_pod_disruption_budget("stale", ns, {"spec": {"minAvailable": 1}})
    status, body = _evict(core, ns, "e1")
    assert (status, body["details"]["causes"][0]["message"]) == (
        429,
        "The disruption budget stale is still being processed by the server.",
    )
    _budget(twin, ns, "second", allowed=1)
    status, body = _evict(core, ns, "e1")
    assert status == 500
    assert body["message"].endswith(
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does "
        "not support."
    )
    core.create_namespaced_pod(ns, pod_body("pending", "", {"app": "e"}))
    assert _evict(core, ns, "pending")[0] == 201
    assert error_of(lambda: core.read_namespaced_pod("pending", ns))[0] == 404


def test_unhealthy_pod_eviction_policy_always_allow(
    twin: RunningServer, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod_body("sick", "node-1", {"app": "e"}))
    core.patch_namespaced_pod_status("sick", ns, {"status": {"phase": "Running"}})
    _budget(twin, ns, "pdb", allowed=0, unhealthyPodEvictionPolicy="AlwaysAllow")
    assert _evict(core, ns, "sick")[0] == 201


def test_fault_eviction_ignores_pdb(tmp_path: Path) -> None:
    faulty = RunningServer(tmp_path, faults={"eviction-ignores-pdb"})
    try:
        core = client.CoreV1Api(faulty.api())
        _ready_pod(core, "default", "e1", {"app": "e"})
        _budget(faulty, "default", "pdb", allowed=0)
        assert _evict(core, "default", "e1")[0] == 201
    finally:
        faulty.close()


# ---- service-account tokens and OIDC discovery


def _fetch_json(twin: RunningServer, url: str) -> dict[str, Any]:
    local = twin.netmap.resolve_url(url)
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path)
    response = http.request("GET", local)
    assert response.status == 200, (url, local, response.data)
    return json.loads(response.data)


def test_token_request_claims_verify_against_discovered_jwks(
    twin: RunningServer, core: client.CoreV1Api, ns: str
) -> None:
    issuer = twin.server.issuer
    assert issuer.startswith(f"https://oidc.eks.{twin.settings.network.region}.amazonaws.com/id/")
    assert len(issuer.rsplit("/", 1)[1]) == 32
    discovery = _fetch_json(twin, f"{issuer}/.well-known/openid-configuration")
    assert discovery["issuer"] == issuer
    assert discovery["response_types_supported"] == ["id_token"]
    assert discovery["subject_types_supported"] == ["public"]
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    jwks = _fetch_json(twin, discovery["jwks_uri"])

    account = core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
    pod = core.create_namespaced_pod(ns, pod_body("holder"))
    request = {
        "spec": {
            "audiences": ["sts.amazonaws.com"],
            "expirationSeconds": 900,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "holder"},
        }
    }
    answer = core.create_namespaced_service_account_token("app", ns, request)
    token = answer.status.token
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="sts.amazonaws.com",
        issuer=issuer,
    )
    assert claims["sub"] == f"system:serviceaccount:{ns}:app"
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"]["namespace"] == ns
    assert claims["kubernetes.io"]["pod"] == {"name": "holder", "uid": pod.metadata.uid}
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "app", "uid": account.metadata.uid}

    status, _ = error_of(
        lambda: core.create_namespaced_service_account_token(
            "app", ns, {"spec": {"expirationSeconds": 60}}
        )
    )
    assert status == 422
    missing_pod = {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}}}
    assert (
        error_of(lambda: core.create_namespaced_service_account_token("app", ns, missing_pod))[0]
        == 404
    )


# ---- authentication and authorization


def _outcome(twin: RunningServer, path: str, token: str | None = None) -> str:
    try:
        response = raw_request(twin, "GET", path, token=token)
    except urllib3.exceptions.HTTPError:
        return "drop"
    if response.status == 429:
        assert response.headers["Retry-After"] == "1"
        assert response.json()["reason"] == "TooManyRequests"
    if response.status == 500:
        assert response.json()["reason"] == "InternalError"
    return str(response.status)


def test_api_faults_fail_a_seeded_share_of_token_requests(tmp_path: Path) -> None:
    faulty = RunningServer(tmp_path, api_fault_rate=0.5, fault_seed=7)
    try:
        outcomes = [_outcome(faulty, "/api/v1/namespaces") for _ in range(60)]
        expected = ApiFaults(0.5, 7)
        assert outcomes == [expected.draw() or "200" for _ in range(60)]
        assert {"200", "429", "500", "drop"} == set(outcomes)
        counts = faulty.server.request_counts()
        injected = {kind: counts[("fault", kind)] for kind in ("429", "500", "drop")}
        assert injected == {kind: outcomes.count(kind) for kind in ("429", "500", "drop")}
        assert counts[("list", "namespaces")] == outcomes.count("200")
        issuer_path = faulty.server.issuer_keys.path
        for document in (
            "/.well-known/openid-configuration",
            "/openid/v1/jwks",
            f"{issuer_path}/.well-known/openid-configuration",
            f"{issuer_path}/keys",
        ):
            assert [_outcome(faulty, document) for _ in range(10)] == ["200"] * 10
        assert [_outcome(faulty, "/version", token="") for _ in range(10)] == ["200"] * 10
        internal = faulty.server.internal_token
        assert [_outcome(faulty, "/api/v1/nodes", internal) for _ in range(10)] == ["200"] * 10
        after = faulty.server.request_counts()
        assert {kind: after[("fault", kind)] for kind in injected} == injected
    finally:
        faulty.close()


def test_unknown_token_is_unauthorized(twin: RunningServer) -> None:
    core = client.CoreV1Api(twin.api(token="not-a-token"))
    status, body = error_of(lambda: core.list_namespace())
    assert (status, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")


def test_access_reviews_and_forbidden(twin: RunningServer, ns: str) -> None:
    """Permissions come from Role/ClusterRole bindings in the store, as with RBAC."""
    twin.server.add_token("viewer-token", "viewer", ["viewers"])
    rbac = client.RbacAuthorizationV1Api(twin.api())
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "viewer", "apiGroup": RBAC_GROUP}],
        },
    )
    evictor = {
        "metadata": {"name": f"evictor-{ns}"},
        "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["*/eviction"]}],
    }
    rbac.create_cluster_role(evictor)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"evictor-{ns}"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": f"evictor-{ns}"},
            "subjects": [{"kind": "Group", "name": "viewers", "apiGroup": RBAC_GROUP}],
        }
    )
    viewer = twin.api("viewer-token")
    authz = client.AuthorizationV1Api(viewer)

    def can(verb: str, resource: str, subresource: str = "", namespace: str = ns) -> bool:
        review = {
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "subresource": subresource,
                    "namespace": namespace,
                }
            }
        }
        answer = authz.create_self_subject_access_review(review)
        if answer.status.allowed:
            assert answer.status.reason.startswith("RBAC: allowed by ")
        return answer.status.allowed

    assert can("list", "pods")
    assert not can("list", "pods", namespace="default")
    assert not can("delete", "pods")
    assert can("create", "pods", "eviction", "default")
    admin = client.AuthorizationV1Api(twin.api())
    review = {"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}
    assert admin.create_self_subject_access_review(review).status.allowed

    core = client.CoreV1Api(viewer)
    assert core.list_namespaced_pod(ns).items == []
    status, body = error_of(lambda: core.list_namespaced_pod("default"))
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods is forbidden: User "viewer" cannot list resource "pods" in API group "" in the '
        'namespace "default"'
    )
    status, body = error_of(lambda: core.delete_namespaced_pod("x", ns))
    assert body["message"] == (
        f'pods "x" is forbidden: User "viewer" cannot delete resource "pods" in API group "" '
        f'in the namespace "{ns}"'
    )
    status, body = error_of(lambda: core.list_node())
    assert body["message"].endswith(
        'cannot list resource "nodes" in API group "" at the cluster scope'
    )
    rules = authz.create_self_subject_rules_review({"spec": {"namespace": ns}})
    assert {"pods", "*/eviction"} <= {
        r for rule in rules.status.resource_rules for r in rule.resources
    }
    elsewhere = authz.create_self_subject_rules_review({"spec": {"namespace": "default"}})
    assert "pods" not in {r for rule in elsewhere.status.resource_rules for r in rule.resources}


def test_request_counts(twin: RunningServer, core: client.CoreV1Api) -> None:
    before = twin.server.request_counts().get(("list", "nodes"), 0)
    core.list_node()
    assert twin.server.request_counts()[("list", "nodes")] == before + 1


def test_ca_written_under_state_dir(twin: RunningServer) -> None:
    ca = Path(twin.server.ca_pem_path)
    assert ca.is_relative_to(twin.settings.state_dir)
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_kubernetes_config_loader_works(twin: RunningServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(twin))
    api = kubernetes.config.new_client_from_config(str(kubeconfig))
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith(f"v{twin.settings.network.kubernetes_version}.")


def kubeconfig_text(twin: RunningServer) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: twin\n  cluster:\n    server: {twin.server.url}\n"
        f"    certificate-authority: {twin.server.ca_pem_path}\n"
        f"users:\n- name: admin\n  user:\n    token: {twin.server.admin_token}\n"
        "contexts:\n- name: twin\n  context:\n    cluster: twin\n    user: admin\n"
        "current-context: twin\n"
    )
