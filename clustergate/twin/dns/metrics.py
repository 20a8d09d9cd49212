"""The Prometheus metrics a node-local-dns pod exposes on :9253, and its health endpoint.

Names and labels are CoreDNS 1.11's (the ``metrics`` and ``cache`` plugins), which node-cache
1.23 is built on. ``server`` is ``dns://<bound address>:53``, one per address the cache binds;
``zone`` the server block's zone (``cluster.local.``, ``in-addr.arpa.``, ``ip6.arpa.``, ``.``);
``view`` is always empty (no views configured). Each cache has its own registry.
``coredns_plugin_enabled`` has one series per plugin of every server block and address, so a
scrape shows what the Corefile made the cache serve; the ``forward`` plugin's
``coredns_proxy_*`` series carry the upstream (``to``) each query went to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    generate_latest,
)

#: CoreDNS's plugin.TimeBuckets: exponential from 0.25 ms, factor 2, 16 buckets.
TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
#: Query types CoreDNS counts by name; every other type is "other".
MONITORED_TYPES = frozenset(
    {
        *("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "HTTPS", "ANY"),
        *("DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "IXFR", "AXFR"),
    }
)


class CoreDnsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            ["server", "zone", "view", "proto", "family", "type"],
            registry=r,
        )
        self.responses = Counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            ["server", "zone", "view", "rcode", "plugin"],
            registry=r,
        )
        self.duration = Histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            ["server", "zone", "view", "type"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "coredns_cache_requests_total",
            "The count of cache requests.",
            ["server", "zones", "view"],
            registry=r,
        )
        self.cache_hits = Counter(
            "coredns_cache_hits_total",
            "The count of cache hits.",
            ["server", "type", "zones", "view"],
            registry=r,
        )
        self.cache_misses = Counter(
            "coredns_cache_misses_total",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests "
            "counters.",
            ["server", "zones", "view"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            ["server", "type", "zones", "view"],
            registry=r,
        )

        self.plugin_enabled = Gauge(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            ["server", "zone", "view", "name"],
            registry=r,
        )
        self.proxy_duration = Histogram(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            ["proxy_name", "to", "rcode"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.proxy_healthcheck_failures = Counter(
            "coredns_proxy_healthcheck_failures_total",
            "Count of failed health checks per upstream.",
            ["proxy_name", "to"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format, without the ``_created`` series CoreDNS (Go client) never shows."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def query_type_label(rdtype_name: str) -> str:
    return rdtype_name if rdtype_name in MONITORED_TYPES else "other"


def metrics_app(metrics: CoreDnsMetrics) -> web.Application:
    async def scrape(_request: web.Request) -> web.Response:
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app


def ready_app(is_ready: Callable[[], bool]) -> web.Application:
    """CoreDNS's ``ready`` plugin: ``GET /ready`` is 200 ``OK`` once the kubernetes plugin has
    synced, 503 naming it before."""

    async def ready(_request: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="OK")
        return web.Response(status=503, text="kubernetes")

    app = web.Application()
    app.router.add_get("/ready", ready)
    return app


def health_app() -> web.Application:
    """The ``health`` plugin: ``GET /health`` answers 200 ``OK`` while the server runs."""

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/health", health)
    return app


class HttpEndpoints:
    """aiohttp apps served on free loopback ports, stopped together."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def serve(self, app: web.Application) -> tuple[str, int]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return host, port

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
