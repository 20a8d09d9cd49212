"""How a cutover step is judged (on request records made up with a seeded generator), and how
the original weight is recorded and put back, by the check's teardown and by a sweep (against
the twin's API server)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from clustergate import heartbeat, leftovers, runctx
from clustergate.config import CutoverSection, CutoverStep
from clustergate.cutover import RESTORE_CONFIGMAP, StepJudge, guard_original_weight
from clustergate.kube import Cluster, connect
from clustergate.load_phase import RequestRecord
from clustergate.stats import Decision, Verdict
from tests.conftest import RunningTwin

SECTION = CutoverSection.model_validate(
    {
        "endpoint": "http://shop.example.test",
        "driver": {"kind": "none"},
        "steps": [{"weight": 25, "min_requests": 300}],
        "tolerance": 0.05,
    }
)


def _every(share: float, i: int) -> bool:
    """True for an evenly spread ``share`` of the indices: an exact split, no luck involved."""
    return math.floor((i + 1) * share) > math.floor(i * share)


def records(
    count: int,
    new_share: float,
    *,
    seed: int = 7,
    new_errors: float = 0.0,
    new_extra_ms: float = 0.0,
    unnamed: float = 0.0,
) -> list[RequestRecord]:
    """``count`` records split exactly by ``new_share``; latencies log-normal around 8 ms."""
    latency = random.Random(seed)
    made = []
    news = 0
    for i in range(count):
        if _every(unnamed, i):
            made.append(RequestRecord(i * 0.001, None, 0, 5000.0, "ConnectionRefusedError"))
            continue
        backend = "new" if _every(new_share, i) else "old"
        ms = latency.lognormvariate(0, 0.35) * 8
        if backend == "new":
            ms += new_extra_ms
            news += 1
        failed = backend == "new" and _every(new_errors, news)
        made.append(RequestRecord(i * 0.001, backend, 503 if failed else 200, ms, None))
    return made


def judge(weight: int = 25, min_requests: int = 300) -> StepJudge:
    return StepJudge(SECTION, CutoverStep(weight=weight, min_requests=min_requests))


def test_a_healthy_step_passes_with_every_number_recorded() -> None:
    result = judge().judge(records(3000, 0.25))
    assert result.verdict is Verdict.PASS, result.describe()
    assert result.sequential.decision is Decision.ACCEPT
    assert 0 < result.sequential.requests_used <= 3000
    assert set(result.backends) == {"old", "new"}
    assert result.backends["new"].errors == 0
    assert result.latency is not None
    assert result.latency.verdict is Verdict.PASS
    assert result.problems == []


def test_the_cutovers_confidence_is_shared_by_its_steps() -> None:
    """Four steps at 99% each would fail a healthy cutover 4% of the time (seen in healthy
    runs); each step decides at 1 - 1%/4 so the whole cutover errs at most 1%."""
    step = StepJudge(SECTION, CutoverStep(weight=25), index=2, steps=4)
    assert step.confidence == pytest.approx(1 - (1 - SECTION.confidence) / 4)
    assert step.sprt.alpha == pytest.approx((1 - SECTION.confidence) / 4)
    assert "alpha 0.0025" in step.judge(records(3000, 0.25)).sequential.describe()


def test_a_skewed_split_fails_on_the_share() -> None:
    result = judge().judge(records(3000, 0.125))
    assert result.verdict is Verdict.FAIL
    assert result.sequential.decision is Decision.REJECT
    assert len(result.problems) == 1
    assert result.problems[0].startswith("traffic split off target: new share")


def test_errors_of_the_new_backend_fail_the_step_and_name_the_status() -> None:
    result = judge().judge(records(3000, 0.25, new_errors=0.05))
    assert result.verdict is Verdict.FAIL
    assert len(result.problems) == 1
    assert result.problems[0].startswith("new error rate")
    assert "above the SLO (HTTP 503 x" in result.problems[0]


def test_a_slow_new_backend_fails_the_rank_test_within_the_latency_slo() -> None:
    result = judge().judge(records(3000, 0.25, new_extra_ms=40))
    assert result.verdict is Verdict.FAIL
    assert result.backends["new"].latency.p99 < SECTION.slo.p99_ms
    assert len(result.problems) == 1
    assert result.problems[0].startswith("latency new vs old: median new")
    assert result.problems[0].endswith("new is significantly slower")


def test_answers_that_name_no_cluster_count_against_the_error_slo() -> None:
    result = judge().judge(records(3000, 0.25, unnamed=0.05))
    assert result.verdict is Verdict.FAIL
    assert result.unattributed.requests > 100
    assert any("answered by neither old nor new" in p for p in result.problems)


def test_too_little_data_is_no_verdict_not_a_pass() -> None:
    result = judge().judge(records(120, 0.25))
    assert result.verdict is Verdict.NO_VERDICT
    assert any(p.startswith("too little data on the split") for p in result.problems)


def test_at_100_percent_only_the_new_backend_is_judged_and_any_old_answer_fails() -> None:
    full = judge(weight=100).judge(records(500, 1.0))
    assert full.verdict is Verdict.PASS, full.describe()
    assert set(full.backends) == {"new"}
    assert full.latency is None
    leaking = judge(weight=100).judge(records(500, 0.99))
    assert leaking.verdict is Verdict.FAIL
    assert leaking.sequential.decision is Decision.REJECT


def test_the_phase_stops_when_the_sequential_test_decides_and_not_before_min_requests() -> None:
    healthy = records(5000, 0.25)
    step = judge(min_requests=300)
    first_stop = next(n for n in range(50, 5001, 50) if step.enough(healthy[:n]))
    assert first_stop >= 300
    assert step.decided is not None
    assert step.decided.decision is Decision.ACCEPT
    assert first_stop >= step.decided.requests_used
    # A clearly skewed split stops the phase as soon as the test rejects, min_requests or not.
    skewed = records(5000, 0.05)
    step = judge(min_requests=300)
    first_stop = next(n for n in range(10, 5001, 10) if step.enough(skewed[:n]))
    assert first_stop < 300
    assert step.judge(skewed).verdict is Verdict.FAIL


def test_the_decision_that_stopped_the_phase_stands_when_more_records_arrive() -> None:
    step = judge()
    healthy = records(5000, 0.25, seed=11)
    stop = next(n for n in range(50, 5001, 50) if step.enough(healthy[:n]))
    decided = step.decided
    assert step.judge(list(reversed(healthy[: stop + 8]))).sequential == decided


@pytest.fixture(scope="module")
def cluster(twin: RunningTwin) -> Cluster:
    return connect(str(twin.kubeconfig), None, timeout_s=15)


class MemoryWeights:
    description = "weights in memory"

    def __init__(self, weight: int) -> None:
        self.weight = weight

    def set(self, new_percent: int) -> None:
        self.weight = new_percent

    def get(self) -> int | None:
        return self.weight


@pytest.fixture
def run(cluster: Cluster) -> Iterator[runctx.RunContext]:
    run_id = runctx.new_run_id()
    namespace = f"clustergate-{run_id}-test"
    labels = runctx.run_labels(run_id)
    runctx.create_namespace(cluster, namespace, labels)
    yield runctx.RunContext(cluster, run_id, namespace, labels)
    left = cluster.core().list_namespace(field_selector=f"metadata.name={namespace}").items
    if left and left[0].metadata.deletion_timestamp is None:
        runctx.delete_namespace(cluster, namespace)


def _record(cluster: Cluster, namespace: str) -> dict[str, str] | None:
    try:
        found = cluster.core().read_namespaced_config_map(RESTORE_CONFIGMAP, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    assert found.metadata.labels[runctx.RESTORE_LABEL] == runctx.RESTORE_WEIGHTS
    return dict(found.data)


def test_the_check_teardown_puts_the_original_weight_back_and_drops_the_record(
    cluster: Cluster, run: runctx.RunContext
) -> None:
    weights = MemoryWeights(0)
    with run.check_scope() as failures:
        guard_original_weight(run, SECTION, weights, 0, timeout_s=5)
        recorded = _record(cluster, run.namespace)
        assert recorded is not None
        assert recorded["weight"] == "0"
        assert recorded["description"] == "weights in memory"
        assert recorded["driver"] == '{"kind":"none"}'
        weights.set(50)
    assert failures == []
    assert weights.weight == 0
    assert _record(cluster, run.namespace) is None


def test_a_sweep_restores_the_recorded_weight_before_deleting_the_namespace(
    cluster: Cluster, run: runctx.RunContext
) -> None:
    guard_original_weight(run, SECTION, MemoryWeights(10), 10, timeout_s=5)
    # The run is "killed": its teardown never runs. A later sweep finds the record.
    seen: list[dict[str, str]] = []

    def refuse(data: dict[str, str]) -> str:
        raise RuntimeError("AccessDenied: elasticloadbalancing:ModifyListener")

    report = leftovers.sweep(
        cluster, heartbeat.read_runs(cluster, grace_s=0), restore={runctx.RESTORE_WEIGHTS: refuse}
    )
    assert run.namespace not in report.namespaces
    assert any(run.namespace in kept and "AccessDenied" in kept for kept in report.kept)
    assert _record(cluster, run.namespace) is not None

    def restore(data: dict[str, str]) -> str:
        seen.append(data)
        return f"set back to {data['weight']}%"

    report = leftovers.sweep(
        cluster, heartbeat.read_runs(cluster, grace_s=0), restore={runctx.RESTORE_WEIGHTS: restore}
    )
    assert [data["weight"] for data in seen] == ["10"]
    assert "set back to 10%" in report.restored
    assert run.namespace in report.namespaces
    assert "1 setting(s) put back: set back to 10%" in report.describe()
