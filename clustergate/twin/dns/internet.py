"""The twin's internet: the names the VPC resolver (AmazonProvidedDNS) knows.

A pod's query for a name outside the cluster leaves CoreDNS or the node cache for the node's
resolver, the VPC's ``.2`` address. The twin has no internet, so that resolver is a server with
a small fixed table: ``example.com`` and the AWS endpoints of the cluster's region, each with a
stable public-looking address. Every other name is NXDOMAIN, with the SOA of the enclosing zone
(``amazonaws.com``, ``example.com`` or the root) as a recursive resolver would return it.
Reaching the addresses is not this table's business: clients reach AWS through the netmap.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from clustergate.twin.dns.messages import question, response_to, rrset, soa_rrset

#: TTL of the table's address records (AWS endpoints answer with 60 s or less).
ADDRESS_TTL = 60


def internet_names(region: str) -> dict[str, str]:
    """Name → IPv4 address of every name the twin's internet knows."""
    regional = {
        f"sts.{region}.amazonaws.com": "52.94.210.10",
        f"s3.{region}.amazonaws.com": "52.92.180.10",
        f"ec2.{region}.amazonaws.com": "52.94.214.10",
        f"eks.{region}.amazonaws.com": "52.94.133.10",
        f"autoscaling.{region}.amazonaws.com": "52.94.212.10",
        f"elasticloadbalancing.{region}.amazonaws.com": "52.94.222.10",
        f"oidc.eks.{region}.amazonaws.com": "52.94.133.20",
        f"api.ecr.{region}.amazonaws.com": "52.94.225.10",
    }
    return {
        "example.com": "93.184.215.14",
        "www.example.com": "93.184.215.14",
        "sts.amazonaws.com": "52.94.241.129",
        "iam.amazonaws.com": "52.94.225.248",
        "route53.amazonaws.com": "52.94.236.248",
        "registry.k8s.io": "34.96.108.209",
        **regional,
    }


class InternetZone:
    """Answers for :func:`internet_names`, as a recursive resolver would give them."""

    def __init__(self, region: str) -> None:
        self._addresses = {
            dns.name.from_text(name): address for name, address in internet_names(region).items()
        }
        self._zones = [
            (
                dns.name.from_text("amazonaws.com"),
                soa_rrset(
                    dns.name.from_text("amazonaws.com"),
                    900,
                    serial=2010111501,
                    minimum=60,
                    ns="dns-external-master.amazon.com.",
                    mbox="root.amazon.com.",
                ),
            ),
            (
                dns.name.from_text("example.com"),
                soa_rrset(
                    dns.name.from_text("example.com"),
                    3600,
                    serial=2024081401,
                    minimum=3600,
                    ns="ns.icann.org.",
                    mbox="noc.dns.icann.org.",
                ),
            ),
            (
                dns.name.root,
                soa_rrset(
                    dns.name.root,
                    86400,
                    serial=2025010100,
                    minimum=86400,
                    ns="a.root-servers.net.",
                    mbox="nstld.verisign-grs.com.",
                ),
            ),
        ]

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = response_to(query, authoritative=False)
        asked = question(query)
        if asked is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        qname, qtype = asked
        address = self._addresses.get(qname)
        if address is not None and qtype == dns.rdatatype.A:
            response.answer.append(rrset(qname, ADDRESS_TTL, "A", address))
            return response
        if not any(known.is_subdomain(qname) for known in self._addresses):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self._soa_for(qname))
        return response

    def _soa_for(self, qname: dns.name.Name) -> dns.rrset.RRset:
        return next(soa for zone, soa in self._zones if qname.is_subdomain(zone))
