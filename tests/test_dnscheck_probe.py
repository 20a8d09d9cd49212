"""The dns-loop probe over real DNS: it keeps resolving when what serves the nameserver address
moves (a node's cache pod replaced), and reports the gap while nothing answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from clustergate.probe import dns as probe_dns

NAMESERVER = "10.100.0.10"


class Responder:
    """A UDP DNS server on loopback answering every A query with 10.0.0.1."""

    def __init__(self) -> None:
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
            response = dns.message.make_response(query)
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 30, "IN", "A", "10.0.0.1")
            )
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
