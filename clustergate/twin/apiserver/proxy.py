"""The proxy subresource of pods, services and nodes: find the simulated address the request is
for, translate it through the netmap (as kube-proxy and the VPC would route it) and forward."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from clustergate.twin.apiserver import errors
from clustergate.twin.netmap import Netmap

Obj = dict[str, Any]
KUBELET_PORT = 10250
_HOP_HEADERS = frozenset(
    {"authorization", "connection", "host", "keep-alive", "transfer-encoding", "upgrade"}
)


def split_name(name: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` → (scheme, name, port)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", parts[0], ""


def pod_target(pod: Obj, port: str) -> tuple[str, int]:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise errors.ApiError(
            503,
            "ServiceUnavailable",
            f"address not allowed: pod {pod['metadata']['name']} has no IP",
        )
    container_ports = [p for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []]
    if not port:
        number = container_ports[0]["containerPort"] if container_ports else 80
    elif port.isdigit():
        number = int(port)
    else:
        named = [p["containerPort"] for p in container_ports if p.get("name") == port]
        if not named:
            raise errors.bad_request(f"no such port {port} on pod {pod['metadata']['name']}")
        number = named[0]
    return ip, number


def service_target(service: Obj, endpoints: Obj | None, port: str) -> tuple[str, int]:
    name = service["metadata"]["name"]
    ports = (service.get("spec") or {}).get("ports") or []
    chosen = None
    for candidate in ports:
        if not port or candidate.get("name") == port or str(candidate.get("port")) == port:
            chosen = candidate
            break
    if chosen is None:
        raise errors.ApiError(
            503, "ServiceUnavailable", f'no service port "{port}" found for service "{name}"'
        )
    for subset in (endpoints or {}).get("subsets") or []:
        for endpoint_port in subset.get("ports") or []:
            if endpoint_port.get("name", "") == chosen.get("name", ""):
                for address in subset.get("addresses") or []:
                    return address["ip"], int(endpoint_port["port"])
    raise errors.ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')


def node_target(node: Obj, port: str) -> tuple[str, int]:
    addresses = (node.get("status") or {}).get("addresses") or []
    internal = [a["address"] for a in addresses if a.get("type") == "InternalIP"]
    if not internal:
        raise errors.ApiError(
            503, "ServiceUnavailable", f"no InternalIP for node {node['metadata']['name']}"
        )
    return internal[0], int(port) if port else KUBELET_PORT


async def forward(
    request: web.Request,
    netmap: Netmap,
    target: tuple[str, int],
    rest: str,
    scopes: tuple[str, ...],
    scheme: str,
) -> web.Response:
    local = netmap.resolve(target[0], target[1], *scopes)
    if local is None:
        raise errors.ApiError(
            503,
            "ServiceUnavailable",
            f"error trying to reach service: dial tcp {target[0]}:{target[1]}: connect: "
            "connection refused",
        )
    url = f"{scheme or 'http'}://{local[0]}:{local[1]}/{rest}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    body = await request.read()
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                request.method,
                url,
                params=request.query,
                data=body or None,
                headers=headers,
                ssl=False,
            ) as upstream,
        ):
            payload = await upstream.read()
            kept = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in _HOP_HEADERS | {"content-length", "content-encoding"}
            }
            return web.Response(status=upstream.status, body=payload, headers=kept)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise errors.ApiError(
            503,
            "ServiceUnavailable",
            f"error trying to reach service: {error}",
        ) from error
