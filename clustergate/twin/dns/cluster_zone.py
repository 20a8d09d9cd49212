"""The names of the cluster, answered as the CoreDNS ``kubernetes`` plugin answers them.

EKS configures CoreDNS with ``kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure;
fallthrough in-addr.arpa ip6.arpa }``. So, under ``cluster.local``:

- ``<svc>.<ns>.svc``: a ClusterIP Service answers its ClusterIP; a headless one its ready
  endpoint addresses (NXDOMAIN while it has none); IPv4 only, so AAAA is NODATA.
- ``<endpoint>.<svc>.<ns>.svc``: one endpoint address, by its hostname or dashed IP.
- ``_<port>._<proto>.<svc>.<ns>.svc`` and ``<svc>.<ns>.svc`` SRV: one record per port (and per
  endpoint of a headless Service) with the targets' A records in the additional section.
- ``<a-b-c-d>.<ns>.pod``: the address spelled in the name ("insecure": not checked against
  the pods; "verified" mode checks that a pod of that namespace has it).
- an ExternalName Service: a CNAME to its external name.
- anything else in the zone: NXDOMAIN with the zone's SOA; names that only exist as parents
  of others (``svc.cluster.local``, a namespace with Services) are NODATA.
- reverse names of ClusterIPs and endpoint addresses get PTRs; other reverse names are not
  ours (:meth:`ClusterZone.answer` returns None) and go to the upstream, as ``fallthrough``.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Literal

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset

from clustergate.twin.dns.messages import negative, question, response_to, rrset, soa_rrset
from clustergate.twin.dns.records import ClusterRecords, Endpoints, Port, Service, dashed

#: The kubernetes plugin's default record TTL.
RECORD_TTL = 5
_REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


class ClusterZone:
    def __init__(
        self,
        records: ClusterRecords,
        domain: str = "cluster.local",
        dns_ip: str = "10.100.0.10",
        pods: Literal["insecure", "verified"] = "insecure",
    ) -> None:
        self.records = records
        self.zone = dns.name.from_text(domain)
        self.dns_ip = dns_ip
        self.pods = pods
        self._soa = soa_rrset(
            self.zone,
            RECORD_TTL,
            serial=int(time.time()),
            minimum=RECORD_TTL,
            ns=f"ns.dns.{self.zone}",
            mbox=f"hostmaster.{self.zone}",
        )

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer to ``query``, or None when the name is not the cluster's to answer."""
        asked = question(query)
        if asked is None:
            return None
        qname, qtype = asked
        if qname.is_subdomain(self.zone):
            return self._forward_zone(query, qname, qtype)
        if any(qname.is_subdomain(zone) for zone in _REVERSE_ZONES):
            return self._reverse(query, qname, qtype)
        return None

    # -- forward names -------------------------------------------------------------------------

    def _forward_zone(
        self, query: dns.message.Message, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        labels = tuple(label.decode().lower() for label in qname.relativize(self.zone).labels)
        if not labels:
            return self._apex(query, qtype)
        if labels[-1] == "svc":
            return self._svc(query, qname, qtype, labels[:-1])
        if labels[-1] == "pod":
            return self._pod(query, qname, qtype, labels[:-1])
        return self._nxdomain(query)

    def _apex(self, query: dns.message.Message, qtype: dns.rdatatype.RdataType):
        response = response_to(query, authoritative=True)
        if qtype == dns.rdatatype.SOA:
            response.answer.append(self._soa)
        elif qtype == dns.rdatatype.NS:
            ns_name = dns.name.from_text(f"ns.dns.{self.zone}")
            response.answer.append(rrset(self.zone, RECORD_TTL, "NS", ns_name.to_text()))
            response.additional.append(rrset(ns_name, RECORD_TTL, "A", self.dns_ip))
        else:
            response.authority.append(self._soa)
        return response

    def _svc(self, query, qname, qtype, labels: tuple[str, ...]) -> dns.message.Message:
        if not labels:
            return self._nodata(query)
        if len(labels) == 1:
            known = self.records.has_namespace(labels[0])
            return self._nodata(query) if known else self._nxdomain(query)
        service = self.records.service(labels[-1], labels[-2])
        if service is None:
            return self._nxdomain(query)
        prefix = labels[:-2]
        if not prefix:
            return self._service(query, qname, qtype, service)
        if len(prefix) == 2 and all(label.startswith("_") for label in prefix):
            return self._srv(query, qname, qtype, service, prefix[0][1:], prefix[1][1:])
        if len(prefix) == 1 and prefix[0].startswith("_"):
            return (
                self._nodata(query)
                if _has_protocol(service, prefix[0][1:])
                else self._nxdomain(query)
            )
        if len(prefix) == 1:
            return self._endpoint(query, qname, qtype, service, prefix[0])
        return self._nxdomain(query)

    def _service(self, query, qname, qtype, service: Service) -> dns.message.Message:
        if service.external_name:
            response = response_to(query, authoritative=True)
            target = dns.name.from_text(service.external_name)
            response.answer.append(rrset(qname, RECORD_TTL, "CNAME", target.to_text()))
            return response
        targets = self._targets(service)
        if not targets:
            return self._nxdomain(query)
        if qtype == dns.rdatatype.SRV:
            return self._srv_answer(query, qname, self._ports(service), targets)
        if qtype == dns.rdatatype.A:
            response = response_to(query, authoritative=True)
            ips = [ip for _, ip in targets if _is_v4(ip)]
            if ips:
                response.answer.append(rrset(qname, RECORD_TTL, "A", *ips))
                return response
        return self._nodata(query)

    def _targets(self, service: Service) -> list[tuple[dns.name.Name, str]]:
        """(name, ip) of what the service resolves to: its own name and ClusterIPs, or for a
        headless service one entry per ready endpoint address."""
        own = self._service_name(service)
        if not service.headless:
            return [(own, ip) for ip in service.cluster_ips]
        endpoints = self.records.endpoints(service.namespace, service.name)
        if endpoints is None:
            return []
        return [
            (dns.name.Name((_endpoint_label(a.hostname, a.ip).encode(), *own.labels)), a.ip)
            for a in endpoints.addresses
        ]

    def _srv(self, query, qname, qtype, service: Service, port_name: str, protocol: str):
        ports = tuple(
            p
            for p in self._ports(service)
            if p.name == port_name and p.protocol == protocol.upper()
        )
        targets = self._targets(service)
        if not ports or not targets:
            return self._nxdomain(query)
        if qtype != dns.rdatatype.SRV:
            return self._nodata(query)
        return self._srv_answer(query, qname, ports, targets)

    def _srv_answer(self, query, qname, ports, targets) -> dns.message.Message:
        if not ports:
            return self._nodata(query)
        response = response_to(query, authoritative=True)
        weight = max(1, 100 // (len(ports) * len(targets)))
        values = [f"0 {weight} {p.port} {name}" for p in ports for name, _ in targets]
        response.answer.append(rrset(qname, RECORD_TTL, "SRV", *values))
        for name, ip in dict(targets).items():
            response.additional.append(rrset(name, RECORD_TTL, "A", ip))
        return response

    def _ports(self, service: Service) -> tuple[Port, ...]:
        if not service.headless:
            return service.ports
        endpoints = self.records.endpoints(service.namespace, service.name)
        return endpoints.ports if endpoints and endpoints.ports else service.ports

    def _endpoint(self, query, qname, qtype, service: Service, label: str):
        endpoints: Endpoints | None = self.records.endpoints(service.namespace, service.name)
        ips = [
            a.ip
            for a in (endpoints.addresses if endpoints else ())
            if _endpoint_label(a.hostname, a.ip) == label
        ]
        if not ips:
            return self._nxdomain(query)
        v4 = [ip for ip in ips if _is_v4(ip)]
        if qtype == dns.rdatatype.A and v4:
            response = response_to(query, authoritative=True)
            response.answer.append(rrset(qname, RECORD_TTL, "A", *v4))
            return response
        return self._nodata(query)

    def _pod(self, query, qname, qtype, labels: tuple[str, ...]) -> dns.message.Message:
        if len(labels) < 2:
            return self._nodata(query)
        if len(labels) != 2:
            return self._nxdomain(query)
        ip = _undashed(labels[0])
        if ip is None or (self.pods == "verified" and not self.records.pod_has_ip(labels[1], ip)):
            return self._nxdomain(query)
        if qtype == dns.rdatatype.A and _is_v4(ip):
            response = response_to(query, authoritative=True)
            response.answer.append(rrset(qname, RECORD_TTL, "A", ip))
            return response
        return self._nodata(query)

    # -- reverse names -------------------------------------------------------------------------

    def _reverse(self, query, qname, qtype) -> dns.message.Message | None:
        try:
            ip = dns.reversename.to_address(qname)
        except (dns.exception.SyntaxError, ValueError):
            return None
        names = self.records.names_for_ip(ip)
        if not names:
            return None
        if qtype != dns.rdatatype.PTR:
            return self._nodata(query)
        response = response_to(query, authoritative=True)
        targets = [
            f"{host + '.' if host else ''}{service}.{namespace}.svc.{self.zone}"
            for namespace, service, host in names
        ]
        response.answer.append(rrset(qname, RECORD_TTL, "PTR", *targets))
        return response

    # -- helpers -------------------------------------------------------------------------------

    def _service_name(self, service: Service) -> dns.name.Name:
        return dns.name.from_text(f"{service.name}.{service.namespace}.svc", self.zone)

    def _nxdomain(self, query: dns.message.Message) -> dns.message.Message:
        return negative(query, dns.rcode.NXDOMAIN, self._soa)

    def _nodata(self, query: dns.message.Message) -> dns.message.Message:
        return negative(query, dns.rcode.NOERROR, self._soa)


def _has_protocol(service: Service, protocol: str) -> bool:
    return any(p.protocol == protocol.upper() for p in service.ports)


def _endpoint_label(hostname: str, ip: str) -> str:
    return hostname.lower() if hostname else dashed(ip)


def _is_v4(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 4


def _undashed(label: str) -> str | None:
    """``10-0-128-12`` → ``10.0.128.12``; None when the label is not a dashed IPv4 address."""
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None
