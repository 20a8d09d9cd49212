"""OpenAPI v3 documents of the served operations, as far as kubectl reads them.

kubectl create/apply look up the PATCH operation of a kind (by its
``x-kubernetes-group-version-kind``) to learn whether the server validates fields itself
(``fieldValidation`` query parameter); when it does, kubectl leaves validation to the server
and needs no schemas. Strategic merge patches are computed by kubectl from its built-in types.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from clustergate.twin.apiserver.resources import GroupVersion, ResourceType, group_versions

Obj = dict[str, Any]
_QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(rt: ResourceType, action: str, body_types: tuple[str, ...] = ()) -> Obj:
    parameters = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in _QUERY_PARAMETERS
    ]
    operation: Obj = {
        "operationId": f"{action}{rt.kind}",
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
    }
    if body_types:
        operation["requestBody"] = {
            "content": {t: {"schema": {"type": "object"}} for t in body_types}
        }
    return operation


def _paths(rt: ResourceType) -> Obj:
    prefix = "/" + _gv_path(rt.group, rt.version)
    if rt.namespaced:
        prefix += "/namespaces/{namespace}"
    collection = f"{prefix}/{rt.plural}"
    # Strategic merge is left out of the advertised PATCH bodies on purpose: kubectl then builds
    # strategic patches from its compiled-in types instead of from schemas the twin does not carry.
    patch_types = tuple(t for t in _PATCH_TYPES if "strategic" not in t)
    return {
        collection: {"post": _operation(rt, "post", ("application/json",))},
        f"{collection}/{{name}}": {
            "get": _operation(rt, "get"),
            "put": _operation(rt, "put", ("application/json",)),
            "patch": _operation(rt, "patch", patch_types),
        },
    }


def documents(
    kubernetes_version: str, served: list[GroupVersion] | None = None
) -> dict[str, bytes]:
    """Group-version path (``apis/apps/v1``) → encoded OpenAPI v3 document."""
    return _documents(kubernetes_version, tuple(served or group_versions()))


def _custom_schemas(gv: GroupVersion) -> Obj:
    """A custom resource's schema under the name apiextensions gives it
    (``com.example.v1.Widget``), which kubectl explain finds by its group-version-kind."""
    schemas = {}
    for rt in gv.resources:
        if rt.schema is not None:
            name = ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])
            gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
            schemas[name] = {**rt.schema, "x-kubernetes-group-version-kind": [gvk]}
    return schemas


@lru_cache(maxsize=32)
def _documents(kubernetes_version: str, served: tuple[GroupVersion, ...]) -> dict[str, bytes]:
    docs = {}
    for gv in served:
        paths: Obj = {}
        for rt in gv.resources:
            paths.update(_paths(rt))
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": f"v{kubernetes_version}"},
            "paths": paths,
            "components": {"schemas": _custom_schemas(gv)},
        }
        docs[_gv_path(gv.group, gv.version)] = orjson.dumps(doc)
    return docs


def root(kubernetes_version: str, served: list[GroupVersion] | None = None) -> Obj:
    paths = {}
    for path, body in documents(kubernetes_version, served).items():
        digest = hashlib.sha512(body).hexdigest().upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
