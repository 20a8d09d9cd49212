"""The answer cache of CoreDNS's ``cache`` plugin, as NodeLocal DNSCache configures it.

An answer is kept for its TTL, bounded below by 5 s and above by the zone's cap (node-cache's
Corefile: ``success 9984 30`` / ``denial 9984 5`` for the cluster zone, ``cache 30`` for the
others). The TTL of a positive answer is the lowest TTL in it; of a negative answer (NXDOMAIN or
NODATA) the SOA's, bounded by the SOA's minimum field. A hit is served with every TTL set to
the time the entry has left (and the answer that fills the entry with the whole duration,
so clients never see a TTL longer than the cache keeps it). Truncated answers and failures
are not cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

#: The cache plugin's lower TTL bound (MINTTL) for both kinds.
MIN_TTL = 5

CacheKey = tuple[dns.name.Name, int, int, bool]


@dataclass(frozen=True)
class CachePolicy:
    success_ttl: int = 30
    denial_ttl: int = 30
    capacity: int = 9984


@dataclass
class _Entry:
    reply: dns.message.Message
    stored: float
    ttl: int
    kind: str


def cache_key(query: dns.message.Message) -> CacheKey:
    asked = query.question[0]
    dnssec_ok = bool(query.ednsflags & dns.flags.DO)
    return asked.name.canonicalize(), int(asked.rdtype), int(asked.rdclass), dnssec_ok


def _kind(reply: dns.message.Message) -> str | None:
    """ "success", "denial" or None (not cacheable)."""
    if reply.flags & dns.flags.TC:
        return None
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return "denial"
    if reply.rcode() != dns.rcode.NOERROR:
        return None
    return "success" if reply.answer else "denial"


def _message_ttl(reply: dns.message.Message, kind: str) -> int | None:
    if kind == "denial":
        soas = [r for r in reply.authority if r.rdtype == dns.rdatatype.SOA]
        if not soas:
            return None
        return min(soas[0].ttl, soas[0][0].minimum)
    return min(r.ttl for r in (*reply.answer, *reply.authority, *reply.additional))


def set_ttls(message: dns.message.Message, ttl: int) -> None:
    """Give every record of ``message`` the TTL ``ttl``, as the cache plugin serves them."""
    for section in (message.answer, message.authority, message.additional):
        for rrset in section:
            rrset.ttl = ttl


class AnswerCache:
    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._entries: dict[CacheKey, _Entry] = {}

    def get(self, key: CacheKey, now: float) -> tuple[dns.message.Message, int, str] | None:
        """The cached reply (not to be changed: relay a copy), the seconds it has left (the TTL
        to serve it with) and its kind; None on a miss."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = int(entry.ttl - (now - entry.stored))
        if left <= 0:
            del self._entries[key]
            return None
        return entry.reply, left, entry.kind

    def put(self, key: CacheKey, reply: dns.message.Message, now: float) -> int | None:
        """Keep ``reply``; return how long (the TTL its copies are served with), or None when
        it is not cacheable."""
        kind = _kind(reply)
        if kind is None:
            return None
        ttl = _message_ttl(reply, kind)
        if ttl is None:
            return None
        cap = self.policy.success_ttl if kind == "success" else self.policy.denial_ttl
        if key not in self._entries and len(self._entries) >= self.policy.capacity:
            self._entries.pop(next(iter(self._entries)))
        duration = min(max(ttl, MIN_TTL), cap)
        self._entries[key] = _Entry(reply, now, duration, kind)
        return duration

    def size(self, kind: str) -> int:
        return sum(1 for entry in self._entries.values() if entry.kind == kind)
