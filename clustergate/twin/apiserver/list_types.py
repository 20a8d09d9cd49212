"""How server-side apply merges each list and map of the built-in types.

Upstream reads it from the OpenAPI extensions generated from the Go types'
``+listType``/``+listMapKey``/``+mapType`` tags (``x-kubernetes-list-type``,
``x-kubernetes-list-map-keys``, ``x-kubernetes-map-type``). The twin keeps, as data, the tags
of the fields its clients apply, keyed by field name as the types name them; a list not
listed here is atomic (replaced whole), as an untagged list is upstream. Custom resources
take the same answers from their CRD's schema (:class:`SchemaShape`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

#: list field → the keys of its items (``x-kubernetes-list-type: map``).
MAP_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
}
#: Ports are keyed by what they carry: a container's by containerPort, a Service's by port,
#: both with their protocol.
CONTAINER_PORT_KEYS = ("containerPort", "protocol")
SERVICE_PORT_KEYS = ("port", "protocol")
#: list fields whose items are a set of scalars (``x-kubernetes-list-type: set``).
SET_LISTS = frozenset({"finalizers"})
#: object fields owned whole (``x-kubernetes-map-type: atomic``, ``+structType=atomic``).
ATOMIC_MAPS = frozenset({"selector"})


class Shape(Protocol):
    """What apply needs to know of one place in an object's schema."""

    def child(self, name: str) -> Shape: ...

    def items(self) -> Shape: ...

    def list_keys(self, items: list[Any]) -> tuple[str, ...] | None:
        """The item keys of a map list, () for a set, None for an atomic list."""
        ...

    def atomic(self) -> bool: ...


@dataclass(frozen=True)
class BuiltinShape:
    """A built-in type's field, known by its name (the tables above)."""

    name: str = ""

    def child(self, name: str) -> BuiltinShape:
        return _builtin(name)

    def items(self) -> BuiltinShape:
        return _builtin("")

    def list_keys(self, items: list[Any]) -> tuple[str, ...] | None:
        if self.name == "ports":
            dicts = [item for item in items if isinstance(item, dict)]
            return (
                CONTAINER_PORT_KEYS
                if any("containerPort" in i for i in dicts)
                else (SERVICE_PORT_KEYS)
            )
        if self.name in SET_LISTS:
            return ()
        return MAP_LISTS.get(self.name)

    def atomic(self) -> bool:
        return self.name in ATOMIC_MAPS


@dataclass(frozen=True, eq=False)
class SchemaShape:
    """A place in a CRD's structural schema."""

    schema: dict[str, Any]

    def child(self, name: str) -> SchemaShape:
        properties = self.schema.get("properties") or {}
        if name in properties:
            return SchemaShape(properties[name])
        extra = self.schema.get("additionalProperties")
        return SchemaShape(extra if isinstance(extra, dict) else {})

    def items(self) -> SchemaShape:
        items = self.schema.get("items")
        return SchemaShape(items if isinstance(items, dict) else {})

    def list_keys(self, items: list[Any]) -> tuple[str, ...] | None:
        kind = self.schema.get("x-kubernetes-list-type", "atomic")
        if kind == "map":
            return tuple(self.schema.get("x-kubernetes-list-map-keys") or ())
        return () if kind == "set" else None

    def atomic(self) -> bool:
        return self.schema.get("x-kubernetes-map-type") == "atomic"


@cache
def _builtin(name: str) -> BuiltinShape:
    """One shape per field name: a write walks thousands of fields."""
    return BuiltinShape(name)


#: The shape of every built-in type.
BUILTIN = BuiltinShape()
