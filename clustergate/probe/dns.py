"""Resolving names the way the pod's resolver would, and timing each query.

The resolver is configured from the pod's own /etc/resolv.conf (nameservers, search list,
ndots), so the probe sees what applications in the pod see.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import dns.exception
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
    resolver.timeout = timeout_s
    resolver.lifetime = timeout_s
    resolver.cache = None
    return resolver


def resolve(names: list[str], count: int, timeout_s: float) -> dict[str, Any]:
    """Resolve each name ``count`` times; report answers and every query's latency.

    One unmeasured resolution per name goes first: the latencies describe the cache in its
    steady state, not its first miss of each name (nor the probe's own start-up)."""
    conf = read_resolv_conf()
    resolver = _resolver(conf, timeout_s)
    results = []
    for name in names:
        latencies, failures, answers = [], [], set()
        with contextlib.suppress(dns.exception.DNSException, OSError):
            resolver.resolve(name, dns.rdatatype.A, search=True)
        for _ in range(count):
            started = time.perf_counter()
            try:
                answer = resolver.resolve(name, dns.rdatatype.A, search=True)
            except (dns.exception.DNSException, OSError) as error:
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
