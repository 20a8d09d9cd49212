"""REST semantics over the store: create, read, list, update, patch and delete with the real
API server's metadata handling, optimistic concurrency, defaulting, admission, validation,
graceful deletion, finalizers and namespace termination."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from clustergate.twin.apiserver import errors, field_manager
from clustergate.twin.apiserver.custom_resources import (
    CLEANUP_FINALIZER,
    CRD_KEY,
    Catalog,
    in_version,
    named,
    resource_types,
)
from clustergate.twin.apiserver.defaults import apply_defaults, validate, validate_update
from clustergate.twin.apiserver.events_view import core_field, from_events_v1, to_events_v1
from clustergate.twin.apiserver.patches import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    apply_patch,
)
from clustergate.twin.apiserver.priority import admit_priority
from clustergate.twin.apiserver.resources import RESOURCES, ResourceType, group_of, resource
from clustergate.twin.apiserver.selectors import FieldSelector, LabelSelector
from clustergate.twin.apiserver.store import Key, Obj, Store, Watcher
from clustergate.twin.apiserver.structural_schema import prune
from clustergate.twin.settings import TwinSettings

NAMESPACES = resource("", "v1", "namespaces")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
#: Resources a PUT may create (AllowCreateOnUpdate in their registry strategies).
_CREATE_ON_UPDATE = frozenset({"endpoints", "events", "leases.coordination.k8s.io"})
#: Resources whose DELETE answers with the object even when it is gone (ReturnDeletedObject in
#: their registry stores); the others answer a Success Status naming what went.
_RETURN_DELETED = frozenset({"pods", "services", "namespaces", "serviceaccounts"})
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)
#: What etcd's watcher answers a watch resumed at a compacted revision.
WATCH_EXPIRED = "The resourceVersion for the provided watch is too old."
NAMESPACE_FINALIZING = (
    "The system is ensuring all content is removed from this namespace.  Upon completion, this "
    "namespace will automatically be purged by the system."
)
_IGNORED_ON_COMPARE = ("resourceVersion",)
#: The manager of what the API server writes itself (bootstrap objects, its controllers),
#: as kube-apiserver records its own writes.
SELF_MANAGER = "kube-apiserver"


def now_rfc3339(offset: float = 0) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def _same(a: Obj, b: Obj) -> bool:
    def strip(obj: Obj) -> Obj:
        meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _IGNORED_ON_COMPARE}
        if "managedFields" in meta:  # who owns what counts; when they last wrote does not
            meta["managedFields"] = [
                {k: v for k, v in entry.items() if k != "time"} for entry in meta["managedFields"]
            ]
        return {**obj, "metadata": meta}

    return orjson.dumps(strip(a), option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        strip(b), option=orjson.OPT_SORT_KEYS
    )


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


@dataclass(frozen=True)
class ListQuery:
    namespace: str = ""
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False
    #: orphanDependents as sent (deprecated, but it picks the 202 answer of a pending delete).
    orphan_dependents: bool | None = None

    @classmethod
    def parse(cls, query: dict[str, str], body: Obj | None) -> DeleteOptions:
        body = body or {}
        preconditions = body.get("preconditions") or {}
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = query.get("orphanDependents", body.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if str(orphan).lower() == "true" else "Background"
        dry_run = query.get("dryRun") or body.get("dryRun")
        return cls(
            orphan_dependents=None if orphan is None else str(orphan).lower() == "true",
            grace_period=None if grace is None else int(grace),
            propagation=propagation,
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
            dry_run=bool(dry_run),
        )


@dataclass
class Write:
    """A create or an update, prepared (defaulted, built-in admission done) and waiting for
    dynamic admission before :meth:`Registry.commit` validates and stores it."""

    rt: ResourceType
    namespace: str
    obj: Obj
    #: The stored object an update replaces; None for a create.
    old: Obj | None = None
    subresource: str = ""
    dry_run: bool = False
    #: The field manager the write was recorded under (managedFields are set before dynamic
    #: admission, as k8s.io/apiserver's handlers update them before calling it).
    manager: str = ""

    @property
    def operation(self) -> str:
        return "CREATE" if self.old is None else "UPDATE"


class ServiceIPs:
    """ClusterIP allocation from the service CIDR (index 1 is the kubernetes Service)."""

    def __init__(self, cidr: str) -> None:
        self._network = ipaddress.ip_network(cidr)
        self._used: set[str] = set()
        self._next = 1

    def reserve(self, ip: str) -> bool:
        if ip in self._used or ipaddress.ip_address(ip) not in self._network:
            return False
        self._used.add(ip)
        return True

    def allocate(self) -> str:
        size = self._network.num_addresses - 2
        for _ in range(size):
            candidate = str(self._network[self._next])
            self._next = self._next % size + 1
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        raise errors.internal("failed to allocate a serviceIP: range is full")

    def release(self, ip: str | None) -> None:
        if ip:
            self._used.discard(ip)


class Registry:
    def __init__(self, store: Store, settings: TwinSettings) -> None:
        self.store = store
        self.settings = settings
        self.service_ips = ServiceIPs(settings.network.service_cidr)
        self.catalog = Catalog()
        self._node_ports = iter(range(30000, 32768))

    # ---- views (events.k8s.io shares core events' storage)

    @staticmethod
    def view(rt: ResourceType) -> Callable[[Obj], Obj] | None:
        if rt.schema is not None:
            return in_version(rt.api_version)
        return to_events_v1 if rt.group == "events.k8s.io" else None

    def output(self, rt: ResourceType, obj: Obj) -> Obj:
        view = self.view(rt)
        return view(obj) if view else obj

    @staticmethod
    def _input(rt: ResourceType, body: Obj) -> Obj:
        return from_events_v1(body) if rt.group == "events.k8s.io" else body

    # ---- reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def field_selector(self, rt: ResourceType, text: str) -> FieldSelector:
        allowed = {"metadata.name", "metadata.namespace", *rt.fields}
        return FieldSelector.parse(text, allowed.__contains__)

    def matcher(self, rt: ResourceType, labels: str, fields: str) -> Callable[[Obj], bool]:
        label_selector = LabelSelector.parse(labels)
        field_selector = self.field_selector(rt, fields)
        translate = core_field if rt.group == "events.k8s.io" else str
        if label_selector.empty and not field_selector.terms:
            return lambda obj: True
        return lambda obj: (
            label_selector.matches(obj["metadata"].get("labels"))
            and field_selector.matches(obj, translate)
        )

    def list(self, rt: ResourceType, query: ListQuery, stored: bool = False) -> Obj:
        """A list page; ``stored`` keeps items as stored (no group view), for printing."""
        matches = self.matcher(rt, query.label_selector, query.field_selector)
        node = None
        if rt.key == "pods":
            node = self.field_selector(rt, query.field_selector).equality("spec.nodeName")
        after: Key | None = None
        revision = self.store.revision
        if query.continue_token:
            try:
                token = orjson.loads(base64.urlsafe_b64decode(query.continue_token))
                after, revision = (token["start"][0], token["start"][1]), int(token["rv"])
            except (ValueError, KeyError, TypeError) as error:
                raise errors.bad_request(
                    f"invalid continue token: continue key is not valid: {error}"
                ) from error
            if self.store.too_old(revision):
                raise errors.gone(CONTINUE_EXPIRED)
        items: list[Obj] = []
        last: Key | None = None
        more = False
        # Later pages read the store as it was at the first page's resourceVersion, as etcd
        # serves them from a snapshot at that revision.
        for obj in self.store.scan_at(rt.key, revision, query.namespace, after, node):
            if not matches(obj):
                continue
            if query.limit and len(items) == query.limit:
                more = True
                break
            items.append(obj)
            meta = obj["metadata"]
            last = (meta.get("namespace") or "", meta["name"])
        metadata: Obj = {"resourceVersion": str(revision)}
        if more and last is not None:
            token = orjson.dumps({"rv": revision, "start": list(last)})
            metadata["continue"] = base64.urlsafe_b64encode(token).decode()
            unfiltered = not query.label_selector and not query.field_selector
            if unfiltered:
                metadata["remainingItemCount"] = self.store.remaining_after(
                    rt.key, last, query.namespace
                )
        view = None if stored else self.view(rt)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": metadata,
            "items": [view(obj) for obj in items] if view else items,
        }

    def watcher(self, rt: ResourceType, query: ListQuery) -> Watcher:
        base = self.matcher(rt, query.label_selector, query.field_selector)
        namespace = query.namespace
        node = None
        if rt.key == "pods":
            node = self.field_selector(rt, query.field_selector).equality("spec.nodeName")

        def matches(obj: Obj) -> bool:
            return (not namespace or obj["metadata"].get("namespace") == namespace) and base(obj)

        return Watcher(rt.key, matches, self.view(rt), node)

    # ---- create

    def _namespace_ready(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise errors.not_found(NAMESPACES, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                rt.qualified,
                name,
                rt.group,
                rt.plural,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        dry_run: bool = False,
        manager: str = SELF_MANAGER,
    ) -> Obj:
        """A create without dynamic admission (the twin's own bootstrap objects)."""
        return self.commit(self.prepare_create(rt, namespace, body, dry_run, manager))

    def prepare_create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        dry_run: bool = False,
        manager: str = SELF_MANAGER,
        applied: bool = False,
    ) -> Write:
        """``manager`` is recorded as the owner of what the create set, unless ``applied``
        (the body comes from an apply that set its managedFields)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = self._input(rt, body)
        obj["apiVersion"] = rt.api_version if rt.group != "events.k8s.io" else "v1"
        obj["kind"] = rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        name = meta.get("name") or ""
        if rt.namespaced:
            self._namespace_ready(rt, namespace, name)
        for server_field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.tracks_generation:
            meta["generation"] = 1
        if rt.schema is not None and rt.has_status:
            obj.pop("status", None)  # the status subresource alone writes it
        asked_priority = (obj.get("spec") or {}).get("priority") if rt.key == "pods" else None
        apply_defaults(rt, obj)
        if not applied:
            meta.pop("managedFields", None)
            field_manager.record_update(rt.kind, None, obj, manager, "", now_rfc3339())
        if rt.key == "pods":
            self._admit_pod(rt, namespace, obj, asked_priority)
        scope = namespace if rt.namespaced else ""
        return Write(rt, scope, obj, dry_run=dry_run, manager=manager)

    def check(self, write: Write) -> None:
        """Schema validation, and for a create that the name is free."""
        rt, obj = write.rt, write.obj
        name = obj["metadata"].get("name") or ""
        causes = validate(rt, obj)
        if write.old is not None and not write.subresource:
            causes += validate_update(rt, write.old, obj)
        if causes:
            raise errors.invalid(rt, name, causes)
        if write.old is None and self.store.get(rt.key, write.namespace, name) is not None:
            raise errors.already_exists(rt, name)

    def commit(self, write: Write, checked: bool = False) -> Obj:
        """Validate (unless ``checked`` already) and store an admitted write; answer the object
        as the client sees it."""
        if not checked:
            self.check(write)
        rt, obj = write.rt, write.obj
        if write.old is not None:
            return self._store_update(rt, write.old, obj, write.dry_run)
        if rt.key == "services":
            self._allocate_service(rt, obj)
        if write.dry_run:
            return self.output(rt, obj)
        return self.output(rt, self.store.add(rt.key, obj))

    def _admit_pod(
        self, rt: ResourceType, namespace: str, pod: Obj, asked_priority: object
    ) -> None:
        """The built-in admission plugins for pods: ServiceAccount (the account must exist;
        mirror pods carry none), then Priority."""
        name, account = pod["metadata"]["name"], pod["spec"]["serviceAccountName"]
        service_account = self.store.get("serviceaccounts", namespace, account)
        mirror = MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {})
        if service_account is None and not mirror:
            raise errors.forbidden(
                rt.qualified,
                name,
                rt.group,
                rt.plural,
                f"error looking up service account {namespace}/{account}: serviceaccount "
                f'"{account}" not found',
            )
        admit_priority(rt, self.store, pod, asked_priority)

    def _allocate_service(self, rt: ResourceType, obj: Obj) -> None:
        spec = obj["spec"]
        wanted = spec.get("clusterIP")
        if wanted == "None":
            spec["clusterIPs"] = ["None"]
        elif wanted:
            if not self.service_ips.reserve(wanted):
                raise errors.invalid(
                    rt,
                    obj["metadata"]["name"],
                    [
                        (
                            "spec.clusterIPs",
                            "FieldValueInvalid",
                            f'Invalid value: []string{{"{wanted}"}}: failed to allocate IP '
                            f"{wanted}: provided IP is already allocated",
                        )
                    ],
                )
            spec["clusterIPs"] = [wanted]
        elif spec.get("type") != "ExternalName":
            spec["clusterIP"] = self.service_ips.allocate()
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port.setdefault("nodePort", next(self._node_ports))

    # ---- update and patch

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
        manager: str = SELF_MANAGER,
        dry_run: bool = False,
    ) -> Obj:
        write = self.prepare_update(rt, namespace, name, body, subresource, manager, dry_run)
        return self.commit(write)

    def prepare_update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
        manager: str = SELF_MANAGER,
        dry_run: bool = False,
    ) -> Write:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        new = self._input(rt, body)
        meta = new.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        meta["name"] = name
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            if rt.qualified in _CREATE_ON_UPDATE and not subresource:
                return self.prepare_create(rt, namespace, body, dry_run, manager)
            raise errors.not_found(rt, name)
        wanted_version = meta.get("resourceVersion")
        if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        return self._prepare_write(rt, current, new, subresource, manager, dry_run=dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
        manager: str = SELF_MANAGER,
        dry_run: bool = False,
    ) -> Obj:
        return self.commit(
            self.prepare_patch(
                rt, namespace, name, content_type, patch, subresource, manager, dry_run
            )
        )

    def prepare_patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
        manager: str = SELF_MANAGER,
        dry_run: bool = False,
    ) -> Write:
        if rt.schema is not None and content_type.startswith(STRATEGIC_PATCH):
            raise errors.unsupported_patch(JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
        current = self.get(rt, namespace, name)
        target = clone(self.output(rt, current))
        new = self._input(rt, apply_patch(content_type, target, patch))
        if not isinstance(new.get("metadata"), dict):
            raise errors.bad_request("metadata must be an object")
        if new["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        new["metadata"]["name"] = name
        return self._prepare_write(rt, current, new, subresource, manager, dry_run=dry_run)

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        config: Any,
        manager: str,
        force: bool,
        subresource: str = "",
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Server-side apply without dynamic admission: the object, and whether it was
        created."""
        write = self.prepare_apply(
            rt, namespace, name, config, manager, force, subresource, dry_run
        )
        return self.commit(write), write.old is None

    def prepare_apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        config: Any,
        manager: str,
        force: bool,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Write:
        """Server-side apply, merged and owned: a create when the object is absent, else an
        update (the operations admission sees, as the patch handler names them);
        ``dry_run`` answers what it would be and keeps nothing (kubectl diff --server-side)."""
        if not manager:
            raise errors.field_manager_required()
        if not isinstance(config, dict) or not isinstance(config.get("metadata", {}), dict):
            raise errors.bad_request("the body of an apply patch must be an object")
        config = self._input(rt, clone(config))
        if rt.schema is not None:
            config = prune(config, rt.schema)
        config.setdefault("metadata", {})["name"] = name
        current = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if current is None and subresource:
            raise errors.not_found(rt, name)
        if subresource == "status":
            config = {k: v for k, v in config.items() if k in ("apiVersion", "kind", "status")}
            config["metadata"] = {"name": name}
        elif rt.has_status:
            config.pop("status", None)
        live = None if current is None else clone(self.output(rt, current))
        merged = field_manager.apply(
            live, config, manager, force, rt.api_version, now_rfc3339(), subresource, rt.shape
        )
        if current is None:
            return self.prepare_create(rt, namespace, merged, dry_run, manager, applied=True)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        new = self._input(rt, merged)
        return self._prepare_write(
            rt, current, new, subresource, manager, applied=True, dry_run=dry_run
        )

    def _prepare_write(
        self,
        rt: ResourceType,
        current: Obj,
        new: Obj,
        subresource: str,
        manager: str = SELF_MANAGER,
        applied: bool = False,
        dry_run: bool = False,
    ) -> Write:
        old_meta = current["metadata"]
        if subresource == "status":
            merged = clone(current)
            merged["status"] = new.get("status") or {}
            if applied:
                merged["metadata"]["managedFields"] = new["metadata"].get("managedFields") or []
            new = merged
        elif subresource == "approval":
            merged = clone(current)
            conditions = (new.get("status") or {}).get("conditions") or []
            merged.setdefault("status", {})["conditions"] = conditions
            new = merged
        elif subresource == "finalize":
            merged = clone(current)
            merged["spec"]["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            new = merged
        else:
            meta = new["metadata"]
            for kept in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
                else:
                    meta.pop(kept, None)
            if "deletionGracePeriodSeconds" in old_meta:
                meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
            if rt.namespaced:
                meta["namespace"] = old_meta["namespace"]
            if rt.has_status or rt.key == "namespaces":
                if "status" in current:
                    new["status"] = clone(current["status"])
                else:
                    new.pop("status", None)
            if rt.key == "services":
                self._keep_service_allocations(current, new)
            if rt.key == "pods":
                new.setdefault("spec", {})
                if current["spec"].get("nodeName"):
                    new["spec"]["nodeName"] = current["spec"]["nodeName"]
        new["apiVersion"] = current["apiVersion"]
        new["kind"] = current["kind"]
        if rt.key != "namespaces":
            apply_defaults(rt, new)
        if not applied:
            field_manager.record_update(
                rt.kind, current, new, manager, subresource, now_rfc3339(), rt.shape
            )
        namespace = old_meta.get("namespace") or ""
        return Write(rt, namespace, new, current, subresource, dry_run, manager)

    def _store_update(self, rt: ResourceType, current: Obj, new: Obj, dry_run: bool) -> Obj:
        old_meta = current["metadata"]
        if rt.tracks_generation and _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if _same(current, new):
            return self.output(rt, current)
        if dry_run:
            return self.output(rt, new)
        if self._removable(new):
            return self.output(rt, self._remove(rt, new))
        return self.output(rt, self.store.replace(rt.key, new))

    @staticmethod
    def _keep_service_allocations(current: Obj, new: Obj) -> None:
        old_spec, spec = current.get("spec") or {}, new.setdefault("spec", {})
        for field in ("clusterIP", "clusterIPs"):
            if not spec.get(field) and old_spec.get(field):
                spec[field] = old_spec[field]
        old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if old_ports.get(port.get("port")) and not port.get("nodePort"):
                port["nodePort"] = old_ports[port.get("port")]

    # ---- delete

    @staticmethod
    def _removable(obj: Obj) -> bool:
        meta = obj["metadata"]
        return bool(
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
            and not (obj["kind"] == "Namespace" and (obj.get("spec") or {}).get("finalizers"))
        )

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        if rt.key == "services":
            self.service_ips.release((obj.get("spec") or {}).get("clusterIP"))
        if self.store.get(rt.key, *_key(obj)) is None:
            return obj
        return self.store.remove(rt.key, obj)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: DeleteOptions
    ) -> tuple[Obj, bool]:
        """Delete or start deleting; returns the object and whether it is gone."""
        current = self.get(rt, namespace, name)
        meta = current["metadata"]
        if options.uid and options.uid != meta["uid"]:
            raise errors.precondition_failed(
                rt,
                name,
                f"the UID in the precondition ({options.uid}) does not match the UID in record "
                f"({meta['uid']}). The object might have been deleted and then recreated",
            )
        if options.resource_version and options.resource_version != meta["resourceVersion"]:
            raise errors.precondition_failed(
                rt,
                name,
                f"the ResourceVersion in the precondition ({options.resource_version}) does not "
                f"match the ResourceVersion in record ({meta['resourceVersion']}). The object "
                "might have been modified",
            )
        terminating = rt.key == "namespaces" and meta.get("deletionTimestamp")
        if terminating and (current.get("spec") or {}).get("finalizers"):
            raise errors.conflict(rt, name, NAMESPACE_FINALIZING)
        grace = self._grace_period(rt, current, options)
        if options.dry_run:
            return self.output(rt, current), grace == 0
        new = clone(current)
        new_meta = new["metadata"]
        finalizers = new_meta.setdefault("finalizers", [])
        if options.propagation == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if options.propagation == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if rt.key == CRD_KEY and CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)  # its objects go first (the CRD's REST Delete)
        if not finalizers:
            new_meta.pop("finalizers")
        if meta.get("deletionTimestamp"):
            shorter = grace < (meta.get("deletionGracePeriodSeconds") or 0)
            if not shorter and new_meta.get("finalizers") == meta.get("finalizers"):
                return self.output(rt, current), False
        if rt.key == "namespaces":
            new_meta.setdefault("deletionTimestamp", now_rfc3339())
            new_meta["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            return self.output(rt, self.store.replace(rt.key, new)), False
        new_meta["deletionTimestamp"] = now_rfc3339(grace)
        new_meta["deletionGracePeriodSeconds"] = grace
        if self._removable(new):
            return self.output(rt, self._remove(rt, new)), True
        return self.output(rt, self.store.replace(rt.key, new)), False

    @staticmethod
    def _grace_period(rt: ResourceType, pod: Obj, options: DeleteOptions) -> int:
        if rt.key != "pods":
            return 0
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.grace_period is not None:
            return max(0, options.grace_period)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    @staticmethod
    def returns_deleted(rt: ResourceType) -> bool:
        return rt.key in _RETURN_DELETED

    # ---- namespaces

    def finalize_namespaces(self) -> None:
        """One pass of the namespace controller: empty terminating namespaces, then drop them."""
        for ns in list(self.store.scan("namespaces")):
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for rt in self.catalog.all():
                if not rt.namespaced or rt.storage:
                    continue
                for obj in list(self.store.scan(rt.key, name)):
                    remaining += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.delete(rt, name, obj["metadata"]["name"], DeleteOptions())
            if remaining:
                continue
            final = clone(ns)
            final["spec"]["finalizers"] = []
            if final["metadata"].get("finalizers"):
                self.store.replace("namespaces", final)
                continue
            self.store.remove("namespaces", final)

    # ---- custom resource definitions

    def reconcile_crds(self) -> None:
        """One pass of apiextensions-apiserver's controllers: accept the names of new CRDs and
        establish them, empty deleted ones of their objects and let them go; then serve what
        the established ones define."""
        crds = self.resource_type_of(CRD_KEY)
        for crd in list(self.store.scan(CRD_KEY)):
            name = crd["metadata"]["name"]
            if crd["metadata"].get("deletionTimestamp"):
                self._clean_up_crd(crds, crd)
                continue
            status = named(crd, self.store.scan(CRD_KEY), now_rfc3339())
            if status is not None:
                self.update(crds, "", name, {**crd, "status": status}, "status", SELF_MANAGER)
        self.catalog.refresh(self.store.scan(CRD_KEY))

    def resource_type_of(self, key: str) -> ResourceType:
        return next(rt for rt in self.catalog.all() if rt.key == key)

    def _clean_up_crd(self, crds: ResourceType, crd: Obj) -> None:
        types = resource_types(crd)
        if types:
            for obj in list(self.store.scan(types[0].key)):
                if not obj["metadata"].get("deletionTimestamp"):
                    meta = obj["metadata"]
                    self.delete(types[0], meta.get("namespace", ""), meta["name"], DeleteOptions())
            if self.store.count(types[0].key):
                return
        finalizers = crd["metadata"].get("finalizers") or []
        if CLEANUP_FINALIZER in finalizers:
            released = clone(crd)
            released["metadata"]["finalizers"] = [f for f in finalizers if f != CLEANUP_FINALIZER]
            self.update(crds, "", crd["metadata"]["name"], released, manager=SELF_MANAGER)

    # ---- bootstrap

    def bootstrap(self, api_host: str, api_port: int) -> None:
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(NAMESPACES, "", {"metadata": {"name": name}})
        for rt in RESOURCES:
            group = group_of(rt)
            for plural, obj in group.bootstrap if group else ():
                if plural == rt.plural:
                    self.create(rt, "", clone(obj))
        services = resource("", "v1", "services")
        endpoints = resource("", "v1", "endpoints")
        kubernetes_ip = self.settings.network.service_ip(1)
        labels = {"component": "apiserver", "provider": "kubernetes"}
        self.create(
            services,
            "default",
            {
                "metadata": {"name": "kubernetes", "labels": labels},
                "spec": {
                    "clusterIP": kubernetes_ip,
                    "ports": [{"name": "https", "port": 443, "targetPort": 443}],
                },
            },
        )
        self.create(
            endpoints,
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                },
                "subsets": [
                    {
                        "addresses": [{"ip": api_host}],
                        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
                    }
                ],
            },
        )
        # The API server keeps its own Service's slice, as it keeps its Endpoints.
        self.create(
            resource("discovery.k8s.io", "v1", "endpointslices"),
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"kubernetes.io/service-name": "kubernetes"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [api_host], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
            },
        )


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]
