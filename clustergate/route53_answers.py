"""Does Route 53 answer with the weights the step set? Sampled at its own name servers.

The first of the two questions a Route 53 cutover step asks (the second, whether clients
follow, is :mod:`clustergate.resolutions`). Every query to an authoritative name server is a
fresh weighted draw: no cache sits in front, so the draws are independent and a few hundred of
them, sent in about a second, decide the share. Each answer is attributed to the weighted
record set whose value it carries (the CNAME target, or the address of an A record set); an
answer carrying neither cluster's value is counted apart and reported.

The verdict is :func:`clustergate.stats.share_check` over the answers (``unit`` "authoritative
answers"): pass when the whole interval lies in ``weight ± tolerance``, fail when it lies
outside, no verdict when it straddles an edge. :func:`answers_to_sample` sends enough queries
that an on-target split passes with room to spare (four times :func:`~clustergate.stats.
units_needed`: the interval is then about half the tolerance wide on each side).

Queries go over UDP, with a retry over TCP when the answer is truncated (dnspython's
``udp_with_fallback``), round robin over the name servers.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from clustergate.stats import ShareCheck, Verdict, share_check, units_needed
from clustergate.weights import Route53Weights

#: Sample this many times the fewest answers at which an on-target split can pass.
SAMPLE_FACTOR = 4
#: Never fewer answers than this, never more.
MIN_ANSWERS, MAX_ANSWERS = 200, 20_000
QUERY_TIMEOUT_S = 2.0
DNS_PORT = 53


class AnswerSampleError(AssertionError):
    """The name servers could not be asked (unknown, unreachable, refused)."""


def parse_server(server: str, default_port: int = DNS_PORT) -> tuple[str, int]:
    """``"host"`` or ``"host:port"`` → ``(address, port)``; a host name is resolved by the
    system resolver (Route 53's name servers are named ``ns-123.awsdns-45.com``)."""
    host, _, port = server.rpartition(":") if ":" in server else (server, "", "")
    try:
        address = socket.gethostbyname(host)
    except OSError as error:
        raise AnswerSampleError(f"name server {host!r} does not resolve: {error}") from None
    return address, int(port) if port else default_port


def zone_name_servers(route53: Any, zone_id: str) -> list[str]:
    """The zone's delegation set, as ``GetHostedZone`` returns it."""
    zone = route53.get_hosted_zone(Id=zone_id)
    return list(zone.get("DelegationSet", {}).get("NameServers", []))


def answers_to_sample(target: float, tolerance: float, confidence: float) -> int:
    needed = units_needed(target, tolerance, confidence)
    return min(max(SAMPLE_FACTOR * needed, MIN_ANSWERS), MAX_ANSWERS)


@dataclass(frozen=True)
class AnswerSample:
    """What the name servers answered: per record set identifier, how many answers."""

    record_name: str
    servers: tuple[str, ...]
    by_set: dict[str, int]
    #: Answers that carried no weighted set's value, by what they carried (or their rcode).
    other: dict[str, int]
    #: Queries that got no answer, by error and server.
    failed: dict[str, int]

    @property
    def total(self) -> int:
        """Answers (draws): those of either set and those of neither."""
        return sum(self.by_set.values()) + sum(self.other.values())


@dataclass(frozen=True)
class AnswerCheck:
    sample: AnswerSample
    share: ShareCheck
    configured: str

    @property
    def verdict(self) -> Verdict:
        if self.sample.other and self.share.verdict is Verdict.PASS:
            return Verdict.FAIL
        return self.share.verdict

    def describe(self) -> str:
        servers = ", ".join(self.sample.servers)
        text = (
            f"Route 53 answers for {self.sample.record_name} at its name servers ({servers}): "
            f"{self.share.describe()}; the records read {self.configured}"
        )
        for label, counts in (
            ("answers naming neither cluster", self.sample.other),
            ("queries unanswered", self.sample.failed),
        ):
            if counts:
                text += f"; {label}: " + ", ".join(
                    f"{what} x{n}" for what, n in Counter(counts).most_common(3)
                )
        return text


def sample_answers(
    servers: Sequence[str],
    record_name: str,
    rtype: str,
    values: dict[str, set[str]],
    count: int,
    timeout_s: float = QUERY_TIMEOUT_S,
) -> AnswerSample:
    """Ask ``count`` times for ``record_name``/``rtype``, round robin over ``servers``, and
    attribute each answer to the set identifier whose values it carries (``values``: set
    identifier → its record values)."""
    if not servers:
        raise AnswerSampleError(f"no name server to ask for {record_name}")
    addresses = [parse_server(server) for server in servers]
    normal = {ident: {_normal(v) for v in vals} for ident, vals in values.items()}
    by_set: Counter[str] = Counter({ident: 0 for ident in values})
    other: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    qtype = dns.rdatatype.from_text(rtype)
    for index in range(count):
        host, port = addresses[index % len(addresses)]
        query = dns.message.make_query(record_name, qtype)
        try:
            response, _ = dns.query.udp_with_fallback(query, host, timeout=timeout_s, port=port)
        except (dns.exception.DNSException, OSError) as error:
            failed[f"{type(error).__name__} from {host}:{port}"] += 1
            continue
        carried = {
            _normal(rdata.to_text())
            for rrset in response.answer
            if rrset.rdtype == qtype
            for rdata in rrset
        }
        chosen = [ident for ident, vals in normal.items() if carried and carried <= vals]
        if len(chosen) == 1:
            by_set[chosen[0]] += 1
        else:
            other[", ".join(sorted(carried)) or dns.rcode.to_text(response.rcode())] += 1
    if sum(failed.values()) == count:
        errors = ", ".join(f"{what} x{n}" for what, n in failed.most_common(3))
        raise AnswerSampleError(f"no name server answered for {record_name}: {errors}")
    return AnswerSample(
        record_name,
        tuple(f"{h}:{p}" for h, p in addresses),
        dict(by_set),
        dict(other),
        dict(failed),
    )


def check_answers(
    sample: AnswerSample,
    new_set: str,
    target: float,
    tolerance: float,
    confidence: float,
    configured: str,
) -> AnswerCheck:
    """Is the new set's share of the answers within ``target ± tolerance``?"""
    return AnswerCheck(
        sample,
        share_check(
            sample.by_set.get(new_set, 0),
            sample.total,
            target,
            tolerance,
            confidence=confidence,
            min_requests=units_needed(target, tolerance, confidence),
            unit="authoritative answers",
        ),
        configured,
    )


def _normal(value: str) -> str:
    return value.lower().rstrip(".")


def check_route53_answers(
    weights: Route53Weights, weight: int, tolerance: float, confidence: float
) -> AnswerCheck:
    """Sample the authoritative answers for the driver's record and judge the new set's share
    against ``weight`` (percent): what the step set, not what the records read now, so that a
    record changed behind the cutover's back fails here (the records' weights are in the
    message)."""
    rtype, values, configured = weights.weighted()
    servers = list(weights.name_servers) or zone_name_servers(weights.client, weights.zone_id)
    target = weight / 100
    sample = sample_answers(
        servers,
        weights.record_name,
        rtype,
        values,
        answers_to_sample(target, tolerance, confidence),
    )
    reads = ", ".join(f"{ident} {configured[ident]}" for ident in (weights.old_id, weights.new_id))
    return check_answers(sample, weights.new_id, target, tolerance, confidence, f"weights {reads}")


def name_server_problems(weights: Route53Weights, queries: int = 5) -> list[str]:
    """Why the records' answers cannot be sampled: no name server answers, or the answers
    carry neither weighted set's value (the gate's look, a few queries)."""
    rtype, values, _ = weights.weighted()
    servers = list(weights.name_servers) or zone_name_servers(weights.client, weights.zone_id)
    try:
        sample = sample_answers(servers, weights.record_name, rtype, values, queries)
    except AnswerSampleError as error:
        return [f"{weights.description}: {error}"]
    problems = []
    for label, counts in (
        ("answers that carry neither weighted record's value", sample.other),
        ("queries unanswered", sample.failed),
    ):
        if counts:
            seen = ", ".join(f"{what} x{n}" for what, n in Counter(counts).most_common(3))
            problems.append(
                f"{weights.description}: {sum(counts.values())} of {queries} {label} at "
                f"{', '.join(sample.servers)} ({seen})"
            )
    return problems
