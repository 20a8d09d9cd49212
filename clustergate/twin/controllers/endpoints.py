"""The endpoints controller: an Endpoints object per Service with a selector, listing the
addresses of matching pods (ready ones under addresses, the rest under notReadyAddresses)."""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import (
    Obj,
    is_terminating,
    pod_finished,
    pod_ready,
    timestamp,
)
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings


def resolve_ports(service: Obj, pod: Obj) -> tuple[tuple[str, int, str], ...] | None:
    """(name, port, protocol) for each service port on this pod; None if a named target
    port is missing from the pod."""
    ports = []
    for port in service["spec"].get("ports") or []:
        target = port.get("targetPort", port["port"])
        protocol = port.get("protocol", "TCP")
        if isinstance(target, str) and not target.isdigit():
            found = next(
                (
                    p["containerPort"]
                    for c in pod["spec"].get("containers") or []
                    for p in c.get("ports") or []
                    if p.get("name") == target and p.get("protocol", "TCP") == protocol
                ),
                None,
            )
            if found is None:
                return None
            target = found
        ports.append((port.get("name", ""), int(target), protocol))
    return tuple(ports)


def endpoint_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    publish_all = bool(service["spec"].get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int, str], ...], Obj] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        ip = pod.get("status", {}).get("podIP")
        if not ip or is_terminating(pod) or pod_finished(pod):
            continue
        ports = resolve_ports(service, pod)
        if ports is None:
            continue
        address = {
            "ip": ip,
            "nodeName": pod["spec"].get("nodeName"),
            "targetRef": {
                "kind": "Pod",
                "namespace": pod["metadata"]["namespace"],
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        subset = groups.setdefault(
            ports,
            {
                "ports": [
                    {"port": number, "protocol": protocol, **({"name": name} if name else {})}
                    for name, number, protocol in ports
                ]
            },
        )
        field = "addresses" if publish_all or pod_ready(pod) else "notReadyAddresses"
        subset.setdefault(field, []).append(address)
    return list(groups.values())


def service_selects(service: Obj, pod: Obj) -> bool:
    """Whether the Service's ``spec.selector`` (a plain map; empty selects nothing) matches
    the pod's labels."""
    selector = service["spec"].get("selector") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selecting_services(services: list[Obj], pod: Obj, old: Obj | None) -> list[Obj]:
    """The Services whose selector matches ``pod``'s labels now or before (``old``): both
    must reconcile when a pod's labels move it from one Service to another."""
    versions = [pod] if old is None else [pod, old]
    return [s for s in services if any(service_selects(s, v) for v in versions)]


class EndpointsController(Controller):
    name = "endpoints-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.services = informers.get("/api/v1/services")
        self.pods = informers.get("/api/v1/pods")
        self.endpoints = informers.get("/api/v1/endpoints")
        self.services.add_handler(lambda kind, svc, old: self.queue.add(object_key(svc)))
        self.pods.add_handler(self._on_pod)

    def keys(self) -> list[str]:
        return [object_key(svc) for svc in self.services.list()]

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        for service in selecting_services(
            self.services.list(pod["metadata"]["namespace"]), pod, old
        ):
            self.queue.add(object_key(service))

    async def reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        path = resource_path("v1", "endpoints", namespace, name)
        service = self.services.get(key)
        existing = self.endpoints.get(key)
        if service is None:
            if (
                existing is not None
                and existing["metadata"].get("labels", {}).get("endpoints.kubernetes.io/managed-by")
                != "endpoint-mirroring-controller"
            ):
                await self.client.delete(path)
            return
        selector = service["spec"].get("selector") or {}
        if not selector:
            return
        pods = [p for p in self.pods.list(namespace) if service_selects(service, p)]
        subsets = endpoint_subsets(service, pods)
        labels = dict(service["metadata"].get("labels") or {})
        if existing is not None:
            same_labels = (existing["metadata"].get("labels") or {}) == labels
            if same_labels and (existing.get("subsets") or []) == subsets:
                return
            body = {**existing, "subsets": subsets}
            body["metadata"] = {**existing["metadata"], "labels": labels}
            body["metadata"].setdefault("annotations", {})[
                "endpoints.kubernetes.io/last-change-trigger-time"
            ] = timestamp()
            try:
                await self.client.replace(path, body)
            except ApiError as error:
                if error.status != 404:
                    raise
            return
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "subsets": subsets,
        }
        try:
            await self.client.create(resource_path("v1", "endpoints", namespace), body)
        except ApiError as error:
            if error.status != 409:
                raise
            self.queue.add_after(key, 0.2)
