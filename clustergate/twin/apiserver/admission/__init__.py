"""Dynamic admission: the MutatingAdmissionWebhook, ValidatingAdmissionPolicy and
ValidatingAdmissionWebhook plugins, in the order kube-apiserver runs them.

Mutating webhooks run first (after the built-in mutating plugins), one after the other, each
seeing the previous one's result; those with reinvocationPolicy IfNeeded run once more when a
later webhook changed the object. Then, after schema validation, the policies and the
validating webhooks judge the final object. The configurations are read from the store at each
request, so what kubectl creates or deletes takes effect on the next request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clustergate.twin.apiserver.admission import policy, webhooks
from clustergate.twin.apiserver.admission.matching import Attributes
from clustergate.twin.apiserver.errors import ApiError
from clustergate.twin.apiserver.resources import by_kind
from clustergate.twin.apiserver.store import Store
from clustergate.twin.netmap import Netmap

Obj = dict[str, Any]
GROUP = "admissionregistration.k8s.io"
MUTATING = f"mutatingwebhookconfigurations.{GROUP}"
VALIDATING = f"validatingwebhookconfigurations.{GROUP}"
POLICIES = f"validatingadmissionpolicies.{GROUP}"
BINDINGS = f"validatingadmissionpolicybindings.{GROUP}"

__all__ = ["Admission", "AdmissionRequest", "Attributes"]


@dataclass
class AdmissionRequest:
    attrs: Attributes
    obj: Obj | None
    old: Obj | None
    user: tuple[str, tuple[str, ...]]
    dry_run: bool = False
    #: What the API server tells the client in Warning headers.
    warnings: list[str] = field(default_factory=list)


class Admission:
    def __init__(self, store: Store, netmap: Netmap) -> None:
        self.store = store
        self.netmap = netmap
        self.caller = webhooks.Caller()

    async def close(self) -> None:
        await self.caller.close()

    def _namespace(self, attrs: Attributes, obj: Obj | None) -> Obj | None:
        if attrs.resource == "namespaces" and not attrs.group:
            return obj
        if not attrs.namespaced:
            return None
        return self.store.get("namespaces", "", attrs.namespace)

    def _applicable(self, key: str, request: AdmissionRequest) -> list[webhooks.Hook]:
        ns = self._namespace(request.attrs, request.obj or request.old)
        return [
            hook
            for hook in webhooks.hooks(list(self.store.scan(key)))
            if hook.applies(request.attrs, request.obj, request.old, ns)
        ]

    async def mutate(self, request: AdmissionRequest) -> None:
        """Run the mutating webhooks; ``request.obj`` becomes their result."""
        if request.attrs.operation == "CONNECT" or not self.store.count(MUTATING):
            return
        applicable = self._applicable(MUTATING, request)
        changed_after: dict[int, bool] = {}
        for index, hook in enumerate(applicable):
            if await self._mutate_once(hook, request):
                for earlier in changed_after:
                    changed_after[earlier] = True
            changed_after[index] = False
        for index, hook in enumerate(applicable):
            again = hook.spec.get("reinvocationPolicy") == "IfNeeded"
            if again and changed_after.get(index):
                await self._mutate_once(hook, request)

    async def _mutate_once(self, hook: webhooks.Hook, request: AdmissionRequest) -> bool:
        response = await self._call(hook, request)
        if response is None or request.obj is None:
            return False
        try:
            patched = webhooks.apply_response_patch(response, request.obj)
        except webhooks.CallFailed as error:
            if hook.fails_closed:
                raise webhooks.calling_failed(hook.name, str(error)) from error
            return False
        if patched == request.obj:
            return False
        request.obj = patched
        return True

    async def validate(self, request: AdmissionRequest) -> None:
        """Run the policies, then the validating webhooks; raise the first refusal."""
        if request.attrs.operation == "CONNECT":
            return
        self._policies(request)
        for hook in self._applicable(VALIDATING, request):
            await self._call(hook, request)

    async def _call(self, hook: webhooks.Hook, request: AdmissionRequest) -> Obj | None:
        """The webhook's allowing response; None if skipped (failurePolicy Ignore)."""
        side_effects = hook.spec.get("sideEffects", "Unknown")
        if request.dry_run and side_effects not in ("None", "NoneOnDryRun"):
            raise webhooks.dry_run_unsupported(hook.name)
        body = webhooks.review(
            request.attrs,
            request.obj,
            request.old,
            request.user,
            request.dry_run,
            hook.review_version,
        )
        try:
            endpoint = self._endpoint(hook)
            response = await webhooks.with_deadline(
                self.caller.post(hook, endpoint, body), hook.timeout_s
            )
        except webhooks.CallFailed as error:
            if hook.fails_closed:
                raise webhooks.calling_failed(hook.name, str(error)) from error
            return None
        request.warnings.extend(str(w) for w in response.get("warnings") or [])
        if not response.get("allowed"):
            raise webhooks.denied(hook.name, response.get("status"))
        return response

    def _endpoint(self, hook: webhooks.Hook) -> webhooks.Endpoint:
        config = hook.spec.get("clientConfig") or {}
        if config.get("url"):
            url = config["url"]
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 443
            return webhooks.Endpoint(url, host, self.netmap.resolve(host, port) or (host, port))
        service = config.get("service")
        if not service:
            raise webhooks.CallFailed("clientConfig has neither url nor service")
        return self._service_endpoint(service)

    def _service_endpoint(self, service: Obj) -> webhooks.Endpoint:
        """As kube-apiserver's endpoint resolver: the Service's port, then a ready address of
        its Endpoints on the matching target port."""
        namespace, name = service.get("namespace", ""), service.get("name", "")
        port = int(service.get("port") or 443)
        path = service.get("path") or ""
        server_name = f"{name}.{namespace}.svc"
        url = f"https://{server_name}:{port}{path}"
        found = self.store.get("services", namespace, name)
        if found is None:
            raise webhooks.CallFailed(f'failed to call webhook: service "{name}" not found')
        ports = (found.get("spec") or {}).get("ports") or []
        service_port = next((p for p in ports if int(p.get("port", 0)) == port), None)
        if service_port is None:
            raise webhooks.CallFailed(
                f"failed to call webhook: no service port {port} found for service {name!r}"
            )
        endpoints = self.store.get("endpoints", namespace, name) or {}
        for subset in endpoints.get("subsets") or []:
            subset_ports = subset.get("ports") or []
            chosen = next(
                (p for p in subset_ports if p.get("name") == service_port.get("name")),
                subset_ports[0] if len(subset_ports) == 1 else None,
            )
            for address in subset.get("addresses") or []:
                if chosen is not None:
                    host, target = address["ip"], int(chosen["port"])
                    dial = self.netmap.resolve(host, target) or (host, target)
                    return webhooks.Endpoint(url, server_name, dial)
        raise webhooks.CallFailed(
            f'failed to call webhook: service "{namespace}/{name}" has no ready endpoints'
        )

    def _policies(self, request: AdmissionRequest) -> None:
        if not self.store.count(BINDINGS):
            return
        policies = {p["metadata"]["name"]: p for p in self.store.scan(POLICIES)}
        judged = policy.Request(
            request.attrs,
            request.obj,
            request.old,
            self._namespace(request.attrs, request.obj or request.old),
            request.user,
            request.dry_run,
        )
        for binding in sorted(self.store.scan(BINDINGS), key=lambda b: b["metadata"]["name"]):
            found = policies.get((binding.get("spec") or {}).get("policyName", ""))
            if found is None:
                continue
            params = self._params(found, binding, request.attrs)
            denial = policy.check(found, binding, params, judged)
            if denial is not None:
                raise _policy_error(request.attrs, request.obj or request.old, denial)

    def _params(self, found: Obj, binding: Obj, attrs: Attributes) -> Obj | None:
        """The binding's paramRef by name, resolved against the policy's paramKind."""
        kind = (found.get("spec") or {}).get("paramKind")
        ref = (binding.get("spec") or {}).get("paramRef")
        if not kind or not ref or not ref.get("name"):
            return None
        rt = by_kind(kind.get("apiVersion", ""), kind.get("kind", ""))
        if rt is None:
            return None
        namespace = ref.get("namespace") or (attrs.namespace if rt.namespaced else "")
        return self.store.get(rt.key, namespace if rt.namespaced else "", ref["name"])


def _policy_error(attrs: Attributes, obj: Obj | None, denial: policy.Denial) -> ApiError:
    """admission.NewForbidden's message, with the policy's reason and code."""
    meta = (obj or {}).get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "Unknown"
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    details = {
        "name": name,
        "kind": attrs.resource,
        "causes": [{"message": denial.text}],
    }
    if attrs.group:
        details["group"] = attrs.group
    return ApiError(
        denial.code, denial.reason, f'{qualified} "{name}" is forbidden: {denial.text}', details
    )
