"""Asking another DNS server, as CoreDNS's ``forward`` plugin does."""

from __future__ import annotations

import dns.asyncquery
import dns.flags
import dns.message

from clustergate.twin.dns.messages import response_to

#: CoreDNS forward's read timeout.
FORWARD_TIMEOUT = 2.0
#: EDNS buffer size offered upstream (the DNS flag day 2020 value).
EDNS_PAYLOAD = 1232


async def ask(
    query: dns.message.Message,
    target: tuple[str, int],
    *,
    force_tcp: bool = False,
    timeout: float = FORWARD_TIMEOUT,
) -> dns.message.Message:
    """The upstream's whole answer to ``query``'s question: over UDP, again over TCP when the
    UDP answer is truncated, or over TCP only with ``force_tcp``. Raises on timeout."""
    outgoing = dns.message.make_query(
        query.question[0].name,
        query.question[0].rdtype,
        query.question[0].rdclass,
        use_edns=0,
        payload=EDNS_PAYLOAD,
    )
    outgoing.flags = dns.flags.RD | (query.flags & dns.flags.CD)
    host, port = target
    if not force_tcp:
        reply = await dns.asyncquery.udp(outgoing, host, timeout=timeout, port=port)
        if not reply.flags & dns.flags.TC:
            return reply
    return await dns.asyncquery.tcp(outgoing, host, timeout=timeout, port=port)


def relay(query: dns.message.Message, reply: dns.message.Message) -> dns.message.Message:
    """``reply`` re-addressed to the client that sent ``query`` (its id, its question)."""
    response = response_to(query, authoritative=bool(reply.flags & dns.flags.AA))
    response.set_rcode(reply.rcode())
    response.answer = [rrset.copy() for rrset in reply.answer]
    response.authority = [rrset.copy() for rrset in reply.authority]
    response.additional = [rrset.copy() for rrset in reply.additional]
    return response
