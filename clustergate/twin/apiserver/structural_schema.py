"""A CRD's structural openAPIV3Schema applied to custom objects as apiextensions-apiserver
applies it: unknown fields pruned, ``default`` values set, then validated, with the messages
kube-openapi's validator words (``spec.size in body should be greater than or equal to 1``).

A general JSON-schema library was weighed and left: its messages are not upstream's and a 422
must carry upstream's words, so the keywords a structural schema allows are checked here,
each in a few lines.
"""

from __future__ import annotations

import copy
import re
from typing import Any

Obj = dict[str, Any]
Cause = tuple[str, str, str]
#: Fields every object keeps whatever the schema says (the API server owns them).
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_TYPE_NAMES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return next(name for kind, name in _TYPE_NAMES if isinstance(value, kind))


def _go(value: Any) -> str:
    """A value as field.Invalid prints it (%#v-like for the scalars a schema meets)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- pruning and defaulting


def prune(obj: Obj, schema: Obj) -> Obj:
    """``obj`` with what the schema does not know removed and its defaults set."""
    out = _prune(obj, schema, root=True)
    return out if isinstance(out, dict) else obj


def _prune(value: Any, schema: Obj, root: bool = False) -> Any:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
        out: Obj = {}
        for name, child in value.items():
            if root and name in _ROOT_FIELDS:
                out[name] = child
            elif name in properties:
                out[name] = _prune(child, properties[name])
            elif isinstance(extra, dict):
                out[name] = _prune(child, extra)
            elif keep_unknown or extra is True:
                out[name] = child
        for name, sub in properties.items():
            if name not in out and "default" in sub:
                out[name] = _prune(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"]) for item in value]
    return value


def unknown_fields(obj: Obj, schema: Obj) -> list[str]:
    """The paths of what :func:`prune` would remove, as the strict decoder names them."""
    found: list[str] = []
    _unknown(obj, schema, "", found, root=True)
    return sorted(found)


def _unknown(value: Any, schema: Obj, path: str, found: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") is True:
            properties = schema.get("properties") or {}
            for name, sub in properties.items():
                if name in value:
                    _unknown(value[name], sub, f"{path}.{name}".lstrip("."), found)
            return
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, child in value.items():
            here = f"{path}.{name}".lstrip(".")
            if root and name in _ROOT_FIELDS:
                continue
            if name in properties:
                _unknown(child, properties[name], here, found)
            elif isinstance(extra, dict):
                _unknown(child, extra, here, found)
            elif extra is not True:
                found.append(here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _unknown(item, schema["items"], f"{path}[{index}]", found)


# ---- validation


def validate(obj: Obj, schema: Obj) -> list[Cause]:
    """(field, reason, message) of everything ``obj`` breaks in ``schema``."""
    causes: list[Cause] = []
    for name, sub in (schema.get("properties") or {}).items():
        if name in _ROOT_FIELDS or name not in obj:
            continue
        _check(obj[name], sub, name, causes)
    for name in schema.get("required") or []:
        if name not in obj:
            causes.append((name, "FieldValueRequired", "Required value"))
    return causes


def _invalid(causes: list[Cause], path: str, shown: Any, why: str) -> None:
    causes.append((path, "FieldValueInvalid", f"Invalid value: {_go(shown)}: {path} {why}"))


def _type_ok(value: Any, wanted: str, schema: Obj) -> bool:
    if schema.get("x-kubernetes-int-or-string") is True:
        return isinstance(value, int | str) and not isinstance(value, bool)
    if not wanted or (value is None and schema.get("nullable") is True):
        return True
    actual = _type_name(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


def _check(value: Any, schema: Obj, path: str, causes: list[Cause]) -> None:
    wanted = schema.get("type", "")
    if not _type_ok(value, wanted, schema):
        actual = _type_name(value)
        _invalid(causes, path, actual, f'in body must be of type {wanted}: "{actual}"')
        return
    if value is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path, causes)
    if isinstance(value, str):
        _check_string(value, schema, path, causes)
    if isinstance(value, list):
        _check_array(value, schema, path, causes)
    if isinstance(value, dict):
        _check_object(value, schema, path, causes)
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_go(item) for item in enum)
        causes.append(
            (
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {_go(value)}: supported values: {supported}",
            )
        )


def _check_number(value: float, schema: Obj, path: str, causes: list[Cause]) -> None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        if schema.get("exclusiveMinimum") and value <= low:
            _invalid(causes, path, value, f"in body should be greater than {low}")
        elif value < low:
            _invalid(causes, path, value, f"in body should be greater than or equal to {low}")
    if high is not None:
        if schema.get("exclusiveMaximum") and value >= high:
            _invalid(causes, path, value, f"in body should be less than {high}")
        elif value > high:
            _invalid(causes, path, value, f"in body should be less than or equal to {high}")
    multiple = schema.get("multipleOf")
    if multiple and value % multiple:
        _invalid(causes, path, value, f"in body should be a multiple of {multiple}")


def _check_string(value: str, schema: Obj, path: str, causes: list[Cause]) -> None:
    longest, shortest = schema.get("maxLength"), schema.get("minLength")
    if longest is not None and len(value) > longest:
        _invalid(causes, path, value, f"in body should be at most {longest} chars long")
    if shortest is not None and len(value) < shortest:
        _invalid(causes, path, value, f"in body should be at least {shortest} chars long")
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        _invalid(causes, path, value, f"in body should match '{pattern}'")


def _check_array(value: list[Any], schema: Obj, path: str, causes: list[Cause]) -> None:
    most, least = schema.get("maxItems"), schema.get("minItems")
    if most is not None and len(value) > most:
        _invalid(causes, path, len(value), f"in body should have at most {most} items")
    if least is not None and len(value) < least:
        _invalid(causes, path, len(value), f"in body should have at least {least} items")
    items = schema.get("items")
    if isinstance(items, dict):
        # kube-openapi names an item's errors by the list's path, without the index.
        for item in value:
            _check(item, items, path, causes)


def _check_object(value: Obj, schema: Obj, path: str, causes: list[Cause]) -> None:
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for name, child in value.items():
        sub = properties.get(name, extra if isinstance(extra, dict) else None)
        if sub is not None:
            _check(child, sub, f"{path}.{name}", causes)
    for name in schema.get("required") or []:
        if name not in value:
            causes.append((f"{path}.{name}", "FieldValueRequired", "Required value"))
    most, least = schema.get("maxProperties"), schema.get("minProperties")
    if most is not None and len(value) > most:
        _invalid(causes, path, len(value), f"in body should have at most {most} properties")
    if least is not None and len(value) < least:
        _invalid(causes, path, len(value), f"in body should have at least {least} properties")


# ---- the CRD's own schema


def structural_causes(schema: Any, path: str) -> list[Cause]:
    """Why ``schema`` is not structural (the checks the twin makes of it)."""
    if not isinstance(schema, dict):
        return [(path, "FieldValueRequired", "Required value: schemas are required")]
    causes: list[Cause] = []
    if not schema.get("type"):
        causes.append(
            (f"{path}.type", "FieldValueRequired", "Required value: must not be empty at the root")
        )
    _structural_properties(schema, path, causes)
    return causes


def _structural_properties(schema: Obj, path: str, causes: list[Cause]) -> None:
    for name, sub in (schema.get("properties") or {}).items():
        here = f"{path}.properties[{name}]"
        if not isinstance(sub, dict):
            continue
        untyped = not sub.get("type") and not (
            sub.get("x-kubernetes-int-or-string") or sub.get("x-kubernetes-preserve-unknown-fields")
        )
        if untyped:
            causes.append(
                (
                    f"{here}.type",
                    "FieldValueRequired",
                    "Required value: must not be empty for specified object fields",
                )
            )
        _structural_properties(sub, here, causes)
        if isinstance(sub.get("items"), dict):
            _structural_properties(sub["items"], f"{here}.items", causes)
