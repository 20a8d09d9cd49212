"""The unit-level share check on simulated DNS-clustered traffic (tests/clustered_traffic.py).

Seeded, so each figure is exact and the test cannot flake. The per-request check on the same
data is there to show why the units matter: it treats each request as its own draw and, with
a few dozen requests per resolution, fails healthy steps many times more often than its alpha.
"""

from __future__ import annotations

import numpy as np

from clustergate.stats import (
    Verdict,
    proportion_interval,
    share_check,
    unit_share_check,
    units_needed,
)
from tests.clustered_traffic import ClusteredStep, simulate_step

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
TARGET, TOLERANCE = 0.25, 0.1
#: Enough units to decide (units_needed is 88 here): 200 clients x 300 s / 60 s TTL = 1,200.
SETTING = {"clients": 200, "duration_s": 300.0, "ttl_s": 60.0, "requests_per_s": 2.0}
RUNS = 400


def _steps(new_share: float, seed: int) -> list[ClusteredStep]:
    rng = np.random.default_rng(seed)
    return [simulate_step(rng, new_share=new_share, **SETTING) for _ in range(RUNS)]


def _unit_verdicts(steps: list[ClusteredStep], tolerance: float = TOLERANCE) -> list[Verdict]:
    return [
        unit_share_check(list(step.unit_is_new), TARGET, tolerance, confidence=CONFIDENCE).verdict
        for step in steps
    ]


def _request_verdicts(steps: list[ClusteredStep], tolerance: float) -> list[Verdict]:
    return [
        share_check(
            step.new_requests, step.requests, TARGET, tolerance, confidence=CONFIDENCE
        ).verdict
        for step in steps
    ]


def _rate(verdicts: list[Verdict], verdict: Verdict) -> float:
    return verdicts.count(verdict) / len(verdicts)


def test_units_needed_is_where_an_on_target_split_first_passes() -> None:
    needed = units_needed(TARGET, TOLERANCE, CONFIDENCE)
    # The normal approximation z^2 p (1 - p) / tolerance^2 (72 here) is a floor: Wilson's
    # interval is wider on the short side near 0 or 1.
    normal = 1.96**2 * TARGET * (1 - TARGET) / TOLERANCE**2
    assert normal <= needed <= 1.3 * normal
    on_target = [True] * round(needed * TARGET) + [False] * (needed - round(needed * TARGET))
    assert unit_share_check(on_target, TARGET, TOLERANCE, confidence=CONFIDENCE).verdict is (
        Verdict.PASS
    )
    fewer = on_target[1:]
    check = unit_share_check(fewer, TARGET, TOLERANCE, confidence=CONFIDENCE)
    assert check.verdict is Verdict.NO_VERDICT
    assert f"only {needed - 1:,} resolutions (need {needed:,})" in check.describe()


def test_unit_check_false_alarms_at_most_alpha_and_catches_a_skew() -> None:
    healthy = _unit_verdicts(_steps(TARGET, seed=1))
    # Binomial noise on RUNS draws: three standard errors above alpha.
    assert _rate(healthy, Verdict.FAIL) <= ALPHA + 3 * (ALPHA * (1 - ALPHA) / RUNS) ** 0.5
    assert _rate(healthy, Verdict.PASS) > 0.9
    # The new cluster gets half its weight (12.5% of the answers instead of 25%).
    skewed = _unit_verdicts(_steps(TARGET / 2, seed=2), tolerance=0.05)
    assert _rate(skewed, Verdict.FAIL) > 0.5
    assert _rate(skewed, Verdict.PASS) == 0


def test_per_request_interval_on_the_same_data_is_overconfident() -> None:
    # How often the 95% interval misses the true share (the plain test of "share = weight"
    # rejecting a healthy split): about alpha over units, many times alpha over requests.
    steps = _steps(TARGET, seed=3)
    by_unit = [
        not proportion_interval(int(s.unit_is_new.sum()), len(s.unit_is_new), CONFIDENCE).contains(
            TARGET
        )
        for s in steps
    ]
    by_request = [
        not proportion_interval(s.new_requests, s.requests, CONFIDENCE).contains(TARGET)
        for s in steps
    ]
    assert sum(by_unit) / RUNS <= ALPHA + 3 * (ALPHA * (1 - ALPHA) / RUNS) ** 0.5
    assert sum(by_request) / RUNS > 5 * ALPHA
    # And the equivalence verdict over requests fails healthy steps more often than alpha.
    assert _rate(_request_verdicts(steps, tolerance=0.02), Verdict.FAIL) > 2 * ALPHA
    assert _rate(_unit_verdicts(steps, tolerance=0.02), Verdict.FAIL) <= ALPHA


def test_too_few_units_give_no_verdict_whatever_the_requests() -> None:
    rng = np.random.default_rng(4)
    step = simulate_step(
        rng, clients=5, duration_s=60.0, ttl_s=60.0, requests_per_s=50.0, new_share=TARGET
    )
    assert step.requests > 3000
    check = unit_share_check(list(step.unit_is_new), TARGET, TOLERANCE, confidence=CONFIDENCE)
    assert check.verdict is Verdict.NO_VERDICT
