"""NodeLocal DNSCache: the caching forwarder a node-local-dns pod runs on every node.

It follows the add-on's Corefile (kubernetes/dns, ``nodelocaldns.yaml``)::

    cluster.local:53 { cache { success 9984 30  denial 9984 5 }
                       forward . <kube-dns-upstream> { force_tcp } }
    in-addr.arpa:53  { cache 30  forward . <kube-dns-upstream> { force_tcp } }
    ip6.arpa:53      { cache 30  forward . <kube-dns-upstream> { force_tcp } }
    .:53             { cache 30  forward . /etc/resolv.conf }
    each block: bind <link-local IP> [<kube-dns IP>]; prometheus :9253; health <local IP>:8080

Every bound address gets a listener of its own, so that metrics carry ``server`` per address
as CoreDNS's do. ``delay`` holds every answer back (the ``dns-slow-cache`` fault).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from clustergate.twin.dns.cache import AnswerCache, CachePolicy, cache_key, set_ttls
from clustergate.twin.dns.cluster_dns import AddressLookup
from clustergate.twin.dns.forwarding import ask, relay
from clustergate.twin.dns.messages import failure, question
from clustergate.twin.dns.metrics import (
    CoreDnsMetrics,
    HttpEndpoints,
    health_app,
    metrics_app,
    query_type_label,
)
from clustergate.twin.dns.server import DnsServer, Request

log = logging.getLogger(__name__)

VIEW = ""


@dataclass(frozen=True)
class ServerBlock:
    zone: dns.name.Name
    policy: CachePolicy
    upstream: AddressLookup
    force_tcp: bool


def corefile_blocks(
    cluster_domain: str, cluster_dns: AddressLookup, node_resolver: AddressLookup
) -> list[ServerBlock]:
    """The server blocks of node-cache's Corefile, most specific zone first."""
    cache_30 = CachePolicy(success_ttl=30, denial_ttl=30)
    return [
        ServerBlock(
            dns.name.from_text(cluster_domain),
            CachePolicy(success_ttl=30, denial_ttl=5),
            cluster_dns,
            True,
        ),
        ServerBlock(dns.name.from_text("in-addr.arpa."), cache_30, cluster_dns, True),
        ServerBlock(dns.name.from_text("ip6.arpa."), cache_30, cluster_dns, True),
        ServerBlock(dns.name.root, cache_30, node_resolver, False),
    ]


class _Block:
    def __init__(self, spec: ServerBlock) -> None:
        self.spec = spec
        self.zone = spec.zone.to_text()
        self.cache = AnswerCache(spec.policy)


class NodeLocalCache:
    """``await NodeLocalCache(["169.254.20.10"], blocks).start()``; then :attr:`listeners` maps
    each bound address to where it really listens, :attr:`metrics_address` and
    :attr:`health_address` to the HTTP endpoints."""

    def __init__(
        self,
        bind: Sequence[str],
        blocks: Sequence[ServerBlock],
        *,
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = CoreDnsMetrics()
        self._bind = list(bind)
        self._blocks = [_Block(spec) for spec in blocks]
        self._delay = delay
        self._clock = clock
        self._servers: dict[str, DnsServer] = {}
        self._http = HttpEndpoints()
        self.listeners: dict[str, tuple[str, int]] = {}
        self.metrics_address: tuple[str, int] = ("127.0.0.1", 0)
        self.health_address: tuple[str, int] = ("127.0.0.1", 0)

    async def start(self) -> None:
        try:
            for address in self._bind:
                server = DnsServer(partial(self.answer, f"dns://{address}:53"))
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
        self, server: str, query: dns.message.Message, request: Request
    ) -> dns.message.Message:
        started = time.perf_counter()
        asked = question(query)
        block = self._block_for(asked[0] if asked else dns.name.root)
        qtype = query_type_label(dns.rdatatype.to_text(asked[1])) if asked else "other"
        m = self.metrics
        m.requests.labels(server, block.zone, VIEW, request.proto, str(request.family), qtype).inc()
        if asked is None:
            response, plugin = failure(query, dns.rcode.FORMERR), ""
        else:
            response, plugin = await self._resolve(server, block, query)
        if self._delay:
            await asyncio.sleep(self._delay)
        rcode = dns.rcode.to_text(response.rcode())
        m.responses.labels(server, block.zone, VIEW, rcode, plugin).inc()
        m.duration.labels(server, block.zone, VIEW, qtype).observe(time.perf_counter() - started)
        return response

    def _block_for(self, qname: dns.name.Name) -> _Block:
        return next(b for b in self._blocks if qname.is_subdomain(b.spec.zone))

    async def _resolve(
        self, server: str, block: _Block, query: dns.message.Message
    ) -> tuple[dns.message.Message, str]:
        m = self.metrics
        key = cache_key(query)
        m.cache_requests.labels(server, block.zone, VIEW).inc()
        hit = block.cache.get(key, self._clock())
        if hit is not None:
            reply, left, kind = hit
            m.cache_hits.labels(server, kind, block.zone, VIEW).inc()
            response = relay(query, reply)
            set_ttls(response, left)
            return response, "cache"
        m.cache_misses.labels(server, block.zone, VIEW).inc()
        target = block.spec.upstream()
        if target is None:
            return failure(query, dns.rcode.SERVFAIL), "forward"
        try:
            reply = await ask(query, target, force_tcp=block.spec.force_tcp)
        except (dns.exception.DNSException, OSError) as error:
            log.debug("forwarding %s to %s failed: %s", query.question[0], target, error)
            return failure(query, dns.rcode.SERVFAIL), "forward"
        duration = block.cache.put(key, reply, self._clock())
        for bound in self._bind:
            for kind in ("success", "denial"):
                entries = m.cache_entries.labels(f"dns://{bound}:53", kind, block.zone, VIEW)
                entries.set(block.cache.size(kind))
        response = relay(query, reply)
        if duration is not None:
            set_ttls(response, duration)
        return response, "forward"
