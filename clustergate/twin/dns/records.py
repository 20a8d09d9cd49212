"""What the cluster DNS knows about the cluster: Services, their endpoints and Pods.

The same three kinds the CoreDNS ``kubernetes`` plugin watches (endpoints as EndpointSlices,
merged per Service; an Endpoints object can be upserted too), kept as plain data so that the
name logic (:mod:`clustergate.twin.dns.cluster_zone`) can be tested without an API server. The
upsert methods take the Kubernetes JSON objects as the API returns them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

K8sObject = Mapping[str, Any]


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    #: The ClusterIP(s); empty for headless and ExternalName services.
    cluster_ips: tuple[str, ...]
    headless: bool
    ports: tuple[Port, ...]
    #: ``spec.externalName`` of an ExternalName service (answered with a CNAME).
    external_name: str = ""


@dataclass(frozen=True)
class EndpointAddress:
    ip: str
    #: ``hostname`` of the address, else the hostname of the pod it points to when that pod's
    #: ``spec.subdomain`` names the service (what the endpoints controller copies), else "".
    hostname: str
    pod_name: str


@dataclass(frozen=True)
class Endpoints:
    namespace: str
    name: str
    #: Ready addresses only: CoreDNS never answers with not-ready ones.
    addresses: tuple[EndpointAddress, ...]
    ports: tuple[Port, ...]


def _key(obj: K8sObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta["name"]


def _ports(raw: Iterable[Mapping[str, Any]] | None) -> tuple[Port, ...]:
    return tuple(
        Port(p.get("name") or "", (p.get("protocol") or "TCP").upper(), int(p["port"]))
        for p in raw or ()
        if p.get("port")
    )


def service_from_object(obj: K8sObject) -> Service:
    namespace, name = _key(obj)
    spec = obj.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return Service(namespace, name, (), False, _ports(spec.get("ports")), spec["externalName"])
    cluster_ip = spec.get("clusterIP") or ""
    ips = tuple(spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else []))
    headless = cluster_ip == "None"
    return Service(namespace, name, () if headless else ips, headless, _ports(spec.get("ports")))


@dataclass(frozen=True)
class _RawAddress:
    ip: str
    hostname: str
    pod_name: str


@dataclass(frozen=True)
class _RawEndpoints:
    namespace: str
    name: str
    addresses: tuple[_RawAddress, ...]
    ports: tuple[Port, ...]


def _raw_endpoints(obj: K8sObject) -> _RawEndpoints:
    namespace, name = _key(obj)
    addresses: list[_RawAddress] = []
    ports: list[Port] = []
    for subset in obj.get("subsets") or ():
        for address in subset.get("addresses") or ():
            ref = address.get("targetRef") or {}
            pod_name = ref.get("name", "") if ref.get("kind", "Pod") == "Pod" else ""
            addresses.append(_RawAddress(address["ip"], address.get("hostname") or "", pod_name))
        ports.extend(p for p in _ports(subset.get("ports")) if p not in ports)
    return _RawEndpoints(namespace, name, tuple(addresses), tuple(ports))


SERVICE_NAME = "kubernetes.io/service-name"


def _raw_slice(obj: K8sObject) -> _RawEndpoints:
    """An EndpointSlice's ready endpoints, named for the Service it belongs to. CoreDNS skips
    endpoints whose ``ready`` condition is false (an absent one counts as ready)."""
    namespace, _ = _key(obj)
    service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME, "")
    addresses: list[_RawAddress] = []
    for endpoint in obj.get("endpoints") or ():
        if (endpoint.get("conditions") or {}).get("ready") is False:
            continue
        ref = endpoint.get("targetRef") or {}
        pod_name = ref.get("name", "") if ref.get("kind", "Pod") == "Pod" else ""
        for ip in endpoint.get("addresses") or ():
            addresses.append(_RawAddress(ip, endpoint.get("hostname") or "", pod_name))
    return _RawEndpoints(namespace, service, tuple(addresses), _ports(obj.get("ports")))


@dataclass(frozen=True)
class _Pod:
    ips: tuple[str, ...]
    hostname: str
    subdomain: str


def _pod_from_object(obj: K8sObject) -> _Pod:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ips = [entry["ip"] for entry in status.get("podIPs") or () if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return _Pod(tuple(ips), spec.get("hostname") or "", spec.get("subdomain") or "")


class ClusterRecords:
    """Services, Endpoints and Pods by namespace and name. Thread-safe: the feeder writes from
    the event loop while tests may read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str], Service] = {}
        self._endpoints: dict[tuple[str, str], _RawEndpoints] = {}
        #: EndpointSlices by (namespace, slice name); a Service's endpoints are their union.
        self._slices: dict[tuple[str, str], _RawEndpoints] = {}
        self._pods: dict[tuple[str, str], _Pod] = {}

    # -- writes --------------------------------------------------------------------------------

    def upsert_service(self, obj: K8sObject) -> None:
        service = service_from_object(obj)
        with self._lock:
            self._services[service.namespace, service.name] = service

    def delete_service(self, namespace: str, name: str) -> None:
        with self._lock:
            self._services.pop((namespace, name), None)

    def upsert_endpoints(self, obj: K8sObject) -> None:
        endpoints = _raw_endpoints(obj)
        with self._lock:
            self._endpoints[endpoints.namespace, endpoints.name] = endpoints

    def delete_endpoints(self, namespace: str, name: str) -> None:
        with self._lock:
            self._endpoints.pop((namespace, name), None)

    def upsert_endpoint_slice(self, obj: K8sObject) -> None:
        raw = _raw_slice(obj)
        with self._lock:
            previous = self._slices.get(_key(obj))
            self._slices[_key(obj)] = raw
            for service in {raw.name, previous.name if previous else raw.name}:
                self._merge_slices(raw.namespace, service)

    def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        with self._lock:
            gone = self._slices.pop((namespace, name), None)
            if gone is not None:
                self._merge_slices(namespace, gone.name)

    def _merge_slices(self, namespace: str, service: str) -> None:
        """The Endpoints view of a Service's slices (under the lock)."""
        if not service:
            return
        parts = [
            s
            for (ns, _), s in sorted(self._slices.items())
            if ns == namespace and s.name == service
        ]
        if not parts:
            self._endpoints.pop((namespace, service), None)
            return
        ports: list[Port] = []
        for part in parts:
            ports.extend(p for p in part.ports if p not in ports)
        addresses = tuple(a for part in parts for a in part.addresses)
        self._endpoints[namespace, service] = _RawEndpoints(
            namespace, service, addresses, tuple(ports)
        )

    def upsert_pod(self, obj: K8sObject) -> None:
        pod = _pod_from_object(obj)
        with self._lock:
            self._pods[_key(obj)] = pod

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)

    # -- reads ---------------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        with self._lock:
            return self._services.get((namespace, name))

    def endpoints(self, namespace: str, name: str) -> Endpoints | None:
        with self._lock:
            raw = self._endpoints.get((namespace, name))
            if raw is None:
                return None
            addresses = tuple(
                EndpointAddress(a.ip, self._hostname_of(raw, a), a.pod_name) for a in raw.addresses
            )
        return Endpoints(raw.namespace, raw.name, addresses, raw.ports)

    def _hostname_of(self, raw: _RawEndpoints, address: _RawAddress) -> str:
        if address.hostname:
            return address.hostname
        pod = self._pods.get((raw.namespace, address.pod_name))
        if pod and pod.hostname and pod.subdomain == raw.name:
            return pod.hostname
        return ""

    def has_namespace(self, namespace: str) -> bool:
        """Whether any Service lives in ``namespace`` (``<ns>.svc.<zone>`` then exists)."""
        with self._lock:
            return any(ns == namespace for ns, _ in self._services)

    def pod_has_ip(self, namespace: str, ip: str) -> bool:
        with self._lock:
            return any(ns == namespace and ip in pod.ips for (ns, _), pod in self._pods.items())

    def names_for_ip(self, ip: str) -> list[tuple[str, str, str]]:
        """``(namespace, service, endpoint-hostname)`` for every Service whose ClusterIP is ``ip``
        (hostname "") and every endpoint address with that ip, as the reverse lookup answers."""
        with self._lock:
            services = [
                (s.namespace, s.name, "") for s in self._services.values() if ip in s.cluster_ips
            ]
            raws = [e for e in self._endpoints.values() if any(a.ip == ip for a in e.addresses)]
        found = list(services)
        for raw in raws:
            endpoints = self.endpoints(raw.namespace, raw.name)
            if endpoints is None:
                continue
            found.extend(
                (raw.namespace, raw.name, a.hostname or dashed(a.ip))
                for a in endpoints.addresses
                if a.ip == ip
            )
        return found


def dashed(ip: str) -> str:
    """``10.0.128.12`` → ``10-0-128-12``, the label CoreDNS uses for addresses without hostname."""
    return ip.replace(".", "-").replace(":", "-")
