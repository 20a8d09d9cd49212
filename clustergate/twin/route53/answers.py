"""What a Route 53 name server answers for one query, given the zone's record sets.

A table from (record sets, question, one random draw) to a DNS answer, as Route 53's
authoritative servers give it:

- A zone the server does not host: REFUSED.
- Weighted routing: record sets of one name and type with a ``SetIdentifier`` and a ``Weight``
  form a group; each query picks ONE set of the group, set ``i`` with probability
  ``weight_i / sum(weights)`` (the group ordered by SetIdentifier, so a seeded draw picks the
  same set whatever order the API lists them in); when every weight is 0, each set equally
  (Route 53 developer guide, "Weighted routing"). The answer carries that set's values and its
  TTL. A plain record set (no SetIdentifier) is answered whole.
- A CNAME at the name answers every type but CNAME itself too; its target is followed while it
  stays in the same hosted zone (at most :data:`MAX_CHAIN` links), each link drawn on its own.
- A name with no records of the type asked: NOERROR with no answer (NODATA) and the zone's SOA;
  a name with no records at all and nothing below it: NXDOMAIN and the SOA.

Not served: alias records, health checks, and the latency, failover, geolocation and
multivalue policies (sets with a SetIdentifier but no Weight are drawn equally).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from clustergate.twin.dns.messages import negative, question, response_to, rrset, soa_rrset

#: CNAME links followed inside one zone before the answer stops (Route 53 follows a short chain).
MAX_CHAIN = 8
#: Route 53's SOA for a new zone: "<ns> awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400".
SOA_TTL, SOA_MINIMUM = 900, 86400
#: Types whose value is one domain name.
_NAME_TYPES = ("CNAME", "NS", "PTR")


@dataclass(frozen=True)
class RecordSet:
    name: dns.name.Name
    rtype: str
    ttl: int
    values: tuple[str, ...]
    set_identifier: str | None = None
    weight: int | None = None

    @classmethod
    def from_api(cls, record: dict[str, Any]) -> RecordSet | None:
        """From one ``ListResourceRecordSets`` entry; None for an alias (no values of its own)."""
        values = tuple(item["Value"] for item in record.get("ResourceRecords", []))
        if record["Type"] == "SOA":
            values = tuple(_moto_soa_value(value) for value in values)
        if record["Type"] in _NAME_TYPES:
            # Route 53 takes a domain name value as fully qualified, with or without its dot.
            values = tuple(value if value.endswith(".") else value + "." for value in values)
        if not values:
            return None
        weight = record.get("Weight")
        return cls(
            dns.name.from_text(record["Name"]),
            record["Type"],
            int(record.get("TTL", 300)),
            values,
            record.get("SetIdentifier"),
            None if weight is None else int(weight),
        )


@dataclass(frozen=True)
class HostedZone:
    name: dns.name.Name
    record_sets: tuple[RecordSet, ...]

    @classmethod
    def from_api(cls, zone_name: str, records: Iterable[dict[str, Any]]) -> HostedZone:
        sets = (RecordSet.from_api(record) for record in records)
        return cls(dns.name.from_text(zone_name), tuple(s for s in sets if s is not None))

    def at(self, name: dns.name.Name) -> list[RecordSet]:
        return [s for s in self.record_sets if s.name == name]

    def has_below(self, name: dns.name.Name) -> bool:
        return any(s.name != name and s.name.is_subdomain(name) for s in self.record_sets)

    def soa(self) -> dns.rrset.RRset:
        """The zone's SOA, for the authority section of a negative answer."""
        for record_set in self.at(self.name):
            if record_set.rtype == "SOA":
                return rrset(self.name, record_set.ttl, "SOA", record_set.values[0])
        return soa_rrset(
            self.name,
            SOA_TTL,
            serial=1,
            minimum=SOA_MINIMUM,
            ns="ns-0.awsdns-00.com.",
            mbox="awsdns-hostmaster.amazon.com.",
        )


def pick(group: Sequence[RecordSet], draw: float) -> RecordSet:
    """The set a weighted group answers with for ``draw`` (uniform in [0, 1)): set ``i`` when
    ``draw`` falls in its slice of the cumulative weights; equal slices when all are 0."""
    weights = [max(s.weight or 0, 0) for s in group]
    total = sum(weights)
    if total == 0:
        weights, total = [1] * len(group), len(group)
    edge = 0.0
    for record_set, weight in zip(group, weights, strict=True):
        edge += weight / total
        if draw < edge:
            return record_set
    return group[-1]


def _chosen(candidates: list[RecordSet], draw: Callable[[], float]) -> RecordSet:
    if len(candidates) == 1 or all(s.set_identifier is None for s in candidates):
        return candidates[0]
    return pick(sorted(candidates, key=lambda s: s.set_identifier or ""), draw())


def zone_for(zones: Iterable[HostedZone], qname: dns.name.Name) -> HostedZone | None:
    """The hosted zone with the longest name that ``qname`` is in."""
    matching = [zone for zone in zones if qname.is_subdomain(zone.name)]
    return max(matching, key=lambda zone: len(zone.name), default=None)


def answer(
    zones: Iterable[HostedZone], query: dns.message.Message, draw: Callable[[], float]
) -> dns.message.Message:
    """The authoritative answer to ``query``; ``draw()`` gives one uniform number per choice."""
    asked = question(query)
    zone = None if asked is None else zone_for(zones, asked[0])
    if asked is None or zone is None:
        refused = response_to(query, authoritative=False)
        refused.set_rcode(dns.rcode.REFUSED)
        return refused
    qname, qtype = asked
    response = response_to(query, authoritative=True)
    name = qname
    for _ in range(MAX_CHAIN):
        here = zone.at(name)
        wanted = dns.rdatatype.to_text(qtype)
        cnames = [s for s in here if s.rtype == "CNAME"]
        matching = [s for s in here if s.rtype == wanted]
        if cnames and wanted != "CNAME":
            link = _chosen(cnames, draw)
            response.answer.append(rrset(name, link.ttl, "CNAME", *link.values))
            name = dns.name.from_text(link.values[0])
            if not name.is_subdomain(zone.name):
                return response
            continue
        if matching:
            chosen = _chosen(matching, draw)
            response.answer.append(rrset(name, chosen.ttl, chosen.rtype, *chosen.values))
            return response
        if response.answer:
            return response
        nothing = not here and not zone.has_below(name)
        return negative(query, dns.rcode.NXDOMAIN if nothing else dns.rcode.NOERROR, zone.soa())
    return response


def _moto_soa_value(raw: str) -> str:
    """moto 5 stores a zone's SOA value as the repr of ``{'Value': '<soa>'}``: the text inside.
    Any other value is returned as it is."""
    try:
        parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    return str(parsed.get("Value", raw)) if isinstance(parsed, dict) else raw
