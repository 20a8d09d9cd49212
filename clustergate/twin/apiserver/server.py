"""The twin's Kubernetes API server: HTTPS on loopback, bearer tokens, the REST API.

Routing follows k8s.io/apiserver's RequestInfo: /api/v1/... and /apis/<group>/<version>/...,
then [namespaces/<ns>/]<resource>[/<name>[/<subresource>[/<proxy path>]]].
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from clustergate.twin.apiserver import (
    admission,
    api_faults,
    discovery,
    errors,
    eviction,
    openapi,
    proxy,
    reviews,
    tables,
)
from clustergate.twin.apiserver.auth import (
    ANONYMOUS,
    Attributes,
    Identity,
    authorize,
    denial,
)
from clustergate.twin.apiserver.errors import ApiError
from clustergate.twin.apiserver.json_path import set_at, value_at
from clustergate.twin.apiserver.patches import APPLY_PATCH, apply_patch
from clustergate.twin.apiserver.paths import ResourcePath, parse_resource, split_group_version
from clustergate.twin.apiserver.pod_streams import exec_in_pod, stream_logs
from clustergate.twin.apiserver.rbac import GROUP as RBAC_GROUP
from clustergate.twin.apiserver.rbac import EscalationCheck, RbacAuthorizer
from clustergate.twin.apiserver.registry import (
    WATCH_EXPIRED,
    DeleteOptions,
    ListQuery,
    Registry,
    Write,
    clone,
)
from clustergate.twin.apiserver.resources import VIRTUAL, ResourceType, resource
from clustergate.twin.apiserver.sa_tokens import Issuer, token_request
from clustergate.twin.apiserver.selectors import selector_string
from clustergate.twin.apiserver.store import Store, Watcher
from clustergate.twin.apiserver.structural_schema import unknown_fields
from clustergate.twin.apiserver.tls import write_serving_files
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

Obj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
SERVICES = resource("", "v1", "services")
ENDPOINTS = resource("", "v1", "endpoints")
SERVICE_ACCOUNTS = resource("", "v1", "serviceaccounts")
#: Paths anyone may read without a token (system:public-info-viewer and the OIDC documents,
#: which EKS serves publicly).
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz", "/.well-known/", "/openid/", "/id/")
#: Default watch length when the client names none (the real server picks 30-60 min).
DEFAULT_WATCH_SECONDS = 1800
#: How often an idle watch looks whether its client has gone.
_IDLE_CHECK_S = 5.0
_ADMIN_USER = "kubernetes-admin"
_COMPONENTS_USER = "system:twin-components"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class ApiServer:
    def __init__(
        self,
        settings: TwinSettings,
        netmap: Netmap,
        kubelets: KubeletHub,
        *,
        bookmark_interval: float = 5.0,
        watch_history: int = 50_000,
        fault_seed: int | str | None = None,
    ) -> None:
        """``fault_seed`` makes the requests that settings.api_fault_rate fails reproducible."""
        self.settings = settings
        self.netmap = netmap
        self.kubelets = kubelets
        self.bookmark_interval = bookmark_interval
        self.store = Store(watch_history)
        self.registry = Registry(self.store, settings)
        self.admission = admission.Admission(self.store, netmap)
        self.rbac = RbacAuthorizer(self.store)
        self.escalation = EscalationCheck(self.rbac)
        self.issuer_keys = Issuer(settings.network.region)
        self.admin_token = secrets.token_urlsafe(32)
        #: Cluster-admin too, for the twin's own components (controllers, kubelets): requests
        #: bearing it are never failed by api_fault_rate, which is for the clients under test.
        self.internal_token = secrets.token_urlsafe(32)
        admin_groups = ("system:masters", "system:authenticated")
        self._identities: dict[str, Identity] = {
            self.admin_token: Identity(_ADMIN_USER, admin_groups),
            self.internal_token: Identity(_COMPONENTS_USER, admin_groups),
        }
        self._counts: Counter[tuple[str, str]] = Counter()
        self.faults = api_faults.ApiFaults(settings.api_fault_rate, fault_seed)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.ca_pem_path = str(Path(settings.state_dir) / "apiserver" / "ca.crt")

    # ---- public surface

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.issuer_keys.url

    def add_token(self, token: str, user: str, groups: list[str]) -> None:
        """A static token (as --token-auth-file gives one); what it may do is what the RBAC
        objects bind to ``user`` or its groups."""
        all_groups = tuple(dict.fromkeys([*groups, "system:authenticated"]))
        self._identities[token] = Identity(user, all_groups)

    def request_counts(self) -> dict[tuple[str, str], int]:
        return dict(self._counts)

    async def start(self) -> None:
        network = self.settings.network
        files = write_serving_files(
            Path(self.ca_pem_path).parent, network.cluster_domain, network.service_ip(1)
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.registry.bootstrap("127.0.0.1", self.port)
        app = web.Application(
            middlewares=[self._inject_faults, self._errors], client_max_size=64 * 1024 * 1024
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=files.ssl_context())
        await site.start()
        self.netmap.publish_url(self.issuer_keys.public_base, self.url)
        self.netmap.publish(network.service_ip(1), 443, ("127.0.0.1", self.port))
        self._tasks.append(asyncio.create_task(self._apiserver_controllers()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.store.close_watchers()
        await self.admission.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _apiserver_controllers(self) -> None:
        """The controllers that run inside kube-apiserver: namespace finalization and the
        CRD establishing, naming and finalizer controllers."""
        while True:
            await asyncio.sleep(0.2)
            self.registry.finalize_namespaces()
            self.registry.reconcile_crds()

    # ---- middleware

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return json_response(error.status(), error.code, error.headers)
        except web.HTTPException:
            raise
        except (ValueError, KeyError, TypeError) as error:
            failure = errors.bad_request(f"bad request: {error}")
            return json_response(failure.status(), 400)

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """settings.api_fault_rate: fail a share of token-bearing requests; never the OIDC
        documents (STS and other outside parties read those, not the clients under test) nor
        requests with the internal token."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        bearer = scheme.lower() == "bearer" and token.strip() != self.internal_token
        if not bearer or self._oidc_document(request.path):
            return await handler(request)
        fault = self.faults.draw()
        if fault is None:
            return await handler(request)
        self._counts[("fault", fault)] += 1
        if fault == "429":
            error = api_faults.too_many_requests()
        elif fault == "500":
            error = api_faults.internal_error()
        else:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        return json_response(error.status(), error.code, error.headers)

    def _oidc_document(self, path: str) -> bool:
        return path.startswith(("/.well-known/", "/openid/", self.issuer_keys.path))

    def _authenticate(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise errors.unauthorized()
        identity = self.identity_for(token.strip())
        if identity is None:
            raise errors.unauthorized()
        return identity

    def identity_for(self, token: str) -> Identity | None:
        identity = self._identities.get(token)
        if identity is not None:
            return identity
        verified = self.issuer_keys.verify(token)
        if verified is None:
            return None
        if self.store.get("serviceaccounts", verified.namespace, verified.service_account) is None:
            return None
        return Identity(
            f"system:serviceaccount:{verified.namespace}:{verified.service_account}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{verified.namespace}",
                "system:authenticated",
            ),
        )

    # ---- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        identity = self._authenticate(request)
        if identity is ANONYMOUS and path.startswith(PUBLIC_PATHS):
            return self._public(path)
        gv = split_group_version(path)
        if gv is not None and gv.parts and gv.parts != ("",):
            target = parse_resource(gv, self.registry.catalog.lookup)
            if target is None:
                raise errors.path_not_found()
            return await self._resource_request(request, identity, target)
        verb = request.method.lower()
        if not authorize(self.rbac, identity, Attributes(verb=verb, path=path))[0]:
            raise ApiError(
                403,
                "Forbidden",
                f"forbidden: {denial(identity, Attributes(verb=verb, path=path))}",
                {},
            )
        self._counts[(verb, path)] += 1
        return self._non_resource(path)

    def _public(self, path: str) -> web.Response:
        issuer_path = self.issuer_keys.path
        if path.startswith(issuer_path):
            path = path[len(issuer_path) :] or "/"
        if path == "/.well-known/openid-configuration":
            return json_response(self.issuer_keys.openid_configuration())
        if path in ("/openid/v1/jwks", "/keys"):
            return json_response(self.issuer_keys.jwks())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.version_info(self.settings.network.kubernetes_version))
        raise ApiError(
            403,
            "Forbidden",
            f'forbidden: User "system:anonymous" cannot get path "{path}"',
            {},
        )

    def _non_resource(self, path: str) -> web.Response:
        stripped = path.rstrip("/") or "/"
        served = self.registry.catalog.group_versions()
        if stripped == "/api":
            return json_response(discovery.api_versions(f"127.0.0.1:{self.port}"))
        if stripped == "/apis":
            return json_response(discovery.api_group_list(served))
        gv = split_group_version(stripped + "/")
        if gv is not None:
            found = discovery.api_resource_list(gv.group, gv.version, served)
            if found is not None:
                return json_response(found)
        if stripped.startswith("/apis/") and stripped.count("/") == 2:
            group = discovery.api_group(stripped.split("/")[2], served)
            if group is not None:
                return json_response(group)
        if stripped in ("/healthz", "/livez", "/readyz") or stripped.startswith("/healthz/"):
            return web.Response(text="ok")
        if stripped == "/version":
            return json_response(discovery.version_info(self.settings.network.kubernetes_version))
        if stripped == "/openapi/v3":
            return json_response(openapi.root(self.settings.network.kubernetes_version, served))
        if stripped.startswith("/openapi/v3/"):
            docs = openapi.documents(self.settings.network.kubernetes_version, served)
            doc = docs.get(stripped.removeprefix("/openapi/v3/"))
            if doc is not None:
                return web.Response(body=doc, content_type="application/json")
        if stripped.startswith(("/.well-known/", "/openid/", "/id/")):
            return self._public(stripped)
        raise errors.path_not_found()

    # ---- resources

    @staticmethod
    def _verb(request: web.Request, target: ResourcePath) -> str:
        method = request.method
        if target.subresource in ("proxy",):
            return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
                method, "delete"
            )
        if target.subresource == "exec":
            return "create"
        if method == "GET":
            if target.collection:
                return "watch" if _flag(request.query.get("watch")) else "list"
            return "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "deletecollection" if target.collection else "delete"
        raise errors.method_not_allowed(method)

    async def _resource_request(
        self, request: web.Request, identity: Identity, target: ResourcePath
    ) -> web.StreamResponse:
        verb = self._verb(request, target)
        rt = target.rt
        attrs = Attributes(
            verb=verb,
            group=rt.group,
            resource=rt.plural,
            subresource=target.subresource,
            namespace=target.namespace,
            name=target.name,
        )
        if not authorize(self.rbac, identity, attrs)[0]:
            raise errors.forbidden(
                rt.qualified, target.name, rt.group, rt.plural, denial(identity, attrs)
            )
        counted = f"{rt.plural}/{target.subresource}" if target.subresource else rt.plural
        self._counts[(verb, counted)] += 1
        if not target.subresource and verb not in rt.verbs:
            raise errors.method_not_allowed(verb)
        if rt.namespaced and not target.namespace and verb in ("create", "deletecollection"):
            raise errors.method_not_allowed(verb)  # only list and watch span namespaces
        if rt.plural in VIRTUAL:
            return await self._review(request, identity, target)
        if target.subresource:
            return await self._subresource(request, identity, target)
        return await self._crud(request, identity, verb, target)

    async def _patch(
        self, request: web.Request, identity: Identity, target: ResourcePath, subresource: str
    ) -> web.Response:
        """PATCH in any of its four types; the Content-Type names which. Admission sees an
        UPDATE, or a CREATE when an apply creates (as the patch handler names them)."""
        content_type = request.headers.get("Content-Type", "")
        body = await self._body(request)
        rt, ns, name = target.rt, self._scope(target), target.name
        dry_run = bool(request.query.get("dryRun"))
        registry = self.registry
        if content_type.split(";")[0].strip() == APPLY_PATCH:
            force = _flag(request.query.get("force"))
            manager = request.query.get("fieldManager", "")
            write = registry.prepare_apply(rt, ns, name, body, manager, force, subresource, dry_run)
            created = write.old is None
            return json_response(
                await self._admitted(identity, target, write), 201 if created else 200
            )
        manager = _field_manager(request)
        write = registry.prepare_patch(
            rt, ns, name, content_type, body, subresource, manager, dry_run
        )
        return json_response(await self._admitted(identity, target, write))

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            content_type = request.headers.get("Content-Type", "")
            if content_type.startswith(APPLY_PATCH):
                try:
                    return yaml.safe_load(raw)
                except yaml.YAMLError as yaml_error:
                    raise errors.bad_request(f"error decoding YAML: {yaml_error}") from yaml_error
            if "yaml" in content_type:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f'include: application/json (got "{content_type}")',
                ) from error
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {error}"
            ) from error

    @staticmethod
    def _scope(target: ResourcePath) -> str:
        return target.namespace if target.rt.namespaced else ""

    async def _admitted(self, identity: Identity, target: ResourcePath, write: Write) -> Obj:
        """Dynamic admission around a prepared write: mutating webhooks, schema validation,
        policies and validating webhooks; then the write is stored. Through the scale
        subresource they see (and may change) the Scale, as upstream admits it."""
        rt = write.rt
        meta = write.obj.get("metadata") or {}
        scaled = write.subresource == "scale"
        attrs = admission.Attributes(
            operation=write.operation,
            group=rt.group,
            version=rt.version,
            resource=rt.plural,
            subresource=write.subresource,
            namespace=write.namespace,
            name=meta.get("name") or "",
            kind="Scale" if scaled else rt.kind,
            namespaced=rt.namespaced,
            kind_group_version=("autoscaling", "v1") if scaled else None,
        )
        output = self.registry.output
        seen = (lambda obj: _scale_of(rt, output(rt, obj))) if scaled else partial(output, rt)
        old = seen(write.old) if write.old is not None else None
        review = admission.AdmissionRequest(
            attrs, seen(write.obj), old, (identity.user, identity.groups), write.dry_run
        )
        await self.admission.mutate(review)
        if scaled and review.obj is not None:
            replicas = (review.obj.get("spec") or {}).get("replicas", 0)
            set_at(write.obj, _replicas_path(rt), replicas)
        elif review.obj is not None and rt.group != "events.k8s.io":
            # The webhooks saw the object as served; it is kept in the version it is stored in.
            write.obj = {**review.obj, "apiVersion": write.obj.get("apiVersion")}
        if rt.group == RBAC_GROUP and not identity.is_admin:
            refusal = self.escalation.refusal(identity, rt.plural, write.namespace, write.obj)
            if refusal is not None:
                name = meta.get("name") or ""
                raise errors.forbidden(rt.qualified, name, rt.group, rt.plural, refusal)
        self.registry.check(write)
        await self.admission.validate(review)
        return self.registry.commit(write, checked=True)

    async def _admitted_delete(self, identity: Identity, target: ResourcePath) -> None:
        rt, ns = target.rt, self._scope(target)
        current = self.registry.output(rt, self.registry.get(rt, ns, target.name))
        attrs = admission.Attributes(
            "DELETE", rt.group, rt.version, rt.plural, "", ns, target.name, rt.kind, rt.namespaced
        )
        review = admission.AdmissionRequest(attrs, None, current, (identity.user, identity.groups))
        await self.admission.mutate(review)
        await self.admission.validate(review)

    async def _crud(
        self, request: web.Request, identity: Identity, verb: str, target: ResourcePath
    ) -> web.StreamResponse:
        rt, ns, query = target.rt, self._scope(target), request.query
        registry = self.registry
        table = tables.table_request(request.headers.get("Accept", ""), query.get("includeObject"))
        if verb == "get":
            obj = registry.get(rt, ns, target.name)
            if table is not None:
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return json_response(tables.to_table(rt, [obj], meta, table, registry.view(rt)))
            return json_response(registry.output(rt, obj))
        if verb in ("list", "watch"):
            list_query = ListQuery(
                namespace=ns,
                label_selector=query.get("labelSelector", ""),
                field_selector=query.get("fieldSelector", ""),
                limit=int(query.get("limit") or 0),
                continue_token=query.get("continue", ""),
            )
            if verb == "watch":
                return await self._watch(request, target, list_query, table)
            if table is not None:
                listed = registry.list(rt, list_query, stored=True)
                return json_response(
                    tables.to_table(
                        rt, listed["items"], listed["metadata"], table, registry.view(rt)
                    )
                )
            return json_response(registry.list(rt, list_query))
        manager = _field_manager(request)
        if verb == "create":
            dry_run = bool(query.get("dryRun"))
            body = await self._body(request)
            warnings = _field_validation(rt, body, query.get("fieldValidation", ""))
            write = registry.prepare_create(rt, ns, body, dry_run, manager)
            return json_response(await self._admitted(identity, target, write), 201, warnings)
        if verb == "update":
            body = await self._body(request)
            warnings = _field_validation(rt, body, query.get("fieldValidation", ""))
            dry_run = bool(query.get("dryRun"))
            write = registry.prepare_update(rt, ns, target.name, body, "", manager, dry_run)
            return json_response(await self._admitted(identity, target, write), 200, warnings)
        if verb == "patch":
            return await self._patch(request, identity, target, "")
        if verb == "delete":
            await self._admitted_delete(identity, target)
            options = DeleteOptions.parse(dict(query), await self._body(request))
            obj, gone = registry.delete(rt, ns, target.name, options)
            if gone and not registry.returns_deleted(rt):
                details = {"name": target.name, "kind": rt.plural, "uid": obj["metadata"]["uid"]}
                if rt.group:
                    details["group"] = rt.group
                return json_response(errors.success_status(None, details))
            # k8s.io/apiserver handlers/delete.go: 202 only for a pending delete that asked
            # orphanDependents=false; every other answer is 200, pending or not.
            pending_cascade = not gone and options.orphan_dependents is False
            return json_response(obj, 202 if pending_cascade else 200)
        return await self._delete_collection(request, target)

    async def _delete_collection(self, request: web.Request, target: ResourcePath) -> web.Response:
        """Delete what the selectors list; answer that list as it was before the deletes, as
        the generic registry's DeleteCollection does (objects gone meanwhile are skipped)."""
        rt, ns, query = target.rt, self._scope(target), request.query
        options = DeleteOptions.parse(dict(query), await self._body(request))
        listed = self.registry.list(
            rt,
            ListQuery(
                namespace=ns,
                label_selector=query.get("labelSelector", ""),
                field_selector=query.get("fieldSelector", ""),
            ),
        )
        for obj in listed["items"]:
            meta = obj["metadata"]
            try:
                self.registry.delete(rt, meta.get("namespace", ""), meta["name"], options)
            except ApiError as error:
                if error.code != 404:
                    raise
        return json_response(listed)

    async def _watch(
        self,
        request: web.Request,
        target: ResourcePath,
        query: ListQuery,
        table: tables.TableRequest | None,
    ) -> web.StreamResponse:
        rt = target.rt
        params = request.query
        version = params.get("resourceVersion", "")
        bookmarks = _flag(params.get("allowWatchBookmarks"))
        initial = _flag(params.get("sendInitialEvents"))
        timeout = float(params.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        watcher = self.registry.watcher(rt, query)
        if table is not None:
            watcher.view = tables.watch_view(rt, table, watcher.view)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        if version and version != "0" and not initial:
            since = int(version)
            if self.store.too_old(since):
                await response.prepare(request)
                gone = errors.gone(WATCH_EXPIRED).status()
                await response.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
                return response
            self.store.watch(watcher, since)
        else:
            for obj in self.store.scan(rt.key, query.namespace, node=watcher.node):
                if watcher.matches(obj):
                    view = watcher.view(obj) if watcher.view else obj
                    watcher.push(orjson.dumps({"type": "ADDED", "object": view}) + b"\n")
            if initial:
                watcher.push(self._bookmark(rt, initial_end=True))
            self.store.watch(watcher, None)
        try:
            await response.prepare(request)
            await self._pump_watch(request, response, watcher, rt, timeout, bookmarks)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
        return response

    def _bookmark(self, rt: ResourceType, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(self.store.revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    async def _pump_watch(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watcher: Watcher,
        rt: ResourceType,
        timeout: float,
        bookmarks: bool,
    ) -> None:
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        # One pending get, kept across idle wake-ups: a wait_for per wake-up would cancel and
        # recreate it, and with a watch per kubelet that churn was a fifth of a big twin's time.
        getter: asyncio.Future[bytes | None] | None = None
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if request.transport is None or request.transport.is_closing():
                    return
                if getter is None and not watcher.queue.empty():
                    line = watcher.queue.get_nowait()
                else:
                    if getter is None:
                        getter = asyncio.ensure_future(watcher.queue.get())
                    wake = min(deadline, next_bookmark if bookmarks else deadline)
                    wake = min(wake, now + _IDLE_CHECK_S)
                    done, _ = await asyncio.wait({getter}, timeout=max(wake - now, 0.01))
                    if not done:
                        # A bookmark says "you have seen everything up to this revision": not
                        # while an event waits in the queue (handed to the getter, not yet
                        # taken). A client that resumed from such a bookmark lost that event.
                        due = bookmarks and time.monotonic() >= next_bookmark
                        if due and watcher.queue.empty():
                            await response.write(self._bookmark(rt))
                            next_bookmark = time.monotonic() + self.bookmark_interval
                        continue
                    line, getter = getter.result(), None
                if line is None:
                    return
                chunk = [line]
                while not watcher.queue.empty() and len(chunk) < 500:
                    more = watcher.queue.get_nowait()
                    if more is None:
                        await response.write(b"".join(chunk))
                        return
                    chunk.append(more)
                await response.write(b"".join(chunk))
        finally:
            if getter is not None:
                getter.cancel()

    # ---- subresources

    async def _subresource(
        self, request: web.Request, identity: Identity, target: ResourcePath
    ) -> web.StreamResponse:
        rt, ns, name, sub = target.rt, self._scope(target), target.name, target.subresource
        registry = self.registry
        method = request.method
        if sub in ("status", "finalize", "approval"):
            if method == "GET":
                return json_response(registry.output(rt, registry.get(rt, ns, name)))
            if method == "PUT":
                body = await self._body(request)
                manager, dry_run = _field_manager(request), bool(request.query.get("dryRun"))
                write = registry.prepare_update(rt, ns, name, body, sub, manager, dry_run)
                return json_response(await self._admitted(identity, target, write))
            if method == "PATCH":
                return await self._patch(request, identity, target, sub)
        elif sub == "scale":
            return await self._scale(request, identity, target)
        elif sub == "binding" and method == "POST":
            return json_response(self._bind(ns, name, await self._body(request)), 201)
        elif sub == "eviction" and method == "POST":
            ignore = self.settings.has_fault("eviction-ignores-pdb")
            body = await self._body(request)
            return json_response(eviction.evict(registry, ns, name, body, ignore), 201)
        elif sub == "log" and method == "GET":
            return await stream_logs(request, self.kubelets, registry.get(rt, ns, name))
        elif sub == "exec" and method in ("GET", "POST"):
            return await exec_in_pod(request, self.kubelets, registry.get(rt, ns, name))
        elif sub == "proxy":
            return await self._proxy(request, target)
        elif sub == "token" and method == "POST":
            account = registry.get(SERVICE_ACCOUNTS, ns, name)
            body = await self._body(request)
            answer = token_request(
                self.issuer_keys,
                ns,
                account,
                body,
                lambda pod_ns, pod_name: self.store.get("pods", pod_ns, pod_name),
            )
            return json_response(answer, 201)
        raise errors.method_not_allowed(method.lower())

    def _bind(self, namespace: str, name: str, body: Any) -> Obj:
        if not isinstance(body, dict) or not (body.get("target") or {}).get("name"):
            raise errors.ApiError(
                422,
                "Invalid",
                f'Binding "{name}" is invalid: target.name: Required value',
            )
        node = body["target"]["name"]
        pod = self.registry.get(PODS, namespace, name)
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict(
                PODS, name, f"pod {name} is being deleted, cannot be assigned to a host"
            )
        current = pod["spec"].get("nodeName")
        if current:
            raise errors.conflict(PODS, name, f'pod {name} is already assigned to node "{current}"')
        bound = clone(pod)
        bound["spec"]["nodeName"] = node
        conditions = [
            c for c in bound["status"].get("conditions") or [] if c.get("type") != "PodScheduled"
        ]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        bound["status"]["conditions"] = conditions
        self.store.replace("pods", bound)
        return errors.success_status(201)

    async def _scale(
        self, request: web.Request, identity: Identity, target: ResourcePath
    ) -> web.Response:
        rt, ns, name = target.rt, self._scope(target), target.name
        obj = self.registry.get(rt, ns, name)
        scale = _scale_of(rt, obj)
        if request.method == "GET":
            return json_response(scale)
        body = await self._body(request)
        if request.method == "PATCH":
            body = apply_patch(request.headers.get("Content-Type", ""), clone(scale), body)
        elif request.method != "PUT":
            raise errors.method_not_allowed(request.method.lower())
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a Scale object")
        wanted_version = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        replicas = (body.get("spec") or {}).get("replicas", 0)
        updated = clone(obj)
        set_at(updated, _replicas_path(rt), replicas)
        dry_run = bool(request.query.get("dryRun"))
        manager = _field_manager(request)
        write = self.registry.prepare_update(rt, ns, name, updated, "scale", manager, dry_run)
        return json_response(_scale_of(rt, await self._admitted(identity, target, write)))

    async def _proxy(self, request: web.Request, target: ResourcePath) -> web.Response:
        ns = self._scope(target)
        scheme, name, port = proxy.split_name(target.name)
        rt = target.rt
        if rt.plural == "pods":
            pod = self.registry.get(PODS, ns, name)
            address = proxy.pod_target(pod, port)
            scopes = tuple(s for s in [(pod.get("spec") or {}).get("nodeName")] if s)
        elif rt.plural == "services":
            service = self.registry.get(SERVICES, ns, name)
            address = proxy.service_target(service, self.store.get("endpoints", ns, name), port)
            scopes = ()
        else:
            node = self.registry.get(NODES, "", name)
            address = proxy.node_target(node, port)
            scopes = (name,)
        return await proxy.forward(request, self.netmap, address, target.rest, scopes, scheme)

    # ---- reviews

    async def _review(
        self, request: web.Request, identity: Identity, target: ResourcePath
    ) -> web.Response:
        if request.method != "POST" or target.name:
            raise errors.method_not_allowed(request.method.lower())
        body = await self._body(request)
        plural = target.rt.plural
        if plural == "bindings":
            name = ((body or {}).get("metadata") or {}).get("name", "")
            return json_response(self._bind(target.namespace, name, body), 201)
        if plural == "selfsubjectaccessreviews":
            return json_response(reviews.self_subject_access_review(self.rbac, identity, body), 201)
        if plural == "selfsubjectrulesreviews":
            return json_response(reviews.self_subject_rules_review(self.rbac, identity, body), 201)
        if plural == "selfsubjectreviews":
            return json_response(reviews.self_subject_review(identity), 201)
        token = ((body or {}).get("spec") or {}).get("token", "")
        return json_response(reviews.token_review(self.identity_for(token), body), 201)


def _field_validation(rt: ResourceType, body: Any, mode: str) -> dict[str, str] | None:
    """fieldValidation of a custom object's create or update: Strict refuses fields its
    schema does not know (400, the strict decoder's words), Warn (the default) answers them
    as Warning headers, Ignore says nothing; the fields are pruned either way."""
    if rt.schema is None or not isinstance(body, dict) or mode == "Ignore":
        return None
    unknown = unknown_fields(body, rt.schema)
    if not unknown:
        return None
    listed = [f'unknown field "{path}"' for path in unknown]
    if mode == "Strict":
        raise errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {', '.join(listed)}"
        )
    return {"Warning": ", ".join(f"299 - {orjson.dumps(text).decode()}" for text in listed)}


def _field_manager(request: web.Request) -> str:
    """The fieldManager parameter, else the User-Agent's product, as k8s.io/apiserver's
    managerOrUserAgent picks it for Update operations."""
    named = request.query.get("fieldManager", "")
    return named or request.headers.get("User-Agent", "").split("/")[0]


def _replicas_path(rt: ResourceType) -> str:
    """Where a Scale's spec.replicas is kept in the scaled object."""
    return rt.scale_paths[0] if rt.scale_paths else ".spec.replicas"


def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
    if rt.scale_paths:
        return _custom_scale(rt, obj)
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": selector_string(spec.get("selector") or {}),
        },
    }


def _custom_scale(rt: ResourceType, obj: Obj) -> Obj:
    """A custom resource's Scale, read from the paths its CRD names."""
    spec_path, status_path, selector_path = rt.scale_paths
    meta = obj["metadata"]
    status: Obj = {"replicas": value_at(obj, status_path) or 0}
    selector = value_at(obj, selector_path) if selector_path else None
    if selector:
        status["selector"] = selector
    scale_meta = {
        key: meta[key]
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        if key in meta
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": value_at(obj, spec_path) or 0},
        "status": status,
    }
