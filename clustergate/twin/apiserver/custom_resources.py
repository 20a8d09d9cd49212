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
