"""The DNS probes over real DNS: the dns-loop probe keeps resolving when what serves the
nameserver address moves (a node's cache pod replaced), and reports the gap while nothing
answers; the dns probe walks the search list as a pod's resolver does, each query bounded on
its own, so a slow cache makes resolutions slow (the latency check's business), not failed."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from clustergate.probe import dns as probe_dns

NAMESERVER = "10.100.0.10"


class Responder:
    """A UDP DNS server on loopback answering A queries with 10.0.0.1, each ``delay`` seconds
    late; names under a domain of ``nxdomain`` get NXDOMAIN, those under ``silent`` nothing."""

    def __init__(
        self, delay: float = 0.0, nxdomain: tuple[str, ...] = (), silent: tuple[str, ...] = ()
    ) -> None:
        self.delay = delay
        self.nxdomain = [dns.name.from_text(domain) for domain in nxdomain]
        self.silent = [dns.name.from_text(domain) for domain in silent]
        self.asked: list[str] = []
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name
            self.asked.append(name.to_text())
            if any(name.is_subdomain(domain) for domain in self.silent):
                continue
            response = dns.message.make_response(query)
            if any(name.is_subdomain(domain) for domain in self.nxdomain):
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                response.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "10.0.0.1"))
            time.sleep(self.delay)
            self.socket.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "resolv.conf").write_text(
        f"search ns.svc.cluster.local\nnameserver {NAMESERVER}\noptions ndots:1\n"
    )
    monkeypatch.setenv("CLUSTERGATE_ROOT", str(root))
    monkeypatch.setenv("CLUSTERGATE_NETMAP", str(tmp_path / "netmap.json"))
    return tmp_path / "netmap.json"


def resolv_conf(netmap: Path, search: str, ndots: int) -> None:
    conf = netmap.parent / "root" / "etc" / "resolv.conf"
    conf.write_text(f"search {search}\nnameserver {NAMESERVER}\noptions ndots:{ndots}\n")


def route(netmap: Path, port: int) -> None:
    staged = netmap.with_suffix(".tmp")
    staged.write_text(
        json.dumps({"addresses": {f"{NAMESERVER}:53": f"127.0.0.1:{port}"}, "urls": {}})
    )
    staged.replace(netmap)


def test_loop_follows_the_moved_server_and_reports_the_gap(pod: Path) -> None:
    first, second = Responder(), Responder()
    try:
        route(pod, first.port)
        outcome: dict = {}
        loop = threading.Thread(
            target=lambda: outcome.update(
                probe_dns.resolve_loop("kubernetes.default.", 2.0, 0.02, 0.2)
            )
        )
        loop.start()
        time.sleep(0.5)
        first.close()
        time.sleep(0.5)
        route(pod, second.port)
        loop.join(timeout=10)
    finally:
        first.close()
        second.close()
    assert outcome["failures"] > 0
    assert 0.4 < outcome["longest_gap_s"] < 1.5
    assert outcome["first_answer_at"] < outcome["longest_gap_ended_at"] < outcome["ended_at"]
    assert outcome["queries"] - outcome["failures"] > 20


STS = "sts.us-west-2.amazonaws.com"
#: name, ndots -> the names a pod's resolver asks for, in order (search list a.local b.local).
WALKS = (
    ("web", 5, ["web.a.local.", "web.b.local.", "web."]),
    (STS, 5, [f"{STS}.a.local.", f"{STS}.b.local.", f"{STS}."]),
    (STS, 3, [f"{STS}.", f"{STS}.a.local.", f"{STS}.b.local."]),
    ("kubernetes.default.", 5, ["kubernetes.default."]),
    (
        "kubernetes.default",
        1,
        ["kubernetes.default.", "kubernetes.default.a.local.", "kubernetes.default.b.local."],
    ),
    (
        "kubernetes.default",
        2,
        ["kubernetes.default.a.local.", "kubernetes.default.b.local.", "kubernetes.default."],
    ),
)


@pytest.mark.parametrize(("name", "ndots", "expected"), WALKS)
def test_search_walk_follows_resolv_conf(name: str, ndots: int, expected: list[str]) -> None:
    search = [dns.name.from_text("a.local"), dns.name.from_text("b.local")]
    assert [q.to_text() for q in probe_dns.search_walk(name, search, ndots)] == expected


SEARCH = "ns.svc.cluster.local svc.cluster.local cluster.local us-west-2.compute.internal"


def test_a_slow_nameserver_makes_a_walk_slow_not_failed(pod: Path) -> None:
    """The dns-slow-cache case: five queries of 0.15 s each under a 0.3 s timeout. Bounding the
    whole walk by the timeout (as before) failed every resolution of the external name."""
    slow = Responder(delay=0.15, nxdomain=("cluster.local", "compute.internal"))
    try:
        resolv_conf(pod, SEARCH, 5)
        route(pod, slow.port)
        outcome = probe_dns.resolve([STS], count=2, timeout_s=0.3)
    finally:
        slow.close()
    (result,) = outcome["names"]
    assert outcome["ok"], result["failures"]
    assert result["answers"] == ["10.0.0.1"]
    assert len(result["latencies_ms"]) == 2
    assert min(result["latencies_ms"]) >= 5 * 150
    assert slow.asked[-5:] == [f"{STS}.{domain}." for domain in SEARCH.split()] + [f"{STS}."]


def test_a_query_without_an_answer_is_one_failure_naming_it(pod: Path) -> None:
    quiet = Responder(nxdomain=("cluster.local",), silent=("compute.internal",))
    try:
        resolv_conf(pod, SEARCH, 5)
        route(pod, quiet.port)
        started = time.monotonic()
        outcome = probe_dns.resolve([STS], count=2, timeout_s=0.2)
        took = time.monotonic() - started
    finally:
        quiet.close()
    (result,) = outcome["names"]
    assert not outcome["ok"]
    assert result["failed"] == 2
    assert result["failures"][0].startswith(
        f"QueryFailed: {STS}.us-west-2.compute.internal.: LifetimeTimeout"
    ), result["failures"]
    assert took < 3 * 0.2 + 1.0  # warm-up and two resolutions, each stopped by one timeout
