"""apiextensions.k8s.io/v1: CustomResourceDefinition (apiextensions-apiserver's validation and
defaulting). What a CRD makes the API server serve is custom_resources.py's."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType, status
from clustergate.twin.apiserver.structural_schema import structural_causes

CRDS = ResourceType(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    False,
    ("crd", "crds"),
    subresources=(status("CustomResourceDefinition"),),
    categories=("api-extensions",),
)
_SCOPES = ("Cluster", "Namespaced")


def default_crd(crd: Obj) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind") or ""
    if kind:
        names.setdefault("singular", kind.lower())
        names.setdefault("listKind", f"{kind}List")
    spec.setdefault("conversion", {"strategy": "None"})
    spec.setdefault("preserveUnknownFields", False)
    if "acceptedNames" not in (crd.get("status") or {}):
        storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
        crd["status"] = {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": storage}


def validate_crd(crd: Obj) -> list[Cause]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = crd["metadata"].get("name") or ""
    causes: list[Cause] = []
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if name != expected:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    for field in ("group",):
        if not spec.get(field):
            causes.append((f"spec.{field}", "FieldValueRequired", "Required value"))
    for field in ("plural", "kind"):
        if not names.get(field):
            causes.append((f"spec.names.{field}", "FieldValueRequired", "Required value"))
    if spec.get("scope") not in _SCOPES:
        causes.append(
            (
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: '
                '"Cluster", "Namespaced"',
            )
        )
    causes += _version_causes(spec.get("versions") or [])
    return causes


def _version_causes(versions: list[Obj]) -> list[Cause]:
    if not versions:
        return [
            (
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: []: must have exactly one version marked as storage version",
            )
        ]
    if sum(1 for v in versions if v.get("storage")) != 1:
        return [
            (
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: []apiextensions.CustomResourceDefinitionVersion: must have "
                "exactly one version marked as storage version",
            )
        ]
    schemas = [(v.get("schema") or {}).get("openAPIV3Schema") for v in versions]
    causes: list[Cause] = []
    for index, schema in enumerate(schemas):
        if schema is None:
            causes.append(
                (
                    f"spec.versions[{index}].schema.openAPIV3Schema",
                    "FieldValueRequired",
                    "Required value: schemas are required",
                )
            )
    if causes:
        return causes
    # One schema shared by every version is checked where v1beta1 kept it (the internal
    # type's spec.validation), and named there, as kube-apiserver 1.24 names it.
    if all(schema == schemas[0] for schema in schemas):
        return structural_causes(schemas[0], "spec.validation.openAPIV3Schema")
    for index, schema in enumerate(schemas):
        causes += structural_causes(schema, f"spec.versions[{index}].schema.openAPIV3Schema")
    return causes


def validate_crd_update(old: Obj, new: Obj) -> list[Cause]:
    before, after = old.get("spec") or {}, new.get("spec") or {}
    causes: list[Cause] = []
    for field in ("group", "scope"):
        if before.get(field) != after.get(field):
            causes.append(
                (
                    f"spec.{field}",
                    "FieldValueInvalid",
                    f'Invalid value: "{after.get(field)}": field is immutable',
                )
            )
    return causes


GROUP = ApiGroup(
    "apiextensions.k8s.io",
    (CRDS,),
    defaults={"customresourcedefinitions": default_crd},
    validators={"customresourcedefinitions": validate_crd},
    update_validators={"customresourcedefinitions": validate_crd_update},
)
