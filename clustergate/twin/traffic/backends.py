"""The two clusters' applications: HTTP servers that say which cluster served each request.

A response names its cluster twice, as real services behind a cutover usually do: in the
``X-Served-By`` header and in the JSON body field ``cluster``. Each answer takes a few
milliseconds with jitter (log-normal, as service latencies are), so latency percentiles and rank
tests see a realistic, non-degenerate distribution. The ``new-backend-*`` faults act here.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from clustergate.twin.settings import TwinSettings

SERVED_BY_HEADER = "X-Served-By"
#: Median service time and its spread (sigma of the log-normal): a small, fast endpoint.
MEDIAN_LATENCY_S = 0.003
LATENCY_SIGMA = 0.35
#: What the ``new-backend-slow`` fault adds, and the error share of ``new-backend-errors``.
SLOW_EXTRA_S = 0.080
ERROR_SHARE = 0.05


class Backend:
    """One cluster's endpoint, on its own loopback address (``start(host, port)``)."""

    def __init__(self, name: str, settings: TwinSettings, rng: random.Random) -> None:
        self.name = name
        self._rng = rng
        self._slow = name == "new" and settings.has_fault("new-backend-slow")
        self._errors = name == "new" and settings.has_fault("new-backend-errors")
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on ``host:port`` (0: a free port); return the port. Raises OSError when the
        port is taken."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return int(bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _service_time(self) -> float:
        delay = self._rng.lognormvariate(0.0, LATENCY_SIGMA) * MEDIAN_LATENCY_S
        if self._slow:
            delay += SLOW_EXTRA_S * self._rng.uniform(0.9, 1.1)
        return delay

    async def _serve(self, request: web.Request) -> web.Response:
        # Both draws before the first await, so a seeded backend's k-th request always gets
        # the same ones however concurrent requests interleave.
        delay = self._service_time()
        fails = self._errors and self._rng.random() < ERROR_SHARE
        await asyncio.sleep(delay)
        headers = {SERVED_BY_HEADER: self.name}
        if fails:
            body = {"cluster": self.name, "error": "upstream unavailable"}
            return web.json_response(body, status=503, headers=headers)
        return web.json_response({"cluster": self.name, "path": request.path}, headers=headers)
