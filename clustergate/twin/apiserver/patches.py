"""The three patch types of PATCH requests: JSON patch (RFC 6902, via jsonpatch), JSON merge
patch (RFC 7386) and Kubernetes strategic merge patch for the built-in types' fields.

Strategic merge needs each list field's patch strategy; the Go structs carry it as
``patchMergeKey`` tags. The table below has the tags of the fields the twin's clients patch.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from clustergate.twin.apiserver.errors import ApiError, bad_request, unsupported_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

#: List fields merged by key (patchStrategy:"merge" patchMergeKey:"<key>").
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "podIPs": "ip",
    "hostIPs": "ip",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
#: Lists of scalars merged as sets (patchStrategy:"merge" without a key).
SCALAR_MERGE = frozenset({"finalizers"})


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        dicts = [item for item in items if isinstance(item, dict)]
        return "containerPort" if any("containerPort" in item for item in dicts) else "port"
    if field == "addresses":
        dicts = [item for item in items if isinstance(item, dict)]
        return "type" if dicts and all("type" in item for item in dicts) else None
    return MERGE_KEYS.get(field)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(original, dict):
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    result = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            remove = set(map(_hashable, value or []))
            result[field] = [v for v in result.get(field) or [] if _hashable(v) not in remove]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            merged = _merge_list(key, result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, (dict, list)) else value


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any] | None:
    original = list(original) if isinstance(original, list) else []
    replace = [item for item in patch if isinstance(item, dict) and item.get("$patch") == "replace"]
    if replace:
        return [copy.deepcopy(item) for item in patch if item not in replace]
    if field in SCALAR_MERGE:
        merged = list(original)
        for item in patch:
            if item not in merged:
                merged.append(item)
        return merged
    key = _merge_key(field, original + patch)
    if key is None:
        return copy.deepcopy(patch)
    merged = list(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        position = next(
            (i for i, current in enumerate(merged) if current.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del merged[position]
        elif position is None:
            merged.append(strategic_merge({}, item))
        else:
            merged[position] = strategic_merge(merged[position], item)
    return merged


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise ApiError(
            422, "Invalid", "the server rejected our request due to an error in our request"
        ) from error


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    media = content_type.split(";")[0].strip()
    if media == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("patch body must be a JSON object")
    if media == MERGE_PATCH:
        return merge_patch(target, patch)
    if media == STRATEGIC_PATCH:
        return strategic_merge(target, patch)
    raise unsupported_patch(JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH)
