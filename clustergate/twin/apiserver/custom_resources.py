"""What the API server serves: the built-in resource types, and those its established
CustomResourceDefinitions add (apiextensions-apiserver's handler), each with the shape of
its schema for server-side apply and the schema itself for pruning and validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

from clustergate.twin.apiserver.list_types import SchemaShape
from clustergate.twin.apiserver.resource_type import (
    CRUD,
    STATUS_VERBS,
    Obj,
    ResourceType,
    Subresource,
)
from clustergate.twin.apiserver.resources import RESOURCES, GroupVersion, group_versions

CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"
#: The finalizer that makes a CRD's deletion wait until its objects are gone.
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def _scale_paths(scale: Obj | None) -> tuple[str, ...]:
    if scale is None:
        return ()
    return (
        scale.get("specReplicasPath", ""),
        scale.get("statusReplicasPath", ""),
        scale.get("labelSelectorPath", ""),
    )


@cache
def in_version(api_version: str) -> Callable[[Obj], Obj]:
    """The view of a custom object served in ``api_version``: with conversion strategy None,
    only its apiVersion changes."""

    def view(obj: Obj) -> Obj:
        return obj if obj.get("apiVersion") == api_version else {**obj, "apiVersion": api_version}

    return view


def _claimed(crds: Iterable[Obj], crd: Obj) -> tuple[set[str], set[str]]:
    """The resource names and the kinds other CRDs of ``crd``'s group have been granted."""
    resources: set[str] = set()
    kinds: set[str] = set()
    for other in crds:
        same_group = other["spec"].get("group") == crd["spec"].get("group")
        if not same_group or other["metadata"]["name"] == crd["metadata"]["name"]:
            continue
        accepted = (other.get("status") or {}).get("acceptedNames") or {}
        resources.update([accepted.get("plural", ""), accepted.get("singular", "")])
        resources.update(accepted.get("shortNames") or [])
        kinds.update([accepted.get("kind", ""), accepted.get("listKind", "")])
    return resources - {""}, kinds - {""}


def _condition(kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": kind,
        "status": status,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def named(crd: Obj, crds: Iterable[Obj], now: str) -> Obj | None:
    """The status the naming and establishing controllers give ``crd`` (each requested name
    granted unless another CRD of the group holds it; established once all are), or None
    when its status already says so."""
    resources, kinds = _claimed(crds, crd)
    requested = crd["spec"]["names"]
    status = crd.get("status") or {}
    accepted = status.get("acceptedNames") or {}
    names = dict(accepted)
    conflict: tuple[str, str] | None = None

    def grant(field: str, claimed: set[str], reason: str) -> None:
        nonlocal conflict
        wanted = requested.get(field, "")
        if wanted != accepted.get(field, "") and wanted in claimed:
            conflict = (reason, f'"{wanted}" is already in use')
        elif wanted:
            names[field] = wanted

    grant("plural", resources, "PluralConflict")
    grant("singular", resources, "SingularConflict")
    shorts = requested.get("shortNames") or []
    taken = [s for s in shorts if s not in (accepted.get("shortNames") or []) and s in resources]
    if taken:
        conflict = ("ShortNamesConflict", ", ".join(f'"{s}" is already in use' for s in taken))
    elif shorts:
        names["shortNames"] = shorts
    grant("kind", kinds, "KindConflict")
    grant("listKind", kinds, "ListKindConflict")
    if requested.get("categories"):
        names["categories"] = requested["categories"]
    names.setdefault("plural", "")
    names.setdefault("kind", "")
    was = {c.get("type"): c for c in status.get("conditions") or []}
    if conflict is None:
        accepting = _condition("NamesAccepted", "True", "NoConflicts", "no conflicts found", now)
        reason, message = "InitialNamesAccepted", "the initial names have been accepted"
        establishing = _condition("Established", "True", reason, message, now)
    else:
        accepting = _condition("NamesAccepted", "False", *conflict, now)
        message = "not all names are accepted"
        establishing = _condition("Established", "False", "NotAccepted", message, now)
    if was.get("Established", {}).get("status") == "True":
        establishing = was["Established"]
    conditions = [
        _same_since(accepting, was.get("NamesAccepted")),
        _same_since(establishing, was.get("Established")),
    ]
    if names == accepted and conditions == list(status.get("conditions") or []):
        return None
    return {**status, "acceptedNames": names, "conditions": conditions}


def _same_since(condition: Obj, before: Obj | None) -> Obj:
    """``condition``, keeping the earlier transition time when its status did not change."""
    if before is not None and before.get("status") == condition["status"]:
        return {**condition, "lastTransitionTime": before.get("lastTransitionTime")}
    return condition


def established(crd: Obj) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def resource_types(crd: Obj) -> tuple[ResourceType, ...]:
    """One resource type per served version of ``crd``."""
    spec = crd["spec"]
    names = (crd.get("status") or {}).get("acceptedNames") or spec["names"]
    kind = names["kind"]
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        subs = []
        if "status" in subresources:
            subs.append(Subresource("status", kind, STATUS_VERBS))
        scale = subresources.get("scale")
        if scale is not None:
            subs.append(Subresource("scale", "Scale", STATUS_VERBS, "autoscaling", "v1"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        types.append(
            ResourceType(
                spec["group"],
                version["name"],
                names["plural"],
                kind,
                spec.get("scope") == "Namespaced",
                tuple(names.get("shortNames") or ()),
                CRUD,
                tuple(subs),
                tuple(names.get("categories") or ()),
                tracks_generation=True,
                shape=SchemaShape(schema),
                scale_paths=_scale_paths(scale),
                printer_columns=tuple(
                    (c["name"], c.get("type", "string"), c["jsonPath"], c.get("priority", 0))
                    for c in version.get("additionalPrinterColumns") or []
                ),
            )
        )
    return tuple(types)


class Catalog:
    """The served resource types of one API server."""

    def __init__(self) -> None:
        self.custom: tuple[ResourceType, ...] = ()
        self._versions: tuple[str, ...] = ()
        self._by_path = {(rt.group, rt.version, rt.plural): rt for rt in RESOURCES}
        self._builtin = dict(self._by_path)

    def refresh(self, crds: Iterable[Obj]) -> None:
        """Serve what the established, undeleted CRDs define (cheap when none changed)."""
        serving = [
            crd for crd in crds if established(crd) and not crd["metadata"].get("deletionTimestamp")
        ]
        versions = tuple(sorted(c["metadata"]["resourceVersion"] for c in serving))
        if versions == self._versions:
            return
        self._versions = versions
        self.custom = tuple(rt for crd in serving for rt in resource_types(crd))
        self._by_path = dict(self._builtin)
        self._by_path.update({(rt.group, rt.version, rt.plural): rt for rt in self.custom})

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def all(self) -> tuple[ResourceType, ...]:
        return RESOURCES + self.custom

    def group_versions(self) -> list[GroupVersion]:
        """Built-in group versions, then the custom ones, as the aggregator lists them."""
        custom: dict[tuple[str, str], list[ResourceType]] = {}
        for rt in self.custom:
            custom.setdefault((rt.group, rt.version), []).append(rt)
        extra = [GroupVersion(g, v, tuple(rts)) for (g, v), rts in custom.items()]
        return group_versions() + extra
