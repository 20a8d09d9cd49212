"""A small async Kubernetes client for the twin's own components.

The twin's controllers, kubelets and add-ons are API clients of the twin's API server, as their
real counterparts are of a real one: HTTPS with the cluster CA, a bearer token, the REST paths
and verbs of the Kubernetes API. :class:`KubeClient` carries the requests (with bounded retries
on 429, 5xx and dropped connections, honouring Retry-After); :meth:`KubeClient.watch` is a
resuming watch stream; :class:`Informer` keeps a local cache of one collection in step with it,
as client-go's informers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

log = logging.getLogger(__name__)

Obj = dict[str, Any]
#: Called with (event type, new object, previous object or None) for ADDED/MODIFIED/DELETED.
Handler = Callable[[str, Obj, Obj | None], None]

_PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Answers that say the request was not carried out, so any verb may be sent again.
_NOT_DONE_STATUSES = frozenset({429, 503})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code, ``body`` the decoded Status (if any).
    ``status`` 0 means no answer came (the connection failed or was dropped)."""

    def __init__(self, method: str, path: str, status: int, body: Obj) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


class ResourceExpired(Exception):
    """A watch asked for a resourceVersion the server no longer has (410 Gone)."""


def resource_path(
    group_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/api/v1/namespaces/ns/pods/name/status`` and the like."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [root]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def object_key(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as client-go keys caches."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


class KubeClient:
    """Async client for one API server. Create inside the event loop that uses it."""

    def __init__(
        self,
        url: str,
        ca_pem_path: str,
        token: str,
        *,
        max_retries: int = 6,
        user_agent: str = "clustergate-twin",
    ) -> None:
        self.url = url.rstrip("/")
        self.ca_pem_path = ca_pem_path
        self._token = token
        self._max_retries = max_retries
        self._ssl = ssl.create_default_context(cafile=ca_pem_path)
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                headers=self._headers,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """One API call with bounded retries (see _retryable); returns the decoded JSON answer."""
        data = None if body is None else orjson.dumps(body)
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        delay = 0.2
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                async with self._http().request(
                    method, self.url + path, params=query, data=data, headers=headers
                ) as response:
                    decoded = _decode(await response.read())
                    if response.status < 300:
                        return decoded
                    if not last and _retryable(method, response.status, decoded):
                        await asyncio.sleep(_retry_after(response, delay))
                        delay = min(delay * 2, 5.0)
                        continue
                    raise ApiError(method, path, response.status, decoded)
            except (
                TimeoutError,
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
            ) as error:
                if last or method not in _IDEMPOTENT:
                    body = {"reason": "ConnectionFailed", "message": f"no answer: {error!r}"}
                    raise ApiError(method, path, 0, body) from error
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def get(self, path: str, **params: Any) -> Obj:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Obj:
        """All items of a collection, following ``continue`` tokens; the answer carries the
        first page's metadata (resourceVersion) and every item."""
        params: dict[str, Any] = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": page_size,
        }
        first = await self.get(path, **params)
        items = list(first.get("items") or [])
        token = first.get("metadata", {}).get("continue")
        while token:
            page = await self.get(path, **params, **{"continue": token})
            items.extend(page.get("items") or [])
            token = page.get("metadata", {}).get("continue")
        first["items"] = items
        return first

    async def create(self, path: str, body: Obj, **params: Any) -> Obj:
        return await self.request("POST", path, body=body, params=params)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body=body)

    async def patch(self, path: str, body: Any, kind: str = "merge") -> Obj:
        return await self.request("PATCH", path, body=body, content_type=_PATCH_TYPES[kind])

    async def delete(
        self,
        path: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        uid: str | None = None,
    ) -> Obj | None:
        """DELETE; a 404 (already gone) answers None."""
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            return await self.request("DELETE", path, body=options)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def post_subresource(self, path: str, subresource: str, body: Obj) -> Obj:
        """POST to a subresource: binding, eviction, token."""
        return await self.request("POST", f"{path}/{subresource}", body=body)

    async def update_status(self, path: str, body: Obj) -> Obj:
        """PUT the object to its status subresource (optimistic concurrency applies)."""
        return await self.request("PUT", f"{path}/status", body=body)

    async def patch_status(self, path: str, body: Any, kind: str = "merge") -> Obj:
        return await self.patch(f"{path}/status", body, kind)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        relist: bool = True,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yield ``(type, object)`` for every change after ``resource_version``.

        A dropped or timed-out stream is reopened from the last resourceVersion seen, so no
        event is lost or repeated. When the server says that version is gone (410), the
        collection is listed again and one ``("RELIST", list)`` event carries the whole list;
        with ``relist=False`` :class:`ResourceExpired` is raised instead. Without a starting
        version the watch starts with a list, as an informer does.
        """
        selectors = {"labelSelector": label_selector, "fieldSelector": field_selector}
        if resource_version is None:
            listing = await self.list(
                path, label_selector=label_selector, field_selector=field_selector
            )
            resource_version = listing["metadata"]["resourceVersion"]
            yield "RELIST", listing
        delay = 0.2
        while True:
            params = {
                **selectors,
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout_seconds,
            }
            try:
                async for kind, obj in self._stream(path, params):
                    delay = 0.2
                    version = obj.get("metadata", {}).get("resourceVersion")
                    if version:
                        resource_version = version
                    if kind != "BOOKMARK":
                        yield kind, obj
            except ResourceExpired:
                if not relist:
                    raise
                listing = await self.list(
                    path, label_selector=label_selector, field_selector=field_selector
                )
                resource_version = listing["metadata"]["resourceVersion"]
                yield "RELIST", listing
            except (TimeoutError, aiohttp.ClientError, ApiError) as error:
                if isinstance(error, ApiError) and error.status not in _RETRY_STATUSES:
                    raise
                log.debug(
                    "watch %s interrupted (%s); resuming at %s", path, error, resource_version
                )
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 5.0)

    async def _stream(self, path: str, params: dict[str, Any]) -> AsyncIterator[tuple[str, Obj]]:
        query = {k: str(v) for k, v in params.items() if v is not None}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self._http().get(self.url + path, params=query, timeout=timeout) as response:
            if response.status == 410:
                raise ResourceExpired(path)
            if response.status >= 300:
                raise ApiError("WATCH", path, response.status, _decode(await response.read()))
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    kind, obj = event.get("type", ""), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise ResourceExpired(path)
                        raise ApiError("WATCH", path, int(obj.get("code") or 500), obj)
                    yield kind, obj


class Informer:
    """A local cache of one collection, kept current by a watch.

    ``Informer(client, "/api/v1/pods", field_selector="spec.nodeName=n1")``; ``start()``,
    then ``await synced()``. Handlers are plain callables (typically enqueueing a key) and
    see every ADDED/MODIFIED/DELETED, including the differences a relist reveals.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._cache: dict[str, Obj] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error: Exception | None = None

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)
        for obj in list(self._cache.values()):
            handler("ADDED", obj, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer {self.path}")

    async def synced(self, timeout: float = 30.0) -> None:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"informer for {self.path} did not list within {timeout} s "
                f"(last error: {self._last_error or 'none'})"
            ) from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def get(self, key: str) -> Obj | None:
        """By ``namespace/name`` (or ``name`` when cluster-scoped)."""
        return self._cache.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self._cache.values())
        return [o for o in self._cache.values() if o["metadata"].get("namespace") == namespace]

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async for kind, obj in self.client.watch(
                    self.path,
                    label_selector=self._label_selector,
                    field_selector=self._field_selector,
                ):
                    self._apply(kind, obj)
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep the cache alive across any API failure
                self._last_error = error
                log.warning("informer %s failed (%s); listing again", self.path, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _apply(self, kind: str, obj: Obj) -> None:
        if kind == "RELIST":
            fresh = {object_key(item): item for item in obj.get("items") or []}
            old_cache, self._cache = self._cache, fresh
            for key, old in old_cache.items():
                if key not in fresh:
                    self._notify("DELETED", old, old)
            for key, item in fresh.items():
                previous = old_cache.get(key)
                if previous is None:
                    self._notify("ADDED", item, None)
                elif _version(previous) != _version(item):
                    self._notify("MODIFIED", item, previous)
            self._synced.set()
            return
        key = object_key(obj)
        previous = self._cache.get(key)
        if kind == "DELETED":
            self._cache.pop(key, None)
        else:
            self._cache[key] = obj
        self._notify(kind, obj, previous)

    def _notify(self, kind: str, obj: Obj, previous: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj, previous)
            except Exception:
                log.exception("informer handler for %s failed", self.path)


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _decode(raw: bytes) -> Obj:
    if not raw:
        return {}
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"message": raw[:500].decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"items": decoded}


def _retryable(method: str, status: int, body: Obj) -> bool:
    """Overload and unavailability are retried; other 5xx only for idempotent verbs (a POST
    may have been carried out). A 429 from an eviction is the budget's verdict, not overload:
    the caller decides what to do with it."""
    if status not in _RETRY_STATUSES:
        return False
    if status not in _NOT_DONE_STATUSES and method not in _IDEMPOTENT:
        return False
    causes = (body.get("details") or {}).get("causes") or []
    return not any(cause.get("reason") == "DisruptionBudget" for cause in causes) and not (
        body.get("reason") == "TooManyRequests" and "disruption budget" in str(body.get("message"))
    )


def _retry_after(response: aiohttp.ClientResponse, default: float) -> float:
    header = response.headers.get("Retry-After")
    if header:
        with contextlib.suppress(ValueError):
            return min(float(header), 10.0)
    return default * (1 + random.random())


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
