"""CustomResourceDefinitions in the twin's API server: the structural schema's pruning and
validation as input/output pairs, and a CRD's types watched and cleaned up like built-ins.

The answers' exact form (422 messages, discovery, status subresource, deletion) is checked
against the real kube-apiserver by the corpus case custom_resources.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from clustergate.twin.apiserver.json_path import value_at
from clustergate.twin.apiserver.structural_schema import (
    prune,
    structural_causes,
    unknown_fields,
    validate,
)
from tests.apiserver_corpus.cases import APPLY
from tests.apiserver_corpus.wire import Wire
from tests.twin.test_apiserver import RunningServer

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 1, "exclusiveMinimum": True, "minimum": 0},
                "port": {"x-kubernetes-int-or-string": True},
                "ratio": {"type": "number", "multipleOf": 0.5},
                "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "properties": {"id": {"type": "string"}}},
                },
            },
        }
    },
}

PRUNED = [
    ({"spec": {"size": 2, "x": 1}}, {"spec": {"size": 2}}),
    ({"spec": {}}, {"spec": {"size": 1}}),
    (
        {"spec": {"size": 2, "keep": {"a": {"b": 1}}}},
        {"spec": {"size": 2, "keep": {"a": {"b": 1}}}},
    ),
    (
        {"spec": {"size": 2, "items": [{"id": "a", "z": 0}]}},
        {"spec": {"size": 2, "items": [{"id": "a"}]}},
    ),
    ({"metadata": {"name": "n"}, "other": 1}, {"metadata": {"name": "n"}}),
]


@pytest.mark.parametrize(("given", "kept"), PRUNED)
def test_unknown_fields_are_pruned_and_defaults_set(given: Any, kept: Any) -> None:
    assert prune(given, SCHEMA) == kept


INVALID = [
    (
        {"spec": {"size": 0}},
        "spec.size: Invalid value: 0: spec.size in body should be greater than 0",
    ),
    (
        {"spec": {"port": True}},
        'spec.port: Invalid value: "boolean": spec.port in body must be of type ',
    ),
    (
        {"spec": {"ratio": 0.7}},
        "spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5",
    ),
    (
        {"spec": {"items": []}},
        "spec.items: Invalid value: 0: spec.items in body should have at least 1 items",
    ),
]


@pytest.mark.parametrize(("obj", "message"), INVALID)
def test_schema_violations_are_worded_as_upstream(obj: Any, message: str) -> None:
    causes = validate(obj, SCHEMA)
    assert len(causes) == 1, causes
    field, _, text = causes[0]
    assert f"{field}: {text}".startswith(message), causes


def test_valid_objects_have_no_causes() -> None:
    assert validate({"spec": {"size": 3, "port": "http", "ratio": 1.5}}, SCHEMA) == []


def test_an_untyped_property_is_not_structural() -> None:
    causes = structural_causes({"type": "object", "properties": {"a": {}}}, "s")
    assert causes == [
        (
            "s.properties[a].type",
            "FieldValueRequired",
            "Required value: must not be empty for specified object fields",
        )
    ]


def _crd(plural: str, kind: str, scope: str, schema: Any, **subresources: Any) -> Any:
    version = {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
    if subresources:
        version["subresources"] = subresources
    return {
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"plural": plural, "kind": kind},
            "versions": [version],
        },
    }


def _once_served(call: Any) -> Any:
    """``call()`` once the CRD's type is served (it is from when the CRD is Established)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return call()
        except client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("custom-resources"))
    yield running
    running.close()


def test_custom_objects_are_watched_and_go_with_their_namespace(twin: RunningServer) -> None:
    api = twin.api()
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        _crd("probes", "Probe", "Namespaced", SCHEMA)
    )
    custom = client.CustomObjectsApi(api)
    ns = twin.namespace("probes")
    _once_served(lambda: custom.list_namespaced_custom_object("example.com", "v1", ns, "probes"))
    seen: list[tuple[str, Any]] = []

    def watch_probes() -> None:
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            "example.com",
            "v1",
            ns,
            "probes",
            timeout_seconds=5,
        )
        for event in stream:
            seen.append((event["type"], event["object"]["spec"].get("size")))
            if len(seen) == 2:
                return

    watcher = threading.Thread(target=watch_probes)
    watcher.start()
    time.sleep(0.5)
    body = {"apiVersion": "example.com/v1", "kind": "Probe", "metadata": {"name": "p"}}
    custom.create_namespaced_custom_object("example.com", "v1", ns, "probes", {**body, "spec": {}})
    custom.patch_namespaced_custom_object(
        "example.com", "v1", ns, "probes", "p", {"spec": {"size": 4}}
    )
    watcher.join(timeout=10)
    assert seen == [("ADDED", 1), ("MODIFIED", 4)]

    client.CoreV1Api(api).delete_namespace(ns)
    deadline = time.monotonic() + 10
    while client.CoreV1Api(api).list_namespace(field_selector=f"metadata.name={ns}").items:
        assert time.monotonic() < deadline, f"namespace {ns} still there after 10 s"
        time.sleep(0.2)


def test_the_scale_subresource_reads_and_writes_the_crd_paths(twin: RunningServer) -> None:
    api = twin.api()
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"count": {"type": "integer"}}},
            "status": {
                "type": "object",
                "properties": {"count": {"type": "integer"}, "sel": {"type": "string"}},
            },
        },
    }
    scale = {
        "specReplicasPath": ".spec.count",
        "statusReplicasPath": ".status.count",
        "labelSelectorPath": ".status.sel",
    }
    crd = _crd("pools", "Pool", "Cluster", schema, status={}, scale=scale)
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": "example.com/v1", "kind": "Pool", "metadata": {"name": "p"}}
    _once_served(
        lambda: custom.create_cluster_custom_object(
            "example.com", "v1", "pools", {**body, "spec": {"count": 2}}
        )
    )
    custom.patch_cluster_custom_object_status(
        "example.com", "v1", "pools", "p", {"status": {"count": 2, "sel": "app=x"}}
    )
    got = custom.get_cluster_custom_object_scale("example.com", "v1", "pools", "p")
    assert got["spec"] == {"replicas": 2}
    assert got["status"] == {"replicas": 2, "selector": "app=x"}
    custom.patch_cluster_custom_object_scale(
        "example.com", "v1", "pools", "p", {"spec": {"replicas": 5}}
    )
    assert custom.get_cluster_custom_object("example.com", "v1", "pools", "p")["spec"] == {
        "count": 5
    }


def test_every_served_version_serves_the_same_objects(twin: RunningServer) -> None:
    api = twin.api()
    crd = _crd("things", "Thing", "Cluster", {"type": "object"})
    v1 = crd["spec"]["versions"][0]
    crd["spec"]["versions"] = [v1, {**v1, "name": "v2", "storage": False}]
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    _once_served(lambda: custom.create_cluster_custom_object("example.com", "v1", "things", body))
    got = _once_served(lambda: custom.get_cluster_custom_object("example.com", "v2", "things", "t"))
    assert got["apiVersion"] == "example.com/v2"
    listed = custom.list_cluster_custom_object("example.com", "v2", "things")
    assert [item["apiVersion"] for item in listed["items"]] == ["example.com/v2"]


JSON_PATHS = [
    (".spec.size", 3),
    (".spec.missing", None),
    (".status.conditions[0].type", "Ready"),
    ('.status.conditions[?(@.type=="Ready")].status', "True"),
    (".status.conditions[?(@.type=='Gone')].status", None),
]


@pytest.mark.parametrize(("path", "value"), JSON_PATHS)
def test_crd_json_paths(path: str, value: Any) -> None:
    obj = {"spec": {"size": 3}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert value_at(obj, path) == value


def test_status_is_applied_through_its_subresource_only(twin: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    }
    crd = _crd("gauges", "Gauge", "Namespaced", schema, status={})
    client.ApiextensionsV1Api(twin.api()).create_custom_resource_definition(crd)
    wire = Wire(twin.server.url, twin.server.ca_pem_path, twin.server.admin_token, lambda: None)
    ns = twin.namespace("gauges")
    path = f"/apis/example.com/v1/namespaces/{ns}/gauges/g"
    body = {"apiVersion": "example.com/v1", "kind": "Gauge", "metadata": {"name": "g"}}
    deadline = time.monotonic() + 10
    while (
        made := wire.send(
            "PATCH",
            f"{path}?fieldManager=op",
            {**body, "spec": {"size": 1}, "status": {"ready": True}},
            content_type=APPLY,
        )
    ).status == 404:
        assert time.monotonic() < deadline, made.body
        time.sleep(0.1)
    assert made.status == 201, made.body
    assert made.field("status") is None, "the main resource ignores status"
    status_body = {**body, "spec": {"size": 9}, "status": {"ready": True}}
    written = wire.send("PATCH", f"{path}/status?fieldManager=ctl", status_body, content_type=APPLY)
    assert written.status == 200, written.body
    assert written.field("spec") == {"size": 1}, "the status subresource ignores spec"
    assert written.field("status") == {"ready": True}
    entries = {
        (m["manager"], m.get("subresource", "")) for m in written.field("metadata", "managedFields")
    }
    assert entries == {("op", ""), ("ctl", "status")}


UNKNOWN = [
    ({"spec": {"size": 2}}, []),
    ({"spec": {"x": 1, "keep": {"any": 1}}, "top": 1}, ["spec.x", "top"]),
    ({"spec": {"items": [{"id": "a"}, {"id": "b", "z": 0}]}}, ["spec.items[1].z"]),
    ({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}}, []),
]


@pytest.mark.parametrize(("obj", "paths"), UNKNOWN)
def test_unknown_fields_are_named_as_the_strict_decoder_names_them(
    obj: Any, paths: list[str]
) -> None:
    assert unknown_fields(obj, SCHEMA) == paths


def test_unknown_fields_are_warned_of_by_default(twin: RunningServer) -> None:
    crd = _crd("flags", "Flag", "Cluster", SCHEMA)
    client.ApiextensionsV1Api(twin.api()).create_custom_resource_definition(crd)
    http = urllib3.PoolManager(ca_certs=twin.server.ca_pem_path)
    body = {"apiVersion": "example.com/v1", "kind": "Flag", "metadata": {"name": "f"}, "x": 1}
    custom = client.CustomObjectsApi(twin.api())
    _once_served(lambda: custom.list_cluster_custom_object("example.com", "v1", "flags"))
    answer = http.request(
        "POST",
        f"{twin.server.url}/apis/example.com/v1/flags",
        body=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {twin.server.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert answer.status == 201, answer.data
    assert answer.headers.get("Warning") == '299 - "unknown field \\"x\\""'
    assert "x" not in json.loads(answer.data)
