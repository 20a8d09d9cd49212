"""The cluster DNS server: what a CoreDNS pod of kube-dns does.

Cluster names are answered from :class:`~clustergate.twin.dns.cluster_zone.ClusterZone`; every
other name is forwarded to the upstream resolver (``forward . /etc/resolv.conf``: the VPC
resolver, the twin's internet). No upstream reachable → SERVFAIL, as CoreDNS answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dns.exception
import dns.message
import dns.rcode

from clustergate.twin.dns.cluster_zone import ClusterZone
from clustergate.twin.dns.forwarding import ask, relay
from clustergate.twin.dns.messages import failure
from clustergate.twin.dns.server import DnsServer, Request

log = logging.getLogger(__name__)

#: Where the upstream listens right now, or None when it does not.
AddressLookup = Callable[[], tuple[str, int] | None]


class ClusterDns:
    def __init__(self, zone: ClusterZone, upstream: AddressLookup) -> None:
        self.zone = zone
        self._upstream = upstream
        self._server = DnsServer(self.answer)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    async def start(self) -> tuple[str, int]:
        return await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def answer(self, query: dns.message.Message, request: Request) -> dns.message.Message:
        own = self.zone.answer(query)
        if own is not None:
            return own
        if not query.question:
            return failure(query, dns.rcode.FORMERR)
        target = self._upstream()
        if target is None:
            return failure(query, dns.rcode.SERVFAIL)
        try:
            return relay(query, await ask(query, target))
        except (dns.exception.DNSException, OSError) as error:
            log.debug("forwarding %s to %s failed: %s", query.question[0], target, error)
            return failure(query, dns.rcode.SERVFAIL)
