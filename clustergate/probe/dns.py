"""Resolving names the way the pod's resolver would, and timing each query.

The resolver is configured from the pod's own /etc/resolv.conf (nameservers, search list,
ndots), so the probe sees what applications in the pod see.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from clustergate.probe import sandbox


def read_resolv_conf() -> dict[str, Any]:
    text = sandbox.path("/etc/resolv.conf").read_text()
    nameservers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver":
            nameservers.extend(words[1:2])
        elif words[0] == "search":
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return {"nameservers": nameservers, "search": search, "options": options, "text": text}


def _resolver(conf: dict[str, Any], timeout_s: float) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    servers = []
    for address in conf["nameservers"]:
        host, port = sandbox.dial(address, 53)
        servers.append(dns.nameserver.Do53Nameserver(host, port))
    resolver.nameservers = servers
    resolver.search = [dns.name.from_text(domain) for domain in conf["search"]]
    resolver.use_search_by_default = True
    for option in conf["options"]:
        if option.startswith("ndots:"):
            resolver.ndots = int(option.split(":", 1)[1])
    # The lifetime bounds one resolve() call: one query of a walk in resolve_walk; in
    # resolve_loop a whole resolution, which bounds how long one failure holds the loop.
    resolver.timeout = timeout_s
    resolver.lifetime = timeout_s
    resolver.cache = None
    return resolver


def search_walk(name: str, search: Sequence[dns.name.Name], ndots: int) -> list[dns.name.Name]:
    """The names a pod's resolver asks for, in order, to resolve ``name`` (resolv.conf(5)): a
    name ending in a dot as it is; one with at least ``ndots`` dots as it is, then under each
    search domain; any other under each search domain first, then as it is."""
    given = dns.name.from_text(name)
    if name.endswith("."):
        return [given]
    qualified = [dns.name.from_text(name, origin=domain) for domain in search]
    return [given, *qualified] if name.count(".") >= ndots else [*qualified, given]


class QueryFailed(Exception):
    """One query of a search walk got no usable answer (a timeout, a refusal, SERVFAIL)."""

    def __init__(self, qname: dns.name.Name, error: Exception) -> None:
        super().__init__(f"{qname}: {type(error).__name__}: {error}")


def resolve_walk(resolver: dns.resolver.Resolver, name: str) -> dns.resolver.Answer:
    """Resolve ``name`` as a pod's resolver does: one query per name of its search walk, each
    bounded by the resolver's lifetime on its own (libc bounds each attempt, not the walk). A
    slow nameserver makes the walk slow, which the latency shows; only a query that gets no
    answer in time fails the resolution, named in the error. NXDOMAIN and an empty answer
    move on to the next name of the walk, as libc does."""
    walk = search_walk(name, resolver.search, 1 if resolver.ndots is None else resolver.ndots)
    for qname in walk:
        try:
            return resolver.resolve(qname, dns.rdatatype.A, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except (dns.exception.DNSException, OSError) as error:
            raise QueryFailed(qname, error) from error
    raise dns.resolver.NXDOMAIN(qnames=walk)


def resolve(names: list[str], count: int, timeout_s: float) -> dict[str, Any]:
    """Resolve each name ``count`` times; report answers and every resolution's latency (its
    whole search walk, as an application waits for it). ``timeout_s`` bounds each query.

    One unmeasured resolution per name goes first: the latencies describe the cache in its
    steady state, not its first miss of each name (nor the probe's own start-up)."""
    conf = read_resolv_conf()
    resolver = _resolver(conf, timeout_s)
    results = []
    for name in names:
        latencies, failures, answers = [], [], set()
        with contextlib.suppress(dns.exception.DNSException, QueryFailed, OSError):
            resolve_walk(resolver, name)
        for _ in range(count):
            started = time.perf_counter()
            try:
                answer = resolve_walk(resolver, name)
            except (dns.exception.DNSException, QueryFailed) as error:
                failures.append(type(error).__name__ + ": " + str(error)[:200])
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            answers.update(record.address for record in answer)
        results.append(
            {
                "name": name,
                "answers": sorted(answers),
                "latencies_ms": [round(value, 3) for value in latencies],
                "failures": failures[:5],
                "failed": len(failures),
            }
        )
    ok = all(not item["failed"] for item in results)
    return {"ok": ok, "resolv_conf": conf, "names": results}


#: Printed to stderr once the loop has its first answer, so a check can start disrupting.
LOOP_STARTED = "dns-loop: first answer"


def resolve_loop(name: str, duration_s: float, interval_s: float, timeout_s: float) -> dict:
    """Resolve ``name`` every ``interval_s`` for ``duration_s``; report the longest gap
    between two successful answers (an outage as an application would feel it), and when
    (epoch seconds) the loop got its first answer and the longest gap ended."""
    conf = read_resolv_conf()
    started = time.monotonic()
    epoch_offset = time.time() - started
    last_success = started
    first_answer: float | None = None
    longest_gap, gap_ended, queries, failures = 0.0, started, 0, 0
    while (now := time.monotonic()) - started < duration_s:
        queries += 1
        try:
            # A resolver per query: it dials the nameserver afresh, as a pod's libc does.
            _resolver(conf, timeout_s).resolve(name, dns.rdatatype.A, search=True)
        except (dns.exception.DNSException, OSError):
            failures += 1
        else:
            now = time.monotonic()
            if first_answer is None:
                first_answer = now
                print(LOOP_STARTED, file=sys.stderr, flush=True)
            if now - last_success > longest_gap:
                longest_gap, gap_ended = now - last_success, now
            last_success = now
        time.sleep(max(0.0, interval_s - (time.monotonic() - now)))
    if time.monotonic() - last_success > longest_gap:
        longest_gap, gap_ended = time.monotonic() - last_success, time.monotonic()
    return {
        "ok": failures == 0,
        "name": name,
        "queries": queries,
        "failures": failures,
        "longest_gap_s": round(longest_gap, 3),
        "longest_gap_ended_at": round(epoch_offset + gap_ended, 3),
        "first_answer_at": None if first_answer is None else round(epoch_offset + first_answer, 3),
        "ended_at": round(time.time(), 3),
    }
