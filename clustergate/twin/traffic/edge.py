"""The public endpoint in front of both clusters: it splits requests by the current weights.

Like an ALB's weighted forward action, every request is placed on its own, at random, in
proportion to the weights (no stickiness). The weights are whatever :meth:`Edge.set_weights`
last received; :mod:`clustergate.twin.traffic.weights` feeds it from the AWS API. The
``cutover-skewed-split`` fault sends the new cluster half the share its weight asks for.
"""

from __future__ import annotations

import logging
import random

import aiohttp
from aiohttp import web

from clustergate.twin.settings import TwinSettings
from clustergate.twin.traffic.backends import SERVED_BY_HEADER

log = logging.getLogger("clustergate.twin.traffic")

_PASSED_HEADERS = ("Content-Type", SERVED_BY_HEADER)


class Edge:
    def __init__(
        self, backend_urls: dict[str, str], settings: TwinSettings, rng: random.Random
    ) -> None:
        self._backend_urls = backend_urls
        self._rng = rng
        self._skewed = settings.has_fault("cutover-skewed-split")
        self._weights: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def set_weights(self, weights: dict[str, int]) -> None:
        if weights != self._weights:
            log.info("edge now splits by weights %s", weights)
        self._weights = dict(weights)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _new_share(self) -> float | None:
        old, new = self._weights.get("old", 0), self._weights.get("new", 0)
        if old + new == 0:
            return None
        share = new / (old + new)
        return share / 2 if self._skewed else share

    async def _forward(self, request: web.Request) -> web.Response:
        share = self._new_share()
        if share is None:
            return web.json_response(
                {"error": "no weighted target group has a weight above 0"}, status=503
            )
        backend = "new" if self._rng.random() < share else "old"
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, self._backend_urls[backend] + request.path_qs
            ) as upstream:
                body = await upstream.read()
                headers = {k: upstream.headers[k] for k in _PASSED_HEADERS if k in upstream.headers}
                return web.Response(status=upstream.status, body=body, headers=headers)
        except aiohttp.ClientError as error:
            return web.json_response(
                {"error": f"backend {backend} unreachable: {error}"}, status=502
            )
