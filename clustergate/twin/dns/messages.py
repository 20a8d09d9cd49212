"""Small helpers shared by the twin's DNS answerers (all wire format is dnspython's)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def rrset(name: dns.name.Name, ttl: int, rdtype: str, *values: str) -> dns.rrset.RRset:
    """An IN rrset of ``rdtype`` built from text values, e.g. ``rrset(n, 5, "A", "10.0.0.1")``."""
    return dns.rrset.from_text(name, ttl, dns.rdataclass.IN, rdtype, *values)


def soa_rrset(zone: dns.name.Name, ttl: int, serial: int, minimum: int, ns: str, mbox: str):
    """The SOA of ``zone`` as it goes into the authority section of a negative answer."""
    return rrset(zone, ttl, "SOA", f"{ns} {mbox} {serial} 7200 1800 86400 {minimum}")


def response_to(query: dns.message.Message, *, authoritative: bool) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    if authoritative:
        response.flags |= dns.flags.AA
    return response


def negative(
    query: dns.message.Message, rcode: dns.rcode.Rcode, soa: dns.rrset.RRset
) -> dns.message.Message:
    """NXDOMAIN (``rcode``) or NODATA (NOERROR) with the zone's SOA in the authority section."""
    response = response_to(query, authoritative=True)
    response.set_rcode(rcode)
    response.authority.append(soa)
    return response


def failure(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = response_to(query, authoritative=False)
    response.set_rcode(rcode)
    return response


def question(query: dns.message.Message) -> tuple[dns.name.Name, dns.rdatatype.RdataType] | None:
    """The (name, type) asked, or None for a query without exactly one IN question."""
    if len(query.question) != 1 or query.question[0].rdclass != dns.rdataclass.IN:
        return None
    return query.question[0].name, query.question[0].rdtype
