"""As traffic shifts to the new cluster step by step, each step gets its share within SLO.

The gate checks, read-only, that the public endpoint answers and says which cluster served
it, and that the weight driver's resources exist and can be read. The sign-off walks the
configured steps in order (e.g. 10% -> 25% -> 50% -> 100%): each sets the weight, waits until
it takes effect, runs a Locust load phase and judges the new cluster's share, the error rate
and latency of each cluster against the SLO, and whether the new cluster is slower than the
old (clustergate/cutover.py says how). The first bad step rolls the weight back to the last
good one and fails the check with that step's numbers; at the end the weight the cutover
started from is put back, also after a failure or an interrupt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clustergate.config import ClusterConfig, CutoverSection
from clustergate.cutover import (
    Cutover,
    EndpointProbe,
    StepResult,
    driver_problems,
    endpoint_problems,
    guard_original_weight,
    original_weight,
)
from clustergate.results import Recorder
from clustergate.runctx import RunContext
from clustergate.weights import Weights

pytestmark = [pytest.mark.cutover]


@pytest.mark.gate
def test_endpoint_answers_and_names_the_cluster_that_served(cutover: CutoverSection) -> None:
    problems = endpoint_problems(EndpointProbe(cutover))
    assert not problems, (
        f"the cutover endpoint cannot be judged: {'; '.join(problems)}. Every answer must be "
        "a success that names the cluster serving it, or no step can measure its share."
    )


@pytest.mark.gate
def test_weight_driver_resources_exist_and_are_readable(weights: Weights) -> None:
    problems = driver_problems(weights)
    assert not problems, (
        f"the cutover's weight driver cannot be used: {'; '.join(problems)}. Check "
        "cutover.driver in the cluster config and the credentials' permissions."
    )


def _record(measure: Recorder, result: StepResult) -> None:
    where = {"step": result.index, "weight": result.weight, "decision": result.verdict.value}
    interval = result.share.interval
    measure("cutover_step_requests", result.requests, "requests", **where)
    measure("cutover_step_duration", result.duration_s, "s", **where)
    measure("cutover_step_propagation", result.propagation_s, "s", **where)
    measure("cutover_step_wall_time", result.wall_s, "s", **where)
    if interval.trials:
        measure(
            "cutover_step_new_share",
            interval.share,
            "ratio",
            low=f"{interval.low:.4f}",
            high=f"{interval.high:.4f}",
            target=result.weight / 100,
            of=f"{interval.trials} {interval.unit}",
            **where,
        )
    measure(
        "cutover_step_sprt_requests",
        result.sequential.requests_used,
        result.sequential.unit,
        sprt=result.sequential.decision.value,
        **where,
    )
    for stats in [*result.backends.values(), result.unattributed]:
        measure(
            "cutover_step_errors",
            stats.errors,
            "requests",
            backend=stats.name,
            of=stats.requests,
            **where,
        )
        if stats.latency.count:
            for name in ("p50", "p95", "p99"):
                measure(
                    f"cutover_step_latency_{name}",
                    getattr(stats.latency, name),
                    "ms",
                    backend=stats.name,
                    **where,
                )


@pytest.mark.signoff
@pytest.mark.disruptive
def test_each_cutover_step_gets_its_share_within_slo(
    cutover: CutoverSection,
    weights: Weights,
    cluster_config: ClusterConfig,
    run: RunContext,
    measure: Recorder,
    pytestconfig: pytest.Config,
    artifacts: Path,
) -> None:
    propagation_s = cluster_config.timeouts.weight_propagation_s
    start = original_weight(weights)
    guard_original_weight(run, cutover, weights, start, propagation_s)
    walk = Cutover(
        cutover,
        weights,
        propagation_s,
        artifacts,
        workers=pytestconfig.getoption("locust_workers", 0),
        on_step=lambda result: _record(measure, result),
    )
    # Raises at the first bad step, with its numbers, after rolling back to the last good one.
    walk.walk(start)
