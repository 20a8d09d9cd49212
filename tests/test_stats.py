"""clustergate.stats against values worked out by hand or published with the methods."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clustergate.stats import (
    Decision,
    SequentialShareTest,
    Verdict,
    compare_latency,
    latency_percentiles,
    proportion_interval,
    share_check,
)


def test_wilson_interval_matches_the_textbook_value() -> None:
    # Wilson score interval for 50/100 at 95%: 0.4038 - 0.5962 (Newcombe 1998, table I style).
    ci = proportion_interval(50, 100, confidence=0.95)
    assert ci.low == pytest.approx(0.4038, abs=1e-4)
    assert ci.high == pytest.approx(0.5962, abs=1e-4)
    assert ci.share == 0.5


def test_clopper_pearson_interval_for_zero_successes() -> None:
    # Exact upper bound for 0/10 at 95% is 1 - 0.025 ** (1/10) = 0.3085.
    ci = proportion_interval(0, 10, confidence=0.95, method="exact")
    assert ci.low == 0.0
    assert ci.high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)


def test_interval_without_trials_is_everything() -> None:
    ci = proportion_interval(0, 0)
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert ci.describe() == "no requests"


def test_share_check_passes_inside_the_band_and_says_so() -> None:
    check = share_check(1159, 4812, target=0.25, tolerance=0.03)
    assert check.verdict is Verdict.PASS
    assert check.describe() == (
        "new share 24.1% (99% CI 22.5%-25.7%) of 4,812 requests, target 25% ± 3%: within tolerance"
    )


def test_share_check_fails_when_the_interval_is_clear_of_the_band() -> None:
    check = share_check(625, 5000, target=0.25, tolerance=0.03)
    assert check.verdict is Verdict.FAIL
    assert "outside tolerance" in check.describe()


def test_share_check_gives_no_verdict_on_an_edge_or_on_little_data() -> None:
    straddling = share_check(280, 1000, target=0.25, tolerance=0.03)
    assert straddling.verdict is Verdict.NO_VERDICT
    few = share_check(10, 40, target=0.25, tolerance=0.03)
    assert few.verdict is Verdict.NO_VERDICT
    assert "only 40 requests (need 100)" in few.describe()


def test_sprt_stops_where_walds_boundaries_say() -> None:
    # alpha 0.05 split over two sides, beta 0.1: reject above log(0.9/0.025) = 3.58.
    # Every hit adds log(0.6/0.5) = 0.182 to the upper side: it crosses at the 20th request.
    test = SequentialShareTest(0.5, 0.1, alpha=0.05, beta=0.1)
    result = test.evaluate([True] * 100)
    assert result.decision is Decision.REJECT
    assert result.requests_used == 20
    assert result.hits == 20


def test_sprt_at_target_zero_accepts_after_the_computed_number_of_misses() -> None:
    # One side only (p = -0.1 is no share): alpha 0.05, beta 0.1, accept below
    # log(0.1/0.95) = -2.251; each miss adds log(0.9) = -0.105: the 22nd request decides.
    test = SequentialShareTest(0.0, 0.1, alpha=0.05, beta=0.1)
    assert test.evaluate([False] * 100).requests_used == 22
    assert test.evaluate([False] * 100).decision is Decision.ACCEPT
    stray = test.evaluate([False, False, True] + [False] * 97)
    assert (stray.decision, stray.requests_used) == (Decision.REJECT, 3)


def test_sprt_decides_on_simulated_splits() -> None:
    rng = np.random.default_rng(7)
    on_target = SequentialShareTest(0.25, 0.03).evaluate(list(rng.random(20_000) < 0.25))
    assert on_target.decision is Decision.ACCEPT
    assert on_target.requests_used < 20_000
    assert "sequential test decided within tolerance" in on_target.describe()
    skewed = SequentialShareTest(0.25, 0.03).evaluate(list(rng.random(20_000) < 0.125))
    assert skewed.decision is Decision.REJECT
    assert "off target" in skewed.describe()


def test_sprt_is_undecided_without_enough_requests() -> None:
    result = SequentialShareTest(0.25, 0.03).evaluate([True, False, False, False] * 10)
    assert result.decision is Decision.UNDECIDED
    assert result.requests_used == 40
    assert "undecided" in result.describe()


def test_sprt_respects_its_request_budget() -> None:
    result = SequentialShareTest(0.25, 0.03, max_requests=50).evaluate([False] * 3 + [True] * 97)
    assert result.requests_seen == 100
    assert result.requests_used <= 50


def test_percentiles_use_linear_interpolation() -> None:
    result = latency_percentiles(list(range(1, 101)))
    assert (result.p50, result.p95, result.p99) == pytest.approx((50.5, 95.05, 99.01))
    assert math.isnan(latency_percentiles([]).p50)


def test_mann_whitney_exact_p_value_on_a_small_sample() -> None:
    # All three new values above all three old: U = 9, exact one-sided p = 1/C(6,3) = 0.05.
    result = compare_latency([1, 2, 3], [4, 5, 6], alpha=0.1, min_samples=3)
    assert result.p_value == pytest.approx(0.05)
    assert result.verdict is Verdict.FAIL


def test_significant_but_small_slowdown_passes_the_ratio_guard() -> None:
    rng = np.random.default_rng(3)
    old = rng.normal(5.0, 0.5, 5000)
    new = rng.normal(5.1, 0.5, 5000)
    result = compare_latency(old, new)
    assert result.p_value < 0.01
    assert result.verdict is Verdict.PASS
    assert "within the ratio guard" in result.describe()


def test_large_slowdown_fails_and_too_little_data_gives_no_verdict() -> None:
    rng = np.random.default_rng(4)
    old = rng.normal(5.0, 0.5, 300)
    slow = old + 80
    assert compare_latency(old, slow).verdict is Verdict.FAIL
    assert compare_latency(old, rng.normal(5.0, 0.5, 300)).verdict is Verdict.PASS
    few = compare_latency(old[:10], slow)
    assert few.verdict is Verdict.NO_VERDICT
    assert "no verdict" in few.describe()
