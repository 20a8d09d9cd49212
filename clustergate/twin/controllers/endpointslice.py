"""The EndpointSlice controllers (pkg/controller/endpointslice and endpointslicemirroring):
slices of each selector Service's pods, and mirrors of the Endpoints of selectorless Services.

A slice holds up to 100 endpoints sharing one port list (maxEndpointsPerSlice); each endpoint
carries the ready/serving/terminating conditions, its node and zone and a reference to its
pod. Slices are owned by their Service, so the garbage collector removes them with it.
"""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.endpoints import (
    resolve_ports,
    selecting_services,
    service_selects,
)
from clustergate.twin.controllers.objects import Obj, is_terminating, pod_finished, pod_ready
from clustergate.twin.kubeclient import ApiError, KubeClient, object_key, resource_path
from clustergate.twin.settings import TwinSettings

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
MAX_ENDPOINTS_PER_SLICE = 100
GROUP_VERSION = "discovery.k8s.io/v1"
ZONE = "topology.kubernetes.io/zone"

Ports = tuple[tuple[str, int, str], ...]


def _slice_ports(ports: Ports) -> list[Obj]:
    return [
        {"name": name, "port": number, "protocol": protocol} for name, number, protocol in ports
    ]


def pod_endpoint(service: Obj, pod: Obj, zones: dict[str, str]) -> Obj | None:
    """The endpoint of ``pod`` in its Service's slices, or None when it has none (no IP yet,
    finished, or terminating while not serving)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or pod_finished(pod):
        return None
    ready = pod_ready(pod)
    terminating = is_terminating(pod)
    publish = bool(service["spec"].get("publishNotReadyAddresses"))
    endpoint: Obj = {
        "addresses": [ip],
        "conditions": {
            "ready": publish or (ready and not terminating),
            "serving": publish or ready,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }
    node = pod["spec"].get("nodeName")
    if node:
        endpoint["nodeName"] = node
        if zones.get(node):
            endpoint["zone"] = zones[node]
    hostname, subdomain = pod["spec"].get("hostname"), pod["spec"].get("subdomain")
    if hostname and subdomain == service["metadata"]["name"]:
        endpoint["hostname"] = hostname
    return endpoint


def desired_slices(groups: dict[Ports, list[Obj]]) -> list[tuple[Ports, list[Obj]]]:
    """(ports, endpoints) per slice: each port list's endpoints in chunks of at most 100."""
    slices = []
    for ports, endpoints in sorted(groups.items()):
        ordered = sorted(endpoints, key=lambda e: e["addresses"][0])
        for start in range(0, len(ordered), MAX_ENDPOINTS_PER_SLICE):
            slices.append((ports, ordered[start : start + MAX_ENDPOINTS_PER_SLICE]))
    return slices or [((), [])]


def _comparable(obj: Obj) -> tuple[object, ...]:
    return (
        obj.get("endpoints") or [],
        obj.get("ports") or [],
        (obj["metadata"].get("labels") or {}),
    )


class _SliceWriter(Controller):
    """Writes a Service's slices so they hold what is desired, reusing existing ones."""

    managed_by = CONTROLLER

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.services = informers.get("/api/v1/services")
        self.slices = informers.get(f"/apis/{GROUP_VERSION}/endpointslices")

    def _existing(self, namespace: str, service_name: str) -> list[Obj]:
        return sorted(
            (
                s
                for s in self.slices.list(namespace)
                if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == service_name
                and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == self.managed_by
            ),
            key=lambda s: s["metadata"]["name"],
        )

    async def write(self, service: Obj, wanted: list[tuple[Ports, list[Obj]]]) -> None:
        meta = service["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        labels = {
            **{k: v for k, v in (meta.get("labels") or {}).items() if k != MANAGED_BY},
            SERVICE_NAME: name,
            MANAGED_BY: self.managed_by,
        }
        owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "name": name,
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        existing = self._existing(namespace, name)
        collection = resource_path(GROUP_VERSION, "endpointslices", namespace)
        for index, (ports, endpoints) in enumerate(wanted):
            body: Obj = {
                "apiVersion": GROUP_VERSION,
                "kind": "EndpointSlice",
                "metadata": {"labels": labels, "ownerReferences": [owner]},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": _slice_ports(ports),
            }
            if index < len(existing):
                current = existing[index]
                body["metadata"] = {**current["metadata"], **body["metadata"]}
                if _comparable(body) == _comparable(current):
                    continue
                path = resource_path(
                    GROUP_VERSION, "endpointslices", namespace, current["metadata"]["name"]
                )
                await self.client.replace(path, body)
            else:
                body["metadata"]["generateName"] = f"{name}-"
                await self.client.create(collection, body)
        for stale in existing[len(wanted) :]:
            path = resource_path(
                GROUP_VERSION, "endpointslices", namespace, stale["metadata"]["name"]
            )
            try:
                await self.client.delete(path)
            except ApiError as error:
                if error.status != 404:
                    raise


class EndpointSliceController(_SliceWriter):
    name = "endpointslice-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.pods = informers.get("/api/v1/pods")
        self.nodes = informers.get("/api/v1/nodes")
        self.services.add_handler(lambda kind, svc, old: self.queue.add(object_key(svc)))
        self.pods.add_handler(self._on_pod)
        self.slices.add_handler(self._on_slice)

    def keys(self) -> list[str]:
        return [object_key(svc) for svc in self.services.list()]

    def _on_slice(self, kind: str, obj: Obj, old: Obj | None) -> None:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == self.managed_by and labels.get(SERVICE_NAME):
            self.queue.add(f"{obj['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        for service in selecting_services(
            self.services.list(pod["metadata"]["namespace"]), pod, old
        ):
            self.queue.add(object_key(service))

    async def reconcile(self, key: str) -> None:
        service = self.services.get(key)
        if service is None or is_terminating(service):
            return  # the garbage collector removes the slices with their owner
        selector = service["spec"].get("selector") or {}
        if not selector or service["spec"].get("type") == "ExternalName":
            return
        namespace = service["metadata"]["namespace"]
        zones = {
            node["metadata"]["name"]: (node["metadata"].get("labels") or {}).get(ZONE, "")
            for node in self.nodes.list()
        }
        groups: dict[Ports, list[Obj]] = {}
        for pod in self.pods.list(namespace):
            if not service_selects(service, pod):
                continue
            ports = resolve_ports(service, pod)
            endpoint = pod_endpoint(service, pod, zones) if ports is not None else None
            if ports is not None and endpoint is not None:
                groups.setdefault(ports, []).append(endpoint)
        await self.write(service, desired_slices(groups))


class EndpointSliceMirroringController(_SliceWriter):
    """Mirrors the Endpoints of Services without a selector (written by hand or by another
    controller) into slices, as CoreDNS and kube-proxy read only slices."""

    name = "endpointslicemirroring-controller"
    managed_by = MIRRORING_CONTROLLER

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.endpoints = informers.get("/api/v1/endpoints")
        self.services.add_handler(lambda kind, svc, old: self.queue.add(object_key(svc)))
        self.endpoints.add_handler(lambda kind, ep, old: self.queue.add(object_key(ep)))

    def keys(self) -> list[str]:
        return [object_key(ep) for ep in self.endpoints.list()]

    async def reconcile(self, key: str) -> None:
        service = self.services.get(key)
        endpoints = self.endpoints.get(key)
        if service is None or is_terminating(service) or service["spec"].get("selector"):
            return
        labels = (endpoints or {}).get("metadata", {}).get("labels") or {}
        if endpoints is None or labels.get(SKIP_MIRROR) == "true":
            await self.write(service, [])
            return
        groups: dict[Ports, list[Obj]] = {}
        for subset in endpoints.get("subsets") or []:
            ports: Ports = tuple(
                (p.get("name", ""), int(p["port"]), p.get("protocol", "TCP"))
                for p in subset.get("ports") or []
            )
            for field, ready in (("addresses", True), ("notReadyAddresses", False)):
                for address in subset.get(field) or []:
                    endpoint: Obj = {
                        "addresses": [address["ip"]],
                        "conditions": {"ready": ready},
                    }
                    for key_name in ("hostname", "nodeName", "targetRef"):
                        if address.get(key_name):
                            endpoint[key_name] = address[key_name]
                    groups.setdefault(ports, []).append(endpoint)
        await self.write(service, desired_slices(groups) if groups else [])
