"""A whole cutover walk against the twin's traffic side: real HTTP, real Locust, real boto3.

The traffic side (backends, edge, weighted ALB listener and Route 53 records) runs in a
background event loop in front of moto's own server, as in tests/twin/test_traffic.py; the
cutover drives it exactly as the suite drives a live endpoint. Each traffic fault must fail
the walk with a message naming its cause and leave the weight where it was before the step.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from moto.server import ThreadedMotoServer

from clustergate.config import CutoverSection
from clustergate.cutover import (
    Cutover,
    CutoverFailed,
    EndpointProbe,
    driver_problems,
    endpoint_problems,
    restore_recorded_weight,
)
from clustergate.route53_answers import answers_to_sample, check_route53_answers
from clustergate.stats import Decision, Verdict
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Timings, TwinSettings
from clustergate.twin.traffic import TrafficFacts, TrafficSide
from clustergate.wait import poll_until
from clustergate.weights import Route53Weights, Weights, weights_for
from tests.loop_thread import LoopThread

REGION = "us-west-2"
SEED = 2024
STEP = {"users": 4, "spawn_rate": 4, "max_duration_s": 10, "min_requests": 300}


@pytest.fixture(scope="module")
def session() -> Iterator[boto3.Session]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        yield boto3.Session(
            region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
        )
    finally:
        mp.undo()
        server.stop()


Start = Callable[..., tuple[TrafficFacts, CutoverSection, Weights]]


@pytest.fixture
def traffic(session: boto3.Session, tmp_path: Path) -> Iterator[Start]:
    loop = LoopThread()
    sides: list[TrafficSide] = []
    endpoint = session.client("sts").meta.endpoint_url

    def start(
        weights: tuple[int, ...],
        faults: frozenset[str] = frozenset(),
        driver: str = "elbv2",
        step: dict[str, Any] = STEP,
        tolerance: float = 0.05,
    ) -> tuple[TrafficFacts, CutoverSection, Weights]:
        settings = TwinSettings(
            state_dir=str(tmp_path), faults=faults, timings=Timings(weight_propagation=0.2)
        )
        side = TrafficSide(settings, Netmap(), endpoint, seed=SEED)
        sides.append(side)
        loop.run(side.start())
        facts = loop.run(side.bootstrap(driver=driver))
        # The ALB is reached at its edge; the weighted name through the twin's Route 53 name
        # servers, the clients resolving it as a live run's do through a resolver.
        dialled: dict[str, Any] = {"endpoint": facts.edge_url}
        if driver == "elbv2":
            spec: dict[str, Any] = {
                "kind": "elbv2",
                "listener_arn": facts.listener_arn,
                "target_groups": facts.target_groups,
            }
        else:
            spec = {
                "kind": "route53",
                "hosted_zone_id": facts.hosted_zone_id,
                "record_name": facts.record_name,
                "set_identifiers": {"old": "old", "new": "new"},
                "name_servers": list(facts.name_servers),
            }
            dialled = {"endpoint": facts.record_url, "resolver": list(facts.name_servers)}
        section = CutoverSection.model_validate(
            {
                **dialled,
                "driver": spec,
                "steps": [{"weight": weight, **step} for weight in weights],
                "tolerance": tolerance,
            }
        )
        return facts, section, weights_for(section.driver, session)

    yield start
    for side in sides:
        loop.run(side.stop())
    loop.close()
    # Each test creates the same load balancer and zone: start the next from an empty moto.
    assert urllib3.request("POST", f"{endpoint}/moto-api/reset").status == 200


def walk(section: CutoverSection, weights: Weights, run_dir: Path) -> Cutover:
    return Cutover(section, weights, propagation_timeout_s=4, run_dir=run_dir)


def test_a_healthy_cutover_walks_every_step(traffic: Start, tmp_path: Path) -> None:
    _, section, weights = traffic((25, 100))
    seen: list[int] = []
    cutover = Cutover(section, weights, 4, tmp_path, on_step=lambda r: seen.append(r.weight))
    results = cutover.walk(0)
    assert seen == [25, 100]
    assert [r.verdict for r in results] == [Verdict.PASS] * 2, "\n".join(
        r.describe() for r in results
    )
    assert all(r.stopped_early for r in results)
    assert all(0 < r.sequential.requests_used <= r.requests for r in results)
    assert weights.get() == 100


def set_record_ttl(session: boto3.Session, facts: TrafficFacts, ttl: int) -> None:
    """What a user does to make a step decidable sooner: a shorter TTL on the weighted records."""
    route53 = session.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=facts.hosted_zone_id)
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": {**record, "TTL": ttl}}
        for record in records["ResourceRecordSets"]
        if record["Name"] == facts.record_name
    ]
    route53.change_resource_record_sets(
        HostedZoneId=facts.hosted_zone_id, ChangeBatch={"Changes": changes}
    )


def set_new_weight_behind_the_cutover(
    session: boto3.Session, facts: TrafficFacts, new: int
) -> None:
    """Another tool (an IaC run, a colleague) upserts the records with other weights."""
    route53 = session.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=facts.hosted_zone_id)
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                **record,
                "Weight": new if record["SetIdentifier"] == "new" else 100 - new,
            },
        }
        for record in records["ResourceRecordSets"]
        if record["Name"] == facts.record_name
    ]
    route53.change_resource_record_sets(
        HostedZoneId=facts.hosted_zone_id, ChangeBatch={"Changes": changes}
    )


def test_route53_answers_a_10_percent_step_and_a_record_changed_behind_it_is_caught(
    traffic: Start, session: boto3.Session
) -> None:
    facts, section, weights = traffic((10,), driver="route53", tolerance=0.1)
    assert isinstance(weights, Route53Weights)
    weights.set(10)
    check = poll_until(
        lambda: check_route53_answers(weights, 10, section.tolerance, 0.99),
        lambda c: c.verdict is Verdict.PASS,
        what="the twin's name servers to answer with weight 10%",
        timeout_s=5,
        describe=lambda c: c.describe(),
        interval_s=0.2,
    )
    # The sample that first passes may straddle the propagation (some answers still 0%), so
    # the share is judged on a fresh one. 412 draws at 10% have a standard deviation of 1.5
    # points: 2.6% to 17.4% is five of them either side, far from the 0% and 50% it must not be.
    check = check_route53_answers(weights, 10, section.tolerance, 0.99)
    assert check.sample.total == answers_to_sample(0.10, 0.1, 0.99) == 4 * 103
    assert 0.026 < check.share.interval.share < 0.174, check.describe()
    assert check.sample.other == {}
    assert check.sample.failed == {}
    set_new_weight_behind_the_cutover(session, facts, 50)
    wrong = poll_until(
        lambda: check_route53_answers(weights, 10, section.tolerance, 0.99),
        lambda c: c.verdict is Verdict.FAIL,
        what="the authoritative sample to see the record changed to 50%",
        timeout_s=5,
        describe=lambda c: c.describe(),
        interval_s=0.2,
    )
    message = wrong.describe()
    assert "outside tolerance" in message
    assert "the records read weights old 50, new 50" in message


def test_a_route53_step_with_too_few_resolutions_gives_no_verdict(
    traffic: Start, tmp_path: Path
) -> None:
    # 4 users for 6 s on records with the twin's 1 s TTL: about 28 resolutions, and a verdict
    # at 10% ± 10% needs 103, however many thousand requests ride them.
    step = {**STEP, "max_duration_s": 6}
    _, section, weights = traffic((10,), driver="route53", step=step, tolerance=0.1)
    cutover = walk(section, weights, tmp_path)
    with pytest.raises(CutoverFailed, match=r"undecidable: \d+ independent resolutions, need 103"):
        cutover.walk(0)
    (result,) = cutover.results
    assert result.verdict is Verdict.NO_VERDICT
    assert result.findings[0].verdict is Verdict.PASS, result.findings[0].text
    assert "Route 53 answers for shop.clustergate.test." in result.findings[0].text
    assert result.share.interval.trials < 40 < 10 * 40 < result.requests
    assert weights.get() == 0


def test_a_route53_step_whose_answers_never_follow_aborts_before_any_load(
    traffic: Start, tmp_path: Path
) -> None:
    # weights-ignored: the name servers keep the records they read at start (old 100, new 0),
    # and 0% is outside 10% ± 5%.
    _, section, weights = traffic((10,), frozenset({"weights-ignored"}), driver="route53")
    with pytest.raises(CutoverFailed) as failed:
        walk(section, weights, tmp_path).walk(0)
    message = str(failed.value)
    assert "Route 53 does not answer with the weight set" in message
    assert "new share 0.0% (" in message
    assert "the records read weights old 90, new 10" in message
    assert "rolled back to 0%" in message
    assert weights.get() == 0
    assert not list(tmp_path.glob("step-*")), "no load phase ran"


@pytest.mark.slow
def test_a_route53_cutover_with_enough_resolutions_passes(
    traffic: Start, session: boto3.Session, tmp_path: Path
) -> None:
    # What makes a step decidable: a 1 s TTL and 16 users give ~16 resolutions a second. The
    # sequential test over resolutions may accept before the interval's 103 (10% ± 10%).
    step = {**STEP, "users": 16, "spawn_rate": 16, "max_duration_s": 20}
    facts, section, weights = traffic((10,), driver="route53", step=step, tolerance=0.1)
    set_record_ttl(session, facts, 1)
    (result,) = walk(section, weights, tmp_path).walk(0)
    assert result.verdict is Verdict.PASS, result.describe()
    assert result.share.interval.unit == "resolutions"
    assert result.sequential.unit == "resolutions"
    assert result.sequential.decision is Decision.ACCEPT or result.share.verdict is Verdict.PASS
    assert result.requests > 3 * result.share.interval.trials
    assert weights.get() == 10


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("cutover-skewed-split", r"traffic split off target: new share"),
        ("new-backend-errors", r"new error rate .* above the SLO \(.*503"),
        ("new-backend-slow", r"latency new vs old: .* new is significantly slower"),
        ("weights-ignored", r"traffic did not follow the weight change"),
    ],
)
def test_a_traffic_fault_fails_the_step_and_rolls_back(
    traffic: Start, tmp_path: Path, fault: str, cause: str
) -> None:
    _, section, weights = traffic((25, 50), frozenset({fault}))
    seen: list[int] = []
    cutover = Cutover(section, weights, 4, tmp_path, on_step=lambda r: seen.append(r.weight))
    with pytest.raises(CutoverFailed, match=cause) as failed:
        cutover.walk(0)
    message = str(failed.value)
    assert message.startswith("cutover step 1/2 (weight 25%) failed, rolled back to 0% (")
    assert "reads back 0%)" in message
    assert weights.get() == 0
    assert seen == ([] if fault == "weights-ignored" else [25])


def test_the_gate_sees_an_endpoint_that_names_its_cluster_and_a_readable_driver(
    traffic: Start,
) -> None:
    _, section, weights = traffic((50,))
    weights.set(50)
    assert endpoint_problems(EndpointProbe(section)) == []
    assert driver_problems(weights) == []
    by_field = section.model_copy(update={"backend_header": None, "backend_field": "cluster"})
    assert endpoint_problems(EndpointProbe(by_field)) == []


def test_the_gate_asks_route53s_name_servers_and_names_one_that_does_not_answer(
    traffic: Start, session: boto3.Session
) -> None:
    _, section, weights = traffic((10,), driver="route53")
    assert endpoint_problems(EndpointProbe(section)) == []
    assert driver_problems(weights) == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries to it time out
        nobody = f"127.0.0.1:{silent.getsockname()[1]}"
        gone = section.driver.model_copy(update={"name_servers": (nobody,)})
        (problem,) = driver_problems(weights_for(gone, session))
    assert problem.startswith(f"{weights.description}: no name server answered for ")
    assert f"Timeout from {nobody} x5" in problem


def test_the_gate_names_a_wrong_header_and_a_missing_listener(
    traffic: Start, session: boto3.Session
) -> None:
    facts, section, _ = traffic((50,))
    wrong = section.model_copy(update={"backend_header": "X-Cluster"})
    problems = endpoint_problems(EndpointProbe(wrong), count=5)
    assert problems == [
        f"5 of 5 answers from {facts.edge_url}/ named no cluster by header X-Cluster (expected "
        "old or new, got None x5): set cutover.backend_header / backend_field / old_backend / "
        "new_backend"
    ]
    gone = section.driver.model_copy(update={"listener_arn": facts.listener_arn + "0"})
    (problem,) = driver_problems(weights_for(gone, session))
    assert "ListenerNotFound" in problem


def test_the_sweep_callback_puts_the_recorded_weight_back(
    traffic: Start, session: boto3.Session
) -> None:
    _, section, weights = traffic((50,))
    weights.set(50)
    record = {"driver": section.driver.model_dump_json(), "weight": "0"}
    done = restore_recorded_weight(record, session)
    assert weights.get() == 0
    assert done == f"{weights.description} set back to new weight 0%"
