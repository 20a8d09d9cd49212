"""The twin's traffic side over real HTTP and boto3.

AWS here is moto's own server (ThreadedMotoServer on a free port), not the twin's AWS gateway:
the gateway forwards ELBv2 and Route 53 calls to moto unchanged, so for these APIs moto alone is
a faithful stand-in and keeps this file independent of the rest of the twin.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import dns.flags
import dns.message
import dns.query
import pytest
import urllib3
from moto.server import ThreadedMotoServer

from clustergate.config import CutoverSection
from clustergate.stats import Verdict, compare_latency, proportion_interval, share_check
from clustergate.twin import outputs
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Timings, TwinSettings
from clustergate.twin.traffic import TrafficFacts, TrafficSide
from tests.loop_thread import LoopThread

REGION = "us-west-2"
#: Seeds the split and the faults' draws, so that a statistical assertion gives the same
#: result on every run instead of failing at its confidence level's rate.
SEED = 20_24


@dataclass(frozen=True)
class Answer:
    status: int
    header: str
    body_cluster: str
    latency_ms: float


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str) -> Iterator[dict[str, Any]]:
    # Reset before as well as after: moto's backends are process-wide, so another module's
    # in-process moto on the same xdist worker can leave the twin's target groups behind.
    asyncio.run(_reset_moto(moto_url))
    boto = {
        "endpoint_url": moto_url,
        "region_name": REGION,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    yield {"elbv2": boto3.client("elbv2", **boto), "route53": boto3.client("route53", **boto)}
    asyncio.run(_reset_moto(moto_url))


async def _reset_moto(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/moto-api/reset") as r:
        assert r.status == 200, f"moto reset answered {r.status}"


@dataclass
class Twin:
    side: TrafficSide
    facts: TrafficFacts
    netmap: Netmap
    settings: TwinSettings


@pytest.fixture
def start_traffic(moto_url: str, tmp_path: Path, aws: dict[str, Any]) -> Iterator[Any]:
    loop = LoopThread()
    started: list[TrafficSide] = []

    def start(
        faults: frozenset[str] = frozenset(), propagation: float = 0.2, driver: str = "elbv2"
    ) -> Twin:
        settings = TwinSettings(
            state_dir=str(tmp_path),
            faults=faults,
            timings=Timings(weight_propagation=propagation),
        )
        netmap = Netmap()
        side = TrafficSide(settings, netmap, moto_url, seed=SEED)
        loop.run(side.start())
        started.append(side)
        facts = loop.run(side.bootstrap(driver=driver))
        return Twin(side, facts, netmap, settings)

    yield start
    for side in started:
        loop.run(side.stop())
    loop.close()


def set_listener_weights(aws: dict[str, Any], facts: TrafficFacts, old: int, new: int) -> None:
    weights = {"old": old, "new": new}
    aws["elbv2"].modify_listener(
        ListenerArn=facts.listener_arn,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": facts.target_groups[name], "Weight": weights[name]}
                        for name in ("old", "new")
                    ]
                },
            }
        ],
    )


def set_record_weights(aws: dict[str, Any], facts: TrafficFacts, old: int, new: int) -> None:
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": facts.record_name,
                "Type": "CNAME",
                "SetIdentifier": name,
                "Weight": weight,
                "TTL": 60,
                "ResourceRecords": [{"Value": f"{name}-cluster.clustergate.test"}],
            },
        }
        for name, weight in (("old", old), ("new", new))
    ]
    aws["route53"].change_resource_record_sets(
        HostedZoneId=facts.hosted_zone_id, ChangeBatch={"Changes": changes}
    )


async def _fetch_many(url: str, count: int, concurrency: int) -> list[Answer]:
    answers: list[Answer] = []
    remaining = iter(range(count))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            started = time.perf_counter()
            async with session.get(f"{url}/checkout") as response:
                body = await response.json()
                latency = (time.perf_counter() - started) * 1000
                header = response.headers.get("X-Served-By", "")
                answers.append(Answer(response.status, header, body.get("cluster", ""), latency))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return answers


def _fetch_in_process(url: str, count: int, concurrency: int) -> list[Answer]:
    return asyncio.run(_fetch_many(url, count, concurrency))


@pytest.fixture(scope="module")
def client_process() -> Iterator[ProcessPoolExecutor]:
    """The HTTP client in a process of its own, so that it does not share the twin's GIL."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def fetch(client_process: ProcessPoolExecutor) -> Any:
    def fetch(url: str, count: int, concurrency: int = 16) -> list[Answer]:
        # Generous: a 2-core machine shared with other test runs may serve only ~150/s.
        timeout = 60 + count / 50
        try:
            return client_process.submit(_fetch_in_process, url, count, concurrency).result(timeout)
        except TimeoutError:
            pytest.fail(f"{count} requests to the edge did not finish within {timeout:.0f}s")

    return fetch


def wait_for_split(twin: Twin, expected: dict[str, int], timeout_s: float = 5.0) -> float:
    """Seconds until the edge splits by ``expected``; fails with what it saw."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if twin.side.edge_weights == expected:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(
        f"edge did not take weights {expected} within {timeout_s}s; "
        f"it splits by {twin.side.edge_weights}"
    )


def new_share(answers: list[Answer]) -> tuple[int, int]:
    return sum(a.header == "new" for a in answers), len(answers)


def test_bootstrap_creates_weighted_listener_and_records(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic()
    facts = twin.facts
    listener = aws["elbv2"].describe_listeners(ListenerArns=[facts.listener_arn])["Listeners"][0]
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert {g["TargetGroupArn"]: g["Weight"] for g in groups} == {
        facts.target_groups["old"]: 100,
        facts.target_groups["new"]: 0,
    }
    names = aws["elbv2"].describe_target_groups(TargetGroupArns=list(facts.target_groups.values()))
    assert sorted(g["TargetGroupName"] for g in names["TargetGroups"]) == ["tg-new", "tg-old"]
    records = aws["route53"].list_resource_record_sets(HostedZoneId=facts.hosted_zone_id)
    weighted = {
        r["SetIdentifier"]: r["Weight"]
        for r in records["ResourceRecordSets"]
        if r["Name"] == "shop.clustergate.test."
    }
    assert weighted == {"old": 100, "new": 0}
    assert twin.netmap.resolve_url("https://shop.clustergate.test/checkout") == (
        f"{twin.side.edge_url}/checkout"
    )
    balancer_url = twin.netmap.resolve_url(f"http://{facts.load_balancer_dns}/checkout")
    assert balancer_url == f"{twin.side.edge_url}/checkout"
    answers = fetch(twin.side.edge_url, 200)
    assert {(a.status, a.header, a.body_cluster) for a in answers} == {(200, "old", "old")}


def test_weight_change_takes_effect_after_the_propagation_delay(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic(propagation=1.0)
    set_listener_weights(aws, twin.facts, 0, 100)
    changed_at = time.monotonic()
    while time.monotonic() - changed_at < 5.0:
        if fetch(twin.side.edge_url, 20, concurrency=4)[-1].header == "new":
            break
        time.sleep(0.05)
    took = time.monotonic() - changed_at
    assert took < 1.0 + 1.0, f"new weights served only after {took:.2f}s (propagation 1.0s)"
    answers = fetch(twin.side.edge_url, 200)
    assert {a.header for a in answers} == {"new"}
    assert {a.body_cluster for a in answers} == {"new"}


def test_weighted_split_matches_its_target_over_10000_requests(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic()
    set_listener_weights(aws, twin.facts, 75, 25)
    wait_for_split(twin, {"old": 75, "new": 25})
    answers = fetch(twin.side.edge_url, 10_000, concurrency=32)
    hits, total = new_share(answers)
    interval = proportion_interval(hits, total, confidence=0.99)
    assert interval.contains(0.25), interval.describe()
    assert share_check(hits, total, 0.25, 0.03).verdict is Verdict.PASS
    assert {a.status for a in answers} == {200}


def _ask(name_server: str, qtype: str = "A") -> dns.message.Message:
    host, port = name_server.rsplit(":", 1)
    query = dns.message.make_query("shop.clustergate.test.", qtype)
    return dns.query.udp(query, host, port=int(port), timeout=2.0)


def test_route53_name_server_answers_the_weighted_records_over_dns(
    start_traffic: Any, aws: dict[str, Any]
) -> None:
    twin = start_traffic(driver="route53")
    assert twin.facts.driver == "route53"
    (name_server,) = twin.facts.name_servers
    first = _ask(name_server)
    assert [rrset.to_text() for rrset in first.answer] == [
        "shop.clustergate.test. 1 IN CNAME old-cluster.clustergate.test.",
        "old-cluster.clustergate.test. 1 IN A 127.0.0.2",
    ]
    assert first.flags & dns.flags.AA
    set_record_weights(aws, twin.facts, 50, 50)
    deadline = time.monotonic() + 5.0
    while _ask(name_server, "CNAME").answer[0].ttl != 60:
        assert time.monotonic() < deadline, "the name server never served the new records"
        time.sleep(0.05)
    answers = [_ask(name_server).answer[-1] for _ in range(1000)]
    addresses = [rrset[0].address for rrset in answers]
    assert set(addresses) == {"127.0.0.2", "127.0.0.3"}
    assert proportion_interval(addresses.count("127.0.0.3"), 1000).contains(0.5)
    # The address is the cluster: the weighted name's URL reaches the backend at that address.
    port = twin.facts.record_url.rsplit(":", 1)[1]
    for address, cluster in (("127.0.0.2", "old"), ("127.0.0.3", "new")):
        response = urllib3.request(
            "GET", f"http://{address}:{port}/", headers={"Host": "shop.clustergate.test"}
        )
        assert response.headers["X-Served-By"] == cluster
    # The ALB's edge is another way in: it still splits by the listener only.
    assert twin.side.edge_weights == {"old": 100, "new": 0}
    # What the twin's cluster config offers with --cutover-driver route53 is a valid section.
    section = CutoverSection.model_validate(outputs.cutover_section(twin.facts))
    assert section.endpoint == twin.facts.record_url
    assert section.resolver == (name_server,)


def test_fault_skewed_split_halves_the_new_share(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic(faults=frozenset({"cutover-skewed-split"}))
    set_listener_weights(aws, twin.facts, 50, 50)
    wait_for_split(twin, {"old": 50, "new": 50})
    hits, total = new_share(fetch(twin.side.edge_url, 2000, concurrency=32))
    interval = proportion_interval(hits, total)
    assert interval.contains(0.25), interval.describe()
    assert share_check(hits, total, 0.5, 0.03).verdict is Verdict.FAIL


def test_fault_new_backend_errors_answers_5_percent_503(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic(faults=frozenset({"new-backend-errors"}))
    set_listener_weights(aws, twin.facts, 0, 100)
    wait_for_split(twin, {"old": 0, "new": 100})
    answers = fetch(twin.side.edge_url, 2000, concurrency=32)
    errors = [a for a in answers if a.status == 503]
    assert proportion_interval(len(errors), len(answers)).contains(0.05), len(errors)
    assert {(a.header, a.body_cluster) for a in errors} == {("new", "new")}


def test_fault_new_backend_slow_makes_new_significantly_slower(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic(faults=frozenset({"new-backend-slow"}))
    set_listener_weights(aws, twin.facts, 50, 50)
    wait_for_split(twin, {"old": 50, "new": 50})
    answers = fetch(twin.side.edge_url, 600, concurrency=16)
    old = [a.latency_ms for a in answers if a.header == "old"]
    new = [a.latency_ms for a in answers if a.header == "new"]
    comparison = compare_latency(old, new)
    assert comparison.verdict is Verdict.FAIL, comparison.describe()
    assert comparison.new_median - comparison.old_median > 60, comparison.describe()


def test_healthy_backends_are_equally_fast_and_error_free(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic()
    set_listener_weights(aws, twin.facts, 50, 50)
    wait_for_split(twin, {"old": 50, "new": 50})
    answers = fetch(twin.side.edge_url, 600, concurrency=16)
    assert {a.status for a in answers} == {200}
    old = [a.latency_ms for a in answers if a.header == "old"]
    new = [a.latency_ms for a in answers if a.header == "new"]
    assert compare_latency(old, new).verdict is Verdict.PASS


def test_fault_weights_ignored_keeps_the_bootstrap_weights(
    start_traffic: Any, aws: dict[str, Any], fetch: Any
) -> None:
    twin = start_traffic(faults=frozenset({"weights-ignored"}), propagation=0.2)
    set_listener_weights(aws, twin.facts, 0, 100)
    time.sleep(1.0)  # five propagation periods: a healthy edge has long switched by now
    assert twin.side.edge_weights == {"old": 100, "new": 0}
    assert {a.header for a in fetch(twin.side.edge_url, 200)} == {"old"}
