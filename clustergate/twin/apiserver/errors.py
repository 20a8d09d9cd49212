"""The API server's errors, carried as exceptions and answered as ``kind: Status`` bodies.

Messages, reasons and details follow k8s.io/apimachinery/pkg/api/errors, which clients match on
(``reason`` for retries and conflicts, ``details`` for names, ``message`` for people).
"""

from __future__ import annotations

from typing import Any

from clustergate.twin.apiserver.resources import ResourceType


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        return failure_status(self.code, self.reason, self.message, self.details)


def failure_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success_status(code: int | None = 200, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Success Status; ``code`` None leaves it out, as a delete's answer does."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    }
    if details is not None:
        body["details"] = details
    if code is not None:
        body["code"] = code
    return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name} if name else {}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        _details(rt, name),
    )


def precondition_failed(rt: ResourceType, name: str, why: str) -> ApiError:
    """A delete's precondition that does not hold: named by kind, as rest.BeforeDelete names
    it, where other conflicts name the resource."""
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {kind} "{name}": {why}', details
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """``causes``: (field, reason such as FieldValueRequired, message such as "Required value")."""
    listed = ", ".join(f"{field}: {message}" for field, _, message in causes)
    if len(causes) > 1:
        listed = f"[{listed}]"
    group = rt.invalid_group or rt.group
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": reason, "message": message, "field": field} for field, reason, message in causes
    ]
    qualified_kind = f"{rt.kind}.{group}" if group else rt.kind
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {listed}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(rt_qualified: str, name: str, group: str, plural: str, why: str) -> ApiError:
    subject = f'{rt_qualified} "{name}"' if name else rt_qualified
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = plural
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


def method_not_allowed(verb: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({verb})",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", message)


def field_manager_required() -> ApiError:
    """An apply patch without fieldManager (PatchOptions validation)."""
    cause = "Required value: is required for apply patch"
    return ApiError(
        422,
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: {cause}',
        {
            "group": "meta.k8s.io",
            "kind": "PatchOptions",
            "causes": [{"reason": "FieldValueRequired", "message": cause, "field": "fieldManager"}],
        },
    )


def unsupported_patch(*accepted: str) -> ApiError:
    """A PATCH whose type the resource does not take (415)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )
