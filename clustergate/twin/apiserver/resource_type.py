"""What the API server knows of a served resource type and of an API group's room."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustergate.twin.apiserver.list_types import BUILTIN, SchemaShape, Shape

Obj = dict[str, Any]
Cause = tuple[str, str, str]

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = CRUD
    subresources: tuple[Subresource, ...] = ()
    categories: tuple[str, ...] = ()
    #: Extra field-selector labels beyond metadata.name / metadata.namespace.
    fields: tuple[str, ...] = ()
    #: Where objects live: resources that are views of another (events.k8s.io) share storage.
    storage: str = ""
    #: Whether updates bump metadata.generation when anything but metadata and status changes.
    tracks_generation: bool = False
    #: The group a 422 names when it is not the served one: the API server qualifies the kind
    #: by the internal type's first registered group, which for Ingress is still extensions.
    invalid_group: str = ""
    #: How server-side apply merges its lists and maps (a CRD's schema for custom resources).
    shape: Shape = BUILTIN
    #: A custom resource's scale subresource: (specReplicasPath, statusReplicasPath,
    #: labelSelectorPath), JSON paths such as ``.spec.replicas``; built-ins use their fields.
    scale_paths: tuple[str, ...] = ()
    #: A custom resource's additionalPrinterColumns: (name, type, jsonPath, priority).
    printer_columns: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods`` or ``deployments.apps``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> str:
        return self.storage or self.qualified

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def schema(self) -> Obj | None:
        """A custom resource's openAPIV3Schema; None for the built-in types."""
        return self.shape.schema if isinstance(self.shape, SchemaShape) else None

    @property
    def has_status(self) -> bool:
        return any(sub.name == "status" for sub in self.subresources)

    def subresource(self, name: str) -> Subresource | None:
        return next((sub for sub in self.subresources if sub.name == name), None)


@dataclass(frozen=True)
class ApiGroup:
    """One API group's room: its resources, their defaulting and validation, and the objects
    the API server creates at start (built-in PriorityClasses, flow-control defaults)."""

    name: str
    resources: tuple[ResourceType, ...]
    #: plural → defaulter, run on create and update (in place).
    defaults: dict[str, Callable[[Obj], None]] = field(default_factory=dict)
    #: plural → validator answering (field path, reason, message) causes of a 422 Invalid.
    validators: dict[str, Callable[[Obj], list[Cause]]] = field(default_factory=dict)
    #: plural → validator of an update, given the stored object and the new one (immutable
    #: fields).
    update_validators: dict[str, Callable[[Obj, Obj], list[Cause]]] = field(default_factory=dict)
    #: (plural, object) pairs created when the API server starts.
    bootstrap: tuple[tuple[str, Obj], ...] = ()


def status(kind: str) -> Subresource:
    """The status subresource of ``kind``."""
    return Subresource("status", kind, STATUS_VERBS)
