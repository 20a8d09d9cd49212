"""Server-side apply's tables and set arithmetic, as input/output pairs.

The end-to-end behaviour (conflict answers, managedFields after each write) is checked against
the real kube-apiserver by the corpus cases server_side_apply*; these pairs pin the pieces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client

from clustergate.twin.apiserver import errors, field_manager
from clustergate.twin.apiserver.list_types import BuiltinShape, SchemaShape
from tests.twin.test_apiserver import RunningServer

SHAPE = BuiltinShape()

#: (list field, its items) → the item keys (None: atomic, (): a set).
LIST_TYPES = [
    ("containers", [{"name": "a"}], ("name",)),
    ("env", [{"name": "A"}], ("name",)),
    ("volumeMounts", [{"mountPath": "/x"}], ("mountPath",)),
    ("ports", [{"containerPort": 80}], ("containerPort", "protocol")),
    ("ports", [{"port": 80}], ("port", "protocol")),
    ("finalizers", ["a"], ()),
    ("args", ["a"], None),
    ("tolerations", [{"key": "a"}], None),
]


@pytest.mark.parametrize(("field", "items", "keys"), LIST_TYPES)
def test_builtin_list_types(field: str, items: list[Any], keys: tuple[str, ...] | None) -> None:
    assert BuiltinShape(field).list_keys(items) == keys


def test_schema_list_types() -> None:
    schema = {
        "properties": {
            "rules": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["id"],
            },
            "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            "args": {"type": "array"},
        }
    }
    shape = SchemaShape(schema)
    assert shape.child("rules").list_keys([]) == ("id",)
    assert shape.child("tags").list_keys([]) == ()
    assert shape.child("args").list_keys([]) is None


APPLIED = [
    ({"data": {"a": "1"}}, {"f:data": {"f:a": {}}}),
    ({"metadata": {"name": "x", "labels": {"l": "1"}}}, {"f:metadata": {"f:labels": {"f:l": {}}}}),
    ({"data": {}}, {"f:data": {}}),
    (
        {"spec": {"selector": {"matchLabels": {"a": "b"}}, "finalizers": ["x"]}},
        {"f:spec": {"f:finalizers": {'v:"x"': {}}, "f:selector": {}}},
    ),
    (
        {"spec": {"containers": [{"name": "app", "image": "i", "args": ["a"]}]}},
        {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"app"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}
                }
            }
        },
    ),
]


@pytest.mark.parametrize(("config", "fields_v1"), APPLIED)
def test_an_applier_owns_what_it_applied(config: dict[str, Any], fields_v1: Any) -> None:
    owned = field_manager.applied_set({"apiVersion": "v1", "kind": "X", **config}, SHAPE)
    assert field_manager.encode(owned) == fields_v1
    assert field_manager.decode(fields_v1) == owned


def test_a_create_owns_the_maps_it_added() -> None:
    new = {"metadata": {"name": "c", "labels": {"l": "1"}}, "data": {"k": "v"}}
    fields = field_manager.changed({"metadata": {}}, new, SHAPE)
    assert field_manager.encode(fields) == {
        "f:data": {".": {}, "f:k": {}},
        "f:metadata": {"f:labels": {".": {}, "f:l": {}}},
    }


PATHS = [
    (("f:data", "f:a"), ".data.a"),
    (
        ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image"),
        '.spec.containers[name="app"].image',
    ),
    (
        ("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'),
        '.ports[containerPort=80,protocol="TCP"]',
    ),
    (("f:finalizers", 'v:"x"'), '.finalizers[="x"]'),
]


@pytest.mark.parametrize(("path", "text"), PATHS)
def test_conflicts_name_paths_as_upstream(path: tuple[str, ...], text: str) -> None:
    assert field_manager.path_string(path) == text


def test_map_lists_merge_by_key_and_atomic_lists_are_replaced() -> None:
    live = {
        "containers": [{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "1"}],
    }
    config = {"containers": [{"name": "a", "image": "2", "args": ["y"]}, {"name": "c"}]}
    assert field_manager.merge(live, config, SHAPE) == {
        "containers": [
            {"name": "a", "image": "2", "args": ["y"]},
            {"name": "b", "image": "1"},
            {"name": "c"},
        ]
    }


def _apply(live: Any, data: dict[str, str], manager: str, force: bool = False) -> Any:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}
    return field_manager.apply(live, config, manager, force, "v1", "2026-01-01T00:00:00Z")


def test_apply_conflicts_force_and_prune() -> None:
    first = _apply(None, {"a": "1", "b": "2"}, "alice")
    with pytest.raises(errors.ApiError) as refused:
        _apply(first, {"a": "9"}, "bob")
    assert refused.value.code == 409
    assert refused.value.message == 'Apply failed with 1 conflict: conflict with "alice": .data.a'
    forced = _apply(first, {"a": "9"}, "bob", force=True)
    assert forced["data"] == {"a": "9", "b": "2"}
    pruned = _apply(forced, {}, "alice")
    assert pruned["data"] == {"a": "9"}
    assert [m["manager"] for m in pruned["metadata"]["managedFields"]] == ["alice", "bob"]


def test_an_apply_patch_may_be_yaml(tmp_path: Path) -> None:
    """kubectl sends JSON (which is YAML); other appliers send YAML proper."""
    running = RunningServer(tmp_path)
    try:
        http = urllib3.PoolManager(ca_certs=running.server.ca_pem_path)
        manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: '1'\n"
        answer = http.request(
            "PATCH",
            f"{running.server.url}/api/v1/namespaces/default/configmaps/y?fieldManager=helm",
            body=manifest.encode(),
            headers={
                "Authorization": f"Bearer {running.server.admin_token}",
                "Content-Type": "application/apply-patch+yaml",
            },
        )
        assert answer.status == 201, answer.data
        made = json.loads(answer.data)
        assert made["data"] == {"a": "1"}
        assert [m["manager"] for m in made["metadata"]["managedFields"]] == ["helm"]
    finally:
        running.close()


def test_dry_run_patches_and_updates_keep_nothing(tmp_path: Path) -> None:
    running = RunningServer(tmp_path)
    try:
        core = client.CoreV1Api(running.api())
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "d"}, "data": {"a": "1"}}
        )
        answered = core.patch_namespaced_config_map(
            "d", "default", {"data": {"a": "2"}}, dry_run="All"
        )
        assert answered.data == {"a": "2"}
        replaced = core.read_namespaced_config_map("d", "default")
        replaced.data = {"a": "3"}
        core.replace_namespaced_config_map("d", "default", replaced, dry_run="All")
        assert core.read_namespaced_config_map("d", "default").data == {"a": "1"}
    finally:
        running.close()
