"""The garbage collector: dependents whose owners are gone are deleted; Foreground and
Orphan deletions of owners are carried out (the foregroundDeletion and orphan finalizers)."""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import Obj, is_terminating
from clustergate.twin.kubeclient import (
    ApiError,
    Handler,
    Informer,
    KubeClient,
    object_key,
    resource_path,
)
from clustergate.twin.settings import TwinSettings

#: (apiVersion, kind) -> (group/version for paths, plural, namespaced) of owners we know.
OWNER_KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("apps/v1", "Deployment"): ("apps/v1", "deployments", True),
    ("apps/v1", "ReplicaSet"): ("apps/v1", "replicasets", True),
    ("apps/v1", "DaemonSet"): ("apps/v1", "daemonsets", True),
    ("batch/v1", "Job"): ("batch/v1", "jobs", True),
    ("v1", "Node"): ("v1", "nodes", False),
    ("v1", "Service"): ("v1", "services", True),
}
#: Dependents we watch: (group/version, plural).
DEPENDENT_KINDS = (
    ("v1", "pods"),
    ("apps/v1", "replicasets"),
    ("coordination.k8s.io/v1", "leases"),
    ("discovery.k8s.io/v1", "endpointslices"),
)


def _collection(group_version: str, plural: str) -> str:
    return resource_path(group_version, plural)


class GarbageCollector(Controller):
    name = "garbage-collector"
    workers = 2

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        #: The collector's graph, as the real one keeps it (uidToNode): owners by uid, and
        #: for each owner uid the dependents that name it. Every lease renewal and pod change
        #: asks about its owners; at 1,000 nodes, scanning every owner for a uid was most of
        #: the collector's time.
        self._owner_index: dict[str, tuple[str, Obj]] = {}
        self._dependent_index: dict[str, set[tuple[str, str]]] = {}
        self._refs_of: dict[tuple[str, str], set[str]] = {}
        self.owners: dict[str, Informer] = {}
        for group_version, plural, _ in OWNER_KINDS.values():
            informer = informers.get(_collection(group_version, plural))
            self.owners[plural] = informer
            informer.add_handler(self._owner_handler(plural))
        self.dependents: dict[str, tuple[str, Informer]] = {}
        for group_version, plural in DEPENDENT_KINDS:
            informer = informers.get(_collection(group_version, plural))
            self.dependents[plural] = (group_version, informer)
            informer.add_handler(self._dependent_handler(plural))

    def keys(self) -> list[str]:
        keys = []
        for plural, (_, informer) in self.dependents.items():
            keys.extend(_key("dependent", plural, obj) for obj in informer.list())
        return keys

    def _owner_handler(self, plural: str) -> Handler:
        def handle(kind: str, obj: Obj, old: Obj | None) -> None:
            uid = obj["metadata"].get("uid", "")
            if kind == "DELETED":
                self._owner_index.pop(uid, None)
                for dep_plural, dependent in self._dependents_of(uid):
                    self.queue.add(_key("dependent", dep_plural, dependent))
                return
            self._owner_index[uid] = (plural, obj)
            if is_terminating(obj):
                self.queue.add(_key("owner", plural, obj))

        return handle

    def _dependent_handler(self, plural: str) -> Handler:
        def handle(kind: str, obj: Obj, old: Obj | None) -> None:
            self._index_dependent(plural, obj, deleted=kind == "DELETED")
            if kind != "DELETED" and obj["metadata"].get("ownerReferences"):
                self.queue.add(_key("dependent", plural, obj))
            if kind == "DELETED" or is_terminating(obj):
                for ref in obj["metadata"].get("ownerReferences") or []:
                    owner = self._owner_by_uid(ref.get("uid", ""))
                    if owner is not None and is_terminating(owner[1]):
                        self.queue.add(_key("owner", owner[0], owner[1]))

        return handle

    def _index_dependent(self, plural: str, obj: Obj, deleted: bool) -> None:
        meta = obj["metadata"]
        dependent = (plural, object_key(obj))
        for uid in self._refs_of.pop(dependent, set()):
            named = self._dependent_index.get(uid, set())
            named.discard(dependent)
            if not named:
                self._dependent_index.pop(uid, None)
        if deleted:
            return
        uids = {ref["uid"] for ref in meta.get("ownerReferences") or [] if ref.get("uid")}
        if uids:
            self._refs_of[dependent] = uids
            for uid in uids:
                self._dependent_index.setdefault(uid, set()).add(dependent)

    def _owner_by_uid(self, uid: str) -> tuple[str, Obj] | None:
        return self._owner_index.get(uid)

    def _dependents_of(self, uid: str) -> list[tuple[str, Obj]]:
        found = []
        for plural, key in sorted(self._dependent_index.get(uid, ())):
            obj = self.dependents[plural][1].get(key)
            if obj is not None:
                found.append((plural, obj))
        return found

    async def reconcile(self, key: str) -> None:
        role, plural, namespace, name = key.split("|")
        if role == "owner":
            await self._finish_owner(plural, namespace, name)
        else:
            await self._check_dependent(plural, namespace, name)

    async def _owner_exists(self, namespace: str, ref: Obj) -> bool:
        known = OWNER_KINDS.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        if known is None:
            return True  # a kind we do not collect for
        cached = self._owner_by_uid(ref.get("uid", ""))
        if cached is not None:
            return True
        group_version, plural, namespaced = known
        live = await self.client.get_or_none(
            resource_path(group_version, plural, namespace if namespaced else None, ref["name"])
        )
        return live is not None and live["metadata"].get("uid") == ref.get("uid")

    async def _check_dependent(self, plural: str, namespace: str, name: str) -> None:
        group_version, informer = self.dependents[plural]
        obj = informer.get(f"{namespace}/{name}" if namespace else name)
        if obj is None:
            return
        refs = obj["metadata"].get("ownerReferences") or []
        path = resource_path(group_version, plural, namespace or None, name)
        absent = [ref for ref in refs if not await self._owner_exists(namespace, ref)]
        if not absent:
            return
        if len(absent) == len(refs):
            if not is_terminating(obj):
                await self.client.delete(
                    path, propagation_policy="Background", uid=obj["metadata"]["uid"]
                )
            return
        kept = [ref for ref in refs if ref not in absent]
        await self.client.patch(path, {"metadata": {"ownerReferences": kept}})

    async def _finish_owner(self, plural: str, namespace: str, name: str) -> None:
        owner = self.owners[plural].get(f"{namespace}/{name}" if namespace else name)
        if owner is None or not is_terminating(owner):
            return
        finalizers = list(owner["metadata"].get("finalizers") or [])
        uid = owner["metadata"]["uid"]
        dependents = self._dependents_of(uid)
        if "orphan" in finalizers:
            for dep_plural, dependent in dependents:
                group_version, _ = self.dependents[dep_plural]
                meta = dependent["metadata"]
                refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
                await self._patch_ignoring_gone(
                    resource_path(group_version, dep_plural, meta.get("namespace"), meta["name"]),
                    {"metadata": {"ownerReferences": refs}},
                )
            await self._drop_finalizer(plural, owner, "orphan")
        elif "foregroundDeletion" in finalizers:
            live = [d for d in dependents if not is_terminating(d[1])]
            for dep_plural, dependent in live:
                group_version, _ = self.dependents[dep_plural]
                meta = dependent["metadata"]
                # Dependents that own things themselves go in the foreground too; pods own
                # nothing, and a foregroundDeletion finalizer on them would never be cleared.
                await self.client.delete(
                    resource_path(group_version, dep_plural, meta.get("namespace"), meta["name"]),
                    propagation_policy="Foreground" if dep_plural in self.owners else "Background",
                )
            if not dependents:
                await self._drop_finalizer(plural, owner, "foregroundDeletion")

    async def _drop_finalizer(self, plural: str, owner: Obj, finalizer: str) -> None:
        group_version = next(gv for gv, p, _ in OWNER_KINDS.values() if p == plural)
        meta = owner["metadata"]
        remaining = [f for f in meta.get("finalizers") or [] if f != finalizer]
        await self._patch_ignoring_gone(
            resource_path(group_version, plural, meta.get("namespace"), meta["name"]),
            {"metadata": {"finalizers": remaining, "resourceVersion": meta["resourceVersion"]}},
        )

    async def _patch_ignoring_gone(self, path: str, body: Obj) -> None:
        try:
            await self.client.patch(path, body)
        except ApiError as error:
            if error.status != 404:
                raise


def _key(role: str, plural: str, obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{role}|{plural}|{meta.get('namespace', '')}|{meta['name']}"
