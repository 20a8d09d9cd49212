"""The controllers' API client against a scripted HTTPS server: retries, Retry-After,
budget-refused evictions, and a watch that resumes where it stopped and relists on 410."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from clustergate.twin.apiserver.tls import write_serving_files
from clustergate.twin.kubeclient import ApiError, Informer, KubeClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(tmp: Path, handler: Handler) -> tuple[web.AppRunner, KubeClient]:
    files = write_serving_files(tmp, "cluster.local", "10.100.0.1")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=files.ssl_context())
    await site.start()
    port = runner.addresses[0][1]
    return runner, KubeClient(f"https://127.0.0.1:{port}", str(files.ca_cert), "t0ken")


def pod(name: str, version: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


def test_requests_retry_overload_but_not_a_budget_refusal(tmp_path: Path) -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        assert request.headers["Authorization"] == "Bearer t0ken"
        if request.path.endswith("/eviction"):
            body = {
                "kind": "Status",
                "reason": "TooManyRequests",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "details": {"causes": [{"reason": "DisruptionBudget", "message": "needs 2"}]},
            }
            return web.json_response(body, status=429)
        if len(calls) < 3:
            return web.json_response(
                {"reason": "TooManyRequests"}, status=429, headers={"Retry-After": "0"}
            )
        return web.json_response(pod("a", "7"))

    async def scenario() -> None:
        runner, client = await serve(tmp_path, handler)
        try:
            assert (await client.get("/api/v1/namespaces/ns/pods/a"))["metadata"]["name"] == "a"
            assert len(calls) == 3
            with pytest.raises(ApiError) as raised:
                await client.post_subresource("/api/v1/namespaces/ns/pods/a", "eviction", {})
            assert raised.value.status == 429
            assert len(calls) == 4
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_watch_resumes_from_the_last_version_and_relists_on_410(tmp_path: Path) -> None:
    watches: list[str] = []
    lists = [
        {"metadata": {"resourceVersion": "5"}, "items": [pod("a", "4"), pod("b", "5")]},
        {"metadata": {"resourceVersion": "9"}, "items": [pod("a", "4"), pod("c", "9")]},
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response(lists.pop(0) if len(lists) > 1 else lists[0])
        watches.append(request.query["resourceVersion"])
        response = web.StreamResponse()
        await response.prepare(request)
        if len(watches) == 1:
            event = {"type": "MODIFIED", "object": pod("b", "6")}
            await response.write(json.dumps(event).encode() + b"\n")
        elif len(watches) == 2:
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
        else:
            await asyncio.sleep(0.2)
        return response

    async def scenario() -> list[tuple[str, str]]:
        runner, client = await serve(tmp_path, handler)
        seen: list[tuple[str, str]] = []
        informer = Informer(client, "/api/v1/pods")
        informer.add_handler(lambda kind, obj, old: seen.append((kind, obj["metadata"]["name"])))
        informer.start()
        try:
            await informer.synced(5)
            for _ in range(100):
                if len(watches) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert sorted(o["metadata"]["name"] for o in informer.list()) == ["a", "c"]
            assert informer.get("ns/c") is not None
        finally:
            await informer.stop()
            await client.close()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert watches[:3] == ["5", "6", "9"]
    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("DELETED", "b"),
        ("ADDED", "c"),
    ]
