"""NodeLocal DNSCache: the caching forwarder a node-local-dns pod runs on every node.

It serves the zones of its Corefile (:class:`~clustergate.twin.dns.plugins.ZoneServer`, read
by :mod:`clustergate.twin.dns.corefile`), on the addresses the runtime opens for it: each
address a listener of its own, serving the blocks that ``bind`` it (or that bind nothing), so
that metrics carry ``server`` per address as CoreDNS's do. Per zone: ``cache`` with the
block's TTL caps (no ``cache``: every query is forwarded), ``forward`` to its targets in order
(``force_tcp``), SERVFAIL when none answers, REFUSED for a name no block serves.
``delay`` holds every answer back (the ``dns-slow-cache`` fault).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from clustergate.twin.dns.cache import AnswerCache, cache_key, set_ttls
from clustergate.twin.dns.forwarding import ask, relay
from clustergate.twin.dns.messages import failure, question
from clustergate.twin.dns.metrics import (
    CoreDnsMetrics,
    HttpEndpoints,
    health_app,
    metrics_app,
    query_type_label,
)
from clustergate.twin.dns.plugins import RESOLV_CONF, ZoneServer
from clustergate.twin.dns.server import DnsServer, Request
from clustergate.twin.netmap import Netmap

log = logging.getLogger(__name__)

VIEW = ""
#: Where a forward target ("ip:port", or /etc/resolv.conf) listens right now, or None.
UpstreamLookup = Callable[[str], tuple[str, int] | None]


def netmap_lookup(netmap: Netmap, resolver_ip: str) -> UpstreamLookup:
    """Forward targets as the node reaches them: ``/etc/resolv.conf`` is the VPC resolver at
    ``resolver_ip``, ``ip:port`` whatever listens there (the cluster-wide view: the ``loop``
    plugin's trouble of a cache forwarding to itself is not played)."""

    def lookup(target: str) -> tuple[str, int] | None:
        if target == RESOLV_CONF:
            return netmap.resolve(resolver_ip, 53)
        host, _, port = target.rpartition(":")
        return netmap.resolve(host, int(port))

    return lookup


class _Zone:
    def __init__(self, spec: ZoneServer) -> None:
        self.spec = spec
        self.zone = spec.zone
        self.name = dns.name.from_text(spec.zone)
        self.cache = AnswerCache(spec.cache) if spec.cache is not None else None


class NodeLocalCache:
    """``await NodeLocalCache(["169.254.20.10"], servers, upstream).start()``; then
    :attr:`listeners` maps each bound address to where it really listens,
    :attr:`metrics_address` and :attr:`health_address` to the HTTP endpoints. ``metrics``
    may be handed over from the configuration this one replaces (a reload keeps counting)."""

    def __init__(
        self,
        bind: Sequence[str],
        servers: Sequence[ZoneServer],
        upstream: UpstreamLookup,
        *,
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: CoreDnsMetrics | None = None,
        log_line: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.metrics = metrics or CoreDnsMetrics()
        self._bind = list(bind)
        self._zones = [_Zone(spec) for spec in servers if spec.port == 53]
        self._upstream = upstream
        self._delay = delay
        self._clock = clock
        self._log_line = log_line
        self._servers: dict[str, DnsServer] = {}
        self._http = HttpEndpoints()
        self.listeners: dict[str, tuple[str, int]] = {}
        self.metrics_address: tuple[str, int] = ("127.0.0.1", 0)
        self.health_address: tuple[str, int] = ("127.0.0.1", 0)

    def _zones_on(self, address: str) -> list[_Zone]:
        return [z for z in self._zones if not z.spec.bind or address in z.spec.bind]

    async def start(self) -> None:
        try:
            self.metrics.plugin_enabled.clear()  # the configuration this one replaces
            for address in self._bind:
                zones = self._zones_on(address)
                label = f"dns://{address}:53"
                for zone in zones:
                    for plugin in zone.spec.plugins:
                        self.metrics.plugin_enabled.labels(label, zone.zone, VIEW, plugin).set(1)
                server = DnsServer(partial(self.answer, label, zones))
                self._servers[address] = server
                self.listeners[address] = await server.start()
            self.metrics_address = await self._http.serve(metrics_app(self.metrics))
            self.health_address = await self._http.serve(health_app())
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self._servers.values():
            await server.stop()
        self._servers.clear()
        await self._http.stop()

    async def answer(
        self, server: str, zones: list[_Zone], query: dns.message.Message, request: Request
    ) -> dns.message.Message:
        started = time.perf_counter()
        asked = question(query)
        zone = self._zone_for(zones, asked[0] if asked else dns.name.root)
        label = zone.zone if zone is not None else "dropped"
        qtype = query_type_label(dns.rdatatype.to_text(asked[1])) if asked else "other"
        m = self.metrics
        m.requests.labels(server, label, VIEW, request.proto, str(request.family), qtype).inc()
        if asked is None:
            response, plugin = failure(query, dns.rcode.FORMERR), ""
        elif zone is None:
            response, plugin = failure(query, dns.rcode.REFUSED), ""
        else:
            response, plugin = await self._resolve(server, zone, query)
        if self._delay:
            await asyncio.sleep(self._delay)
        rcode = dns.rcode.to_text(response.rcode())
        m.responses.labels(server, label, VIEW, rcode, plugin).inc()
        m.duration.labels(server, label, VIEW, qtype).observe(time.perf_counter() - started)
        return response

    @staticmethod
    def _zone_for(zones: list[_Zone], qname: dns.name.Name) -> _Zone | None:
        return next((z for z in zones if qname.is_subdomain(z.name)), None)

    async def _resolve(
        self, server: str, zone: _Zone, query: dns.message.Message
    ) -> tuple[dns.message.Message, str]:
        m = self.metrics
        key = cache_key(query)
        if zone.cache is not None:
            m.cache_requests.labels(server, zone.zone, VIEW).inc()
            hit = zone.cache.get(key, self._clock())
            if hit is not None:
                reply, left, kind = hit
                m.cache_hits.labels(server, kind, zone.zone, VIEW).inc()
                response = relay(query, reply)
                set_ttls(response, left)
                return response, "cache"
            m.cache_misses.labels(server, zone.zone, VIEW).inc()
        reply = await self._forward(zone, query)
        if reply is None:
            return failure(query, dns.rcode.SERVFAIL), "forward"
        duration = None
        if zone.cache is not None:
            duration = zone.cache.put(key, reply, self._clock())
            for bound in self._bind:
                for kind in ("success", "denial"):
                    entries = m.cache_entries.labels(f"dns://{bound}:53", kind, zone.zone, VIEW)
                    entries.set(zone.cache.size(kind))
        response = relay(query, reply)
        if duration is not None:
            set_ttls(response, duration)
        return response, "forward"

    async def _forward(self, zone: _Zone, query: dns.message.Message) -> dns.message.Message | None:
        """The first answer of the zone's forward targets, in order; None when none answers
        (each failure counted against its target, and logged as the errors plugin does)."""
        spec = zone.spec.forward
        if spec is None:
            return None
        asked = query.question[0]
        for target in spec.targets:
            started = time.perf_counter()
            where = self._upstream(target)
            try:
                if where is None:
                    raise ConnectionRefusedError(f"dial {target}: connection refused")
                reply = await ask(query, where, force_tcp=spec.force_tcp)
            except (dns.exception.DNSException, OSError) as error:
                self.metrics.proxy_healthcheck_failures.labels("forward", target).inc()
                reason = str(error) or type(error).__name__
                log.debug("forwarding %s to %s failed: %s", asked, target, reason)
                self._log_line(
                    f"[ERROR] plugin/errors: 2 {asked.name} "
                    f"{dns.rdatatype.to_text(asked.rdtype)}: {target}: {reason}"
                )
                continue
            rcode = dns.rcode.to_text(reply.rcode())
            self.metrics.proxy_duration.labels("forward", target, rcode).observe(
                time.perf_counter() - started
            )
            return reply
        return None
