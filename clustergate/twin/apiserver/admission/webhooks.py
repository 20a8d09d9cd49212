"""Calling admission webhooks as kube-apiserver does (k8s.io/apiserver pkg/admission/plugin/
webhook): an AdmissionReview v1 POSTed over HTTPS to the webhook's clientConfig, verified
against its caBundle, within timeoutSeconds; the answer's JSONPatch applied (mutating) or its
refusal turned into the API error upstream answers.

- A refusal: ``admission webhook "NAME" denied the request: MESSAGE`` (or ``... without
  explanation``), with the code the webhook gave, raised to 400 when below it.
- A failed call (no answer, TLS, timeout, a malformed review): with failurePolicy Fail (the
  default) a 500 ``failed calling webhook "NAME": ...``; with Ignore the webhook is skipped.
- A dry-run request reaching a webhook whose sideEffects are not None/NoneOnDryRun is refused:
  ``admission webhook "NAME" does not support dry run``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jsonpatch
import orjson

from clustergate.twin.apiserver.admission.matching import (
    Attributes,
    namespace_matches,
    object_matches,
    rules_match,
)
from clustergate.twin.apiserver.errors import ApiError

Obj = dict[str, Any]
DEFAULT_TIMEOUT_S = 10
_NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")


@dataclass(frozen=True)
class Hook:
    """One webhook of a configuration, with what it takes to reach it."""

    configuration: str
    spec: Obj

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def fails_closed(self) -> bool:
        return self.spec.get("failurePolicy", "Fail") != "Ignore"

    @property
    def review_version(self) -> str:
        """The first of admissionReviewVersions the API server speaks, as upstream picks."""
        versions = self.spec.get("admissionReviewVersions") or []
        return next((v for v in versions if v in ("v1", "v1beta1")), "v1")

    @property
    def timeout_s(self) -> int:
        return int(self.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_S)

    def applies(self, attrs: Attributes, obj: Obj | None, old: Obj | None, ns: Obj | None) -> bool:
        return (
            rules_match(self.spec.get("rules"), attrs)
            and namespace_matches(self.spec.get("namespaceSelector"), attrs, ns)
            and object_matches(self.spec.get("objectSelector"), obj, old)
        )


@dataclass(frozen=True)
class Endpoint:
    """Where to dial, and the name the serving certificate must carry."""

    url: str
    server_name: str
    connect: tuple[str, int]


def hooks(configurations: list[Obj]) -> list[Hook]:
    """The webhooks of ``configurations`` in the order the API server calls them: by
    configuration name, then as listed."""
    ordered = sorted(configurations, key=lambda c: c["metadata"]["name"])
    return [
        Hook(config["metadata"]["name"], spec)
        for config in ordered
        for spec in config.get("webhooks") or []
    ]


def review(
    attrs: Attributes,
    obj: Obj | None,
    old: Obj | None,
    user: tuple[str, tuple[str, ...]],
    dry_run: bool,
    version: str = "v1",
) -> Obj:
    """The AdmissionReview request body (v1 and v1beta1 have the same shape)."""
    username, groups = user
    request: Obj = {
        "uid": str(uuid.uuid4()),
        "kind": attrs.kind_of(),
        "resource": {"group": attrs.group, "version": attrs.version, "resource": attrs.resource},
        "requestKind": attrs.kind_of(),
        "requestResource": {
            "group": attrs.group,
            "version": attrs.version,
            "resource": attrs.resource,
        },
        "name": attrs.name,
        "operation": attrs.operation,
        "userInfo": {"username": username, "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": None,
    }
    if attrs.subresource:
        request["subResource"] = attrs.subresource
        request["requestSubResource"] = attrs.subresource
    if attrs.namespaced:
        request["namespace"] = attrs.namespace
    return {
        "kind": "AdmissionReview",
        "apiVersion": f"admission.k8s.io/{version}",
        "request": request,
    }


def denied(name: str, status: Obj | None) -> ApiError:
    """The error the API server answers for a webhook's refusal (ToStatusErr upstream)."""
    status = dict(status or {})
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    prefix = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{prefix}: {status['message']}"
    elif status.get("reason"):
        message = f"{prefix}: {status['reason']}"
    else:
        message = f"{prefix} without explanation"
    return ApiError(code, str(status.get("reason") or ""), message, status.get("details"))


def calling_failed(name: str, why: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f'Internal error occurred: failed calling webhook "{name}": {why}',
        {"causes": [{"message": f'failed calling webhook "{name}": {why}'}]},
    )


def dry_run_unsupported(name: str) -> ApiError:
    return ApiError(400, "BadRequest", f'admission webhook "{name}" does not support dry run')


class CallFailed(Exception):
    """The webhook gave no usable answer (failurePolicy decides what follows)."""


class Caller:
    """Posts reviews; one HTTP session, TLS contexts cached per caBundle."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        context = self._contexts.get(ca_bundle)
        if context is None:
            if ca_bundle:
                pem = base64.b64decode(ca_bundle).decode()
                context = ssl.create_default_context(cadata=pem)
            else:
                context = ssl.create_default_context()
            self._contexts[ca_bundle] = context
        return context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, hook: Hook, endpoint: Endpoint, body: Obj) -> Obj:
        """The review's ``response``; CallFailed when there is none to use."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        ca_bundle = (hook.spec.get("clientConfig") or {}).get("caBundle") or ""
        host, port = endpoint.connect
        url = f"{endpoint.url}?timeout={hook.timeout_s}s"
        target = urlsplit(endpoint.url)
        dial = target._replace(netloc=f"{host}:{port}").geturl()
        try:
            async with self._session.post(
                f"{dial}?timeout={hook.timeout_s}s",
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Host": endpoint.server_name},
                ssl=self._context(ca_bundle),
                server_hostname=endpoint.server_name,
                timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
            ) as answer:
                raw = await answer.read()
                if answer.status != 200:
                    raise CallFailed(
                        f'failed to call webhook: Post "{url}": the server responded with the '
                        f"status code {answer.status} but did not return an AdmissionReview"
                    )
        except (aiohttp.ClientError, ssl.SSLError, OSError) as error:
            raise CallFailed(f'failed to call webhook: Post "{url}": {error}') from error
        except TimeoutError as error:
            raise CallFailed(
                f'failed to call webhook: Post "{url}": context deadline exceeded'
            ) from error
        try:
            response = orjson.loads(raw)["response"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise CallFailed(f"received invalid webhook response: {error}") from error
        if not isinstance(response, dict) or response.get("uid") != body["request"]["uid"]:
            got = response.get("uid") if isinstance(response, dict) else None
            raise CallFailed(f"expected response.uid={body['request']['uid']!r}, got {got!r}")
        return response


def apply_response_patch(response: Obj, obj: Obj) -> Obj:
    """The object after a mutating webhook's JSONPatch (CallFailed if it cannot apply)."""
    patch = response.get("patch")
    if not patch:
        return obj
    if response.get("patchType") != "JSONPatch":
        raise CallFailed(f"unsupported patch type {response.get('patchType')!r}")
    try:
        operations = orjson.loads(base64.b64decode(patch))
        return jsonpatch.apply_patch(obj, operations)
    except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise CallFailed(f"the webhook's patch does not apply: {error}") from error


async def with_deadline(coroutine: Any, seconds: float) -> Any:
    """The call under its timeoutSeconds, whatever the transport does."""
    try:
        return await asyncio.wait_for(coroutine, seconds)
    except TimeoutError as error:
        raise CallFailed("failed to call webhook: context deadline exceeded") from error
