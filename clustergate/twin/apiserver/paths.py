"""Parsing request paths into what they address (k8s.io/apiserver RequestInfo)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clustergate.twin.apiserver.resources import ResourceType, lookup

Lookup = Callable[[str, str, str], ResourceType | None]


@dataclass(frozen=True)
class ResourcePath:
    rt: ResourceType
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    rest: str = ""  # what follows a proxy subresource

    @property
    def collection(self) -> bool:
        return not self.name


@dataclass(frozen=True)
class GroupVersionPath:
    group: str
    version: str
    parts: tuple[str, ...]


def split_group_version(path: str) -> GroupVersionPath | None:
    parts = [p for p in path.split("/")]
    if len(parts) >= 3 and parts[1] == "api" and parts[2]:
        return GroupVersionPath("", parts[2], tuple(parts[3:]))
    if len(parts) >= 4 and parts[1] == "apis" and parts[3]:
        return GroupVersionPath(parts[2], parts[3], tuple(parts[4:]))
    return None


def parse_resource(gv: GroupVersionPath, lookup: Lookup = lookup) -> ResourcePath | None:
    parts = list(gv.parts)
    while parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    namespace = ""
    if len(parts) >= 3 and parts[0] == "namespaces" and lookup(gv.group, gv.version, parts[2]):
        namespace = parts[1]
        parts = parts[2:]
    if not parts or not parts[0]:
        return None
    rt = lookup(gv.group, gv.version, parts[0])
    if rt is None:
        return None
    if namespace and not rt.namespaced:
        return None
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 else ""
    rest = "/".join(parts[3:])
    if rest and subresource != "proxy":
        return None
    if subresource and rt.subresource(subresource) is None:
        return None
    if rt.plural == "namespaces" and name:
        namespace = name
    return ResourcePath(rt, namespace, name, subresource, rest)
