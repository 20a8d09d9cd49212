"""The cluster DNS server: what a CoreDNS pod of kube-dns does.

Cluster names are answered from :class:`~clustergate.twin.dns.cluster_zone.ClusterZone`; every
other name is forwarded to the upstream resolver (``forward . /etc/resolv.conf``: the VPC
resolver, the twin's internet). No upstream reachable → SERVFAIL, as CoreDNS answers.
:meth:`ClusterDns.configure` applies a Corefile's ``forward`` targets and ``cache`` (which,
as the plugin does, keeps cluster answers too, for their TTL within its caps).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dns.exception
import dns.message
import dns.rcode

from clustergate.twin.dns.cache import AnswerCache, CachePolicy, cache_key, set_ttls
from clustergate.twin.dns.cluster_zone import ClusterZone
from clustergate.twin.dns.forwarding import ask, relay
from clustergate.twin.dns.messages import failure
from clustergate.twin.dns.plugins import Forward
from clustergate.twin.dns.server import DnsServer, Request

log = logging.getLogger(__name__)

#: Where the upstream listens right now, or None when it does not.
AddressLookup = Callable[[], tuple[str, int] | None]


class ClusterDns:
    def __init__(self, zone: ClusterZone, upstream: AddressLookup) -> None:
        self.zone = zone
        self._upstream = upstream
        self._server = DnsServer(self.answer)
        self._forward: Forward | None = None
        self._lookup: Callable[[str], tuple[str, int] | None] | None = None
        self._cache: AnswerCache | None = None
        self._clock: Callable[[], float] = time.monotonic

    def configure(
        self,
        forward: Forward | None,
        cache: CachePolicy | None,
        lookup: Callable[[str], tuple[str, int] | None],
    ) -> None:
        """Serve as a Corefile's root block says: forward to ``forward``'s targets (where
        ``lookup`` finds them; none: nothing is forwarded), cache with ``cache``'s caps."""
        self._forward = forward
        self._lookup = lookup
        self._cache = AnswerCache(cache) if cache is not None else None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    async def start(self) -> tuple[str, int]:
        return await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def answer(self, query: dns.message.Message, request: Request) -> dns.message.Message:
        if self._cache is None or not query.question:
            return await self._resolve(query)
        key = cache_key(query)
        hit = self._cache.get(key, self._clock())
        if hit is not None:
            reply, left, _kind = hit
            response = relay(query, reply)
            set_ttls(response, left)
            return response
        response = await self._resolve(query)
        duration = self._cache.put(key, response, self._clock())
        if duration is not None:
            response = relay(query, response)
            set_ttls(response, duration)
        return response

    async def _resolve(self, query: dns.message.Message) -> dns.message.Message:
        own = self.zone.answer(query)
        if own is not None:
            return own
        if not query.question:
            return failure(query, dns.rcode.FORMERR)
        if self._lookup is None:
            targets = [self._upstream()]
        elif self._forward is not None:
            targets = [self._lookup(target) for target in self._forward.targets]
        else:
            targets = []
        force_tcp = self._forward.force_tcp if self._forward is not None else False
        for target in targets:
            if target is None:
                continue
            try:
                return relay(query, await ask(query, target, force_tcp=force_tcp))
            except (dns.exception.DNSException, OSError) as error:
                log.debug("forwarding %s to %s failed: %s", query.question[0], target, error)
        return failure(query, dns.rcode.SERVFAIL)
