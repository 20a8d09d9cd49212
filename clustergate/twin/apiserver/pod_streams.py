"""pods/log and pods/exec, routed to the pod's node through the kubelet hub.

Exec speaks the WebSocket channel protocol (v4.channel.k8s.io, v5.channel.k8s.io): every binary
message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a Status, with an
ExitCode cause on a non-zero exit), 4 resize; v5 adds 255, "close this channel".
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from clustergate.twin.apiserver import errors
from clustergate.twin.kubelet_hub import (
    ContainerNotFound,
    ExecProcess,
    KubeletConnection,
    KubeletHub,
    LogOptions,
)

Obj = dict[str, Any]
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def pick_container(pod: Obj, wanted: str | None) -> str:
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in pod["spec"].get("containers") or []]
    init = [c["name"] for c in pod["spec"].get("initContainers") or []]
    if wanted:
        if wanted not in containers + init:
            raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    default = (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container"
    )
    if default in containers:
        return default
    if len(containers) == 1:
        return containers[0]
    choices = " ".join(containers)
    raise errors.bad_request(
        f"a container name must be specified for pod {name}, choose one of: [{choices}]"
    )


def kubelet_for(kubelets: KubeletHub, pod: Obj) -> KubeletConnection:
    node = (pod.get("spec") or {}).get("nodeName")
    name = pod["metadata"]["name"]
    if not node:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    connection = kubelets.get(node)
    if connection is None:
        raise errors.ApiError(
            500,
            "InternalError",
            f"Internal error occurred: error dialing backend: no kubelet answers for node {node}",
        )
    return connection


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("1", "true")


async def stream_logs(request: web.Request, kubelets: KubeletHub, pod: Obj) -> web.StreamResponse:
    query = request.query
    container = pick_container(pod, query.get("container"))
    connection = kubelet_for(kubelets, pod)
    options = LogOptions(
        follow=_flag(query, "follow"),
        tail_lines=int(query["tailLines"]) if query.get("tailLines") else None,
        timestamps=_flag(query, "timestamps"),
        previous=_flag(query, "previous"),
        limit_bytes=int(query["limitBytes"]) if query.get("limitBytes") else None,
    )
    meta = pod["metadata"]
    chunks = connection.logs(meta["namespace"], meta["name"], container, options)
    try:
        first = await anext(chunks, b"")
    except ContainerNotFound as error:
        raise errors.bad_request(
            f'container "{container}" in pod "{meta["name"]}" is waiting to start: {error}'
        ) from error
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if first:
            await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    except (ConnectionResetError, ContainerNotFound):
        return response
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _exit_status(code: int, command: list[str]) -> bytes:
    if code == 0:
        return orjson.dumps({"metadata": {}, "status": "Success"})
    return orjson.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": (
                f"command terminated with non-zero exit code: error executing command "
                f"[{' '.join(command)}], exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    )


async def _pump(ws: web.WebSocketResponse, channel: int, chunks: Any) -> None:
    async for chunk in chunks:
        if chunk:
            await ws.send_bytes(bytes([channel]) + chunk)


async def _feed(ws: web.WebSocketResponse, process: ExecProcess) -> None:
    async for message in ws:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        channel, data = message.data[0], message.data[1:]
        if channel == STDIN:
            await process.write_stdin(data)
        elif channel == RESIZE:
            size = orjson.loads(data)
            await process.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            await process.close_stdin()
    await process.kill()


async def exec_in_pod(
    request: web.Request, kubelets: KubeletHub, pod: Obj
) -> web.WebSocketResponse:
    query = request.query
    container = pick_container(pod, query.get("container"))
    command = query.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least 1 command")
    connection = kubelet_for(kubelets, pod)
    ws = web.WebSocketResponse(protocols=PROTOCOLS)
    if not ws.can_prepare(request).ok:
        raise errors.bad_request(
            "Upgrade request required: exec needs a WebSocket (v4/v5.channel.k8s.io)"
        )
    meta = pod["metadata"]
    try:
        process = await connection.exec(
            meta["namespace"], meta["name"], container, command, _flag(query, "tty")
        )
    except ContainerNotFound as error:
        raise errors.bad_request(f'container "{container}" not found: {error}') from error
    await ws.prepare(request)
    feeder = asyncio.create_task(_feed(ws, process))
    try:
        pumps = [_pump(ws, STDOUT, process.stdout())]
        if not _flag(query, "tty"):
            pumps.append(_pump(ws, STDERR, process.stderr()))
        await asyncio.gather(*pumps)
        code = await process.wait()
        await ws.send_bytes(bytes([ERROR]) + _exit_status(code, command))
    except ConnectionResetError:
        await process.kill()
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await ws.close()
    return ws
