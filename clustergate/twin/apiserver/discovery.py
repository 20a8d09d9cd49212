"""Discovery documents: /version, /api, /api/v1, /apis, /apis/<group>[/<version>].

Served in the unaggregated form; clients that ask for aggregated discovery (kubectl does) get
these and fall back, as they do against any server that does not offer it.
"""

from __future__ import annotations

from typing import Any

from clustergate.twin.apiserver.resources import GroupVersion, ResourceType, group_versions

Obj = dict[str, Any]


def version_info(kubernetes_version: str) -> Obj:
    major, minor = kubernetes_version.split(".")[:2]
    git_version = f"v{major}.{minor}.4-eks-2d5f260"
    return {
        "major": major,
        "minor": f"{minor}+",
        "gitVersion": git_version,
        "gitCommit": "2d5f2601cd4d6b6bbbcb5e7ec04d14d5e8e8e2f4",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T21:20:07Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(host: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }


def _group(group: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(served: list[GroupVersion] | None = None) -> Obj:
    groups: dict[str, list[str]] = {}
    for gv in served or group_versions():
        if gv.group:
            groups.setdefault(gv.group, []).append(gv.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in groups.items()],
    }


def api_group(group: str, served: list[GroupVersion] | None = None) -> Obj | None:
    versions = [gv.version for gv in served or group_versions() if gv.group == group]
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _entries(rt: ResourceType) -> list[Obj]:
    entry: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entries = [entry]
    for sub in rt.subresources:
        sub_entry: Obj = {
            "name": f"{rt.plural}/{sub.name}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": sub.kind,
            "verbs": list(sub.verbs),
        }
        if sub.group:
            sub_entry["group"] = sub.group
        if sub.version:
            sub_entry["version"] = sub.version
        entries.append(sub_entry)
    return entries


def api_resource_list(
    group: str, version: str, served: list[GroupVersion] | None = None
) -> Obj | None:
    for gv in served or group_versions():
        if (gv.group, gv.version) == (group, version):
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [entry for rt in gv.resources for entry in _entries(rt)],
            }
    return None
