"""The statistics behind the cutover verdicts, on scipy and numpy.

Every check here has three outcomes, never two: a verdict for, a verdict against, and "no
verdict" when the data cannot support either (too few requests, or an interval that straddles
a tolerance edge). A check that would have to guess says so instead.

- :func:`proportion_interval`: a binomial confidence interval for an observed share
  (Wilson score by default, Clopper-Pearson on request), from ``scipy.stats.binomtest``.
- :func:`share_check`: is an observed share within ``target ± tolerance``, judged on that
  interval after a fixed number of requests.
- :func:`unit_share_check`: the same question where requests come in clusters that share one
  draw (all the requests made on one DNS resolution go where that answer points). Requests are
  then not independent and a per-request interval is far too narrow; the independent draws are
  the units, so the interval is taken over units, each counted once, and below
  :func:`units_needed` there is no verdict. :func:`units_needed` is also what a user must
  arrange (TTL, users, duration) for a step to be decidable (docs/cutover-route53.md).
- :class:`SequentialShareTest`: the same question asked while requests arrive, stopping as
  soon as the evidence is enough. It is Wald's sequential probability ratio test, run as two
  one-sided tests (target against target + tolerance, target against target - tolerance), the
  sequential form of an equivalence test. Why the SPRT rather than a confidence sequence: it is
  the test with the smallest expected sample size for given error rates at the hypotheses it
  compares (Wald-Wolfowitz), its boundaries are closed-form, and its error rates are the ones
  a reader sets (``alpha``: rejecting a split that is on target; ``beta``: accepting one that is
  off by the tolerance). Between the two (off by less than the tolerance) either decision may
  come: that is the indifference zone every sequential test has.
- :func:`latency_percentiles`: p50/p95/p99 with numpy.
- :func:`compare_latency`: a one-sided Mann-Whitney U test "new is slower than old", as canary
  analysis tools use, with an effect-size guard: the new backend is called slower only when the
  difference is significant AND its median exceeds the old median by more than a set ratio, so
  a 1% difference on a million requests does not fail a cutover.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_VERDICT = "no verdict"


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    UNDECIDED = "undecided"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _pct_tight(value: float) -> str:
    """A percentage as people write weights: 25%, 12.5%."""
    return f"{100 * value:g}%"


@dataclass(frozen=True)
class ProportionInterval:
    successes: int
    trials: int
    confidence: float
    low: float
    high: float
    method: str
    #: What a trial is, for the messages: requests, resolutions, DNS answers.
    unit: str = "requests"

    @property
    def share(self) -> float:
        return self.successes / self.trials if self.trials else math.nan

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        if not self.trials:
            return f"no {self.unit}"
        return (
            f"{_pct(self.share)} ({_pct_tight(self.confidence)} CI "
            f"{_pct(self.low)}-{_pct(self.high)}) of {self.trials:,} {self.unit}"
        )


def proportion_interval(
    successes: int,
    trials: int,
    confidence: float = 0.99,
    method: str = "wilson",
    unit: str = "requests",
) -> ProportionInterval:
    """The confidence interval of ``successes / trials``; ``method`` is ``"wilson"`` or
    ``"exact"`` (Clopper-Pearson). With no trials the interval is the whole of [0, 1]."""
    if trials == 0:
        return ProportionInterval(0, 0, confidence, 0.0, 1.0, method, unit)
    ci = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method=method
    )
    return ProportionInterval(
        successes, trials, confidence, float(ci.low), float(ci.high), method, unit
    )


@dataclass(frozen=True)
class ShareCheck:
    """An observed share judged against ``target ± tolerance`` on its confidence interval."""

    label: str
    interval: ProportionInterval
    target: float
    tolerance: float
    min_requests: int
    verdict: Verdict

    def describe(self) -> str:
        band = f"target {_pct_tight(self.target)} ± {_pct_tight(self.tolerance)}"
        if self.interval.trials < self.min_requests:
            unit = self.interval.unit
            return (
                f"{self.label} share: only {self.interval.trials:,} {unit} "
                f"(need {self.min_requests:,}), {band}: no verdict"
            )
        outcome = {
            Verdict.PASS: "within tolerance",
            Verdict.FAIL: "outside tolerance",
            Verdict.NO_VERDICT: "interval straddles the tolerance edge, no verdict",
        }[self.verdict]
        return f"{self.label} share {self.interval.describe()}, {band}: {outcome}"


def share_check(
    successes: int,
    trials: int,
    target: float,
    tolerance: float,
    *,
    confidence: float = 0.99,
    min_requests: int = 100,
    label: str = "new",
    unit: str = "requests",
) -> ShareCheck:
    """Pass when the whole interval lies within ``target ± tolerance``, fail when the whole
    interval lies outside it, and no verdict otherwise or with fewer than ``min_requests``
    trials (of ``unit``)."""
    interval = proportion_interval(successes, trials, confidence, unit=unit)
    low, high = target - tolerance, target + tolerance
    if trials < min_requests:
        verdict = Verdict.NO_VERDICT
    elif low <= interval.low and interval.high <= high:
        verdict = Verdict.PASS
    elif interval.high < low or interval.low > high:
        verdict = Verdict.FAIL
    else:
        verdict = Verdict.NO_VERDICT
    return ShareCheck(label, interval, target, tolerance, min_requests, verdict)


@functools.lru_cache(maxsize=256)
def units_needed(target: float, tolerance: float, confidence: float) -> int:
    """The fewest independent units at which a split exactly on ``target`` can pass: its Wilson
    interval at ``confidence`` fits inside ``target ± tolerance``. Fewer can only give no
    verdict (or fail a gross skew), so it is the floor below which a check says no verdict."""

    def fits(trials: int) -> bool:
        low, high = target - tolerance, target + tolerance
        interval = proportion_interval(round(trials * target), trials, confidence)
        return low <= interval.low and interval.high <= high

    low, high = 1, 1
    while not fits(high):
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return high


def unit_share_check(
    unit_is_new: Sequence[bool],
    target: float,
    tolerance: float,
    *,
    confidence: float = 0.99,
    unit: str = "resolutions",
    label: str = "new",
) -> ShareCheck:
    """:func:`share_check` over independent units (one outcome each: did this unit go to the
    new cluster?) rather than over requests, with :func:`units_needed` as the minimum.

    Why units: a weighted DNS record is drawn once per answer, and every request made on that
    answer goes to the same place, so the requests of one unit carry one draw between them.
    Counting them as independent trials shrinks the interval by the square root of the
    requests per unit and turns the noise of a handful of draws into a confident verdict
    (tests/test_stats_clustered.py measures by how much)."""
    return share_check(
        sum(bool(new) for new in unit_is_new),
        len(unit_is_new),
        target,
        tolerance,
        confidence=confidence,
        min_requests=units_needed(target, tolerance, confidence),
        label=label,
        unit=unit,
    )


@dataclass(frozen=True)
class SequentialShareResult:
    label: str
    target: float
    tolerance: float
    decision: Decision
    #: Requests looked at when the test decided (all of them when it did not).
    requests_used: int
    #: Of those, how many went to the backend whose share is tested.
    hits: int
    requests_seen: int
    alpha: float
    beta: float
    #: What one outcome is: requests, or resolutions when requests come in shared draws.
    unit: str = "requests"

    @property
    def share(self) -> float:
        return self.hits / self.requests_used if self.requests_used else math.nan

    def describe(self) -> str:
        band = f"target {_pct_tight(self.target)} ± {_pct_tight(self.tolerance)}"
        share = _pct(self.share) if self.requests_used else "n/a"
        if self.decision is Decision.UNDECIDED:
            return (
                f"{self.label} share {share} after {self.requests_seen:,} {self.unit}, {band}: "
                "sequential test undecided (not enough evidence yet)"
            )
        outcome = "within tolerance" if self.decision is Decision.ACCEPT else "off target"
        return (
            f"{self.label} share {share} over the first {self.requests_used:,} {self.unit}, "
            f"{band}: sequential test decided {outcome} "
            f"(SPRT, alpha {self.alpha:g}, beta {self.beta:g})"
        )


class SequentialShareTest:
    """Wald's SPRT for "the share of hits is ``target``" against "it is off by ``tolerance``".

    Two one-sided SPRTs run side by side, H0 p = target against H1 p = target + tolerance and
    against H1 p = target - tolerance (a side whose alternative falls outside [0, 1] is left out).
    Each side stops at its first boundary crossing, with Wald's boundaries log(beta/(1-alpha))
    and log((1-beta)/alpha) on the log likelihood ratio; alpha is split between the two sides so
    the overall chance of rejecting an on-target split stays at most ``alpha``. The test rejects
    as soon as one side rejects, and accepts once every side has accepted.

    :meth:`evaluate` replays the whole sequence of outcomes in order, so the number of requests
    it took is exact even when the caller looks at the data only every few hundred requests.
    """

    def __init__(
        self,
        target: float,
        tolerance: float,
        *,
        alpha: float = 0.01,
        beta: float = 0.01,
        max_requests: int | None = None,
        label: str = "new",
        unit: str = "requests",
    ) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target share must be within [0, 1], got {target}")
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance must be within (0, 1), got {tolerance}")
        self.target = target
        self.tolerance = tolerance
        self.alpha = alpha
        self.beta = beta
        self.max_requests = max_requests
        self.label = label
        self.unit = unit
        self._alternatives = [
            p for p in (target + tolerance, target - tolerance) if 0.0 <= p <= 1.0
        ]
        side_alpha = alpha / len(self._alternatives)
        self._accept_below = math.log(beta / (1 - side_alpha))
        self._reject_above = math.log((1 - beta) / side_alpha)

    def evaluate(self, outcomes: Sequence[bool]) -> SequentialShareResult:
        seen = len(outcomes)
        n_max = seen if self.max_requests is None else min(seen, self.max_requests)
        hits = np.cumsum(np.asarray(outcomes[:n_max], dtype=np.int64))
        trials = np.arange(1, n_max + 1)
        rejected_at: list[int] = []
        accepted_at: list[int] = []
        for alternative in self._alternatives:
            # At a target of 0 or 1 an outcome can be impossible under H0: its log likelihood
            # is -inf, the ratio +inf, and the test rejects at once, as it should. No outcome is
            # impossible under both, because the two shares differ by less than 1.
            llr = stats.binom.logpmf(hits, trials, alternative) - stats.binom.logpmf(
                hits, trials, self.target
            )
            crossed = np.flatnonzero((llr >= self._reject_above) | (llr <= self._accept_below))
            if crossed.size == 0:
                continue
            first = int(crossed[0])
            (rejected_at if llr[first] >= self._reject_above else accepted_at).append(first + 1)
        if rejected_at:
            decision, used = Decision.REJECT, min(rejected_at)
        elif len(accepted_at) == len(self._alternatives):
            decision, used = Decision.ACCEPT, max(accepted_at)
        else:
            decision, used = Decision.UNDECIDED, n_max
        used_hits = int(hits[used - 1]) if used else 0
        return SequentialShareResult(
            self.label,
            self.target,
            self.tolerance,
            decision,
            used,
            used_hits,
            seen,
            self.alpha,
            self.beta,
            self.unit,
        )


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float

    def describe(self, unit: str = "ms") -> str:
        if not self.count:
            return "no samples"
        return (
            f"p50 {self.p50:.1f} {unit}, p95 {self.p95:.1f} {unit}, p99 {self.p99:.1f} {unit} "
            f"over {self.count:,} requests"
        )


def latency_percentiles(values: Sequence[float]) -> Percentiles:
    """p50/p95/p99 (numpy's default linear interpolation); NaN for an empty sample."""
    if not len(values):
        return Percentiles(0, math.nan, math.nan, math.nan)
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
    return Percentiles(len(values), float(p50), float(p95), float(p99))


@dataclass(frozen=True)
class LatencyComparison:
    """ "Is new slower than old?" PASS: not slower; FAIL: slower; NO_VERDICT: too little data."""

    old_count: int
    new_count: int
    old_median: float
    new_median: float
    #: One-sided Mann-Whitney U p-value for "new is stochastically greater (slower)".
    p_value: float
    alpha: float
    max_median_ratio: float
    min_samples: int
    verdict: Verdict

    @property
    def median_ratio(self) -> float:
        if not self.old_median or math.isnan(self.old_median):
            return math.nan
        return self.new_median / self.old_median

    def describe(self) -> str:
        if self.verdict is Verdict.NO_VERDICT:
            return (
                f"latency new vs old: {self.new_count:,} new and {self.old_count:,} old "
                f"requests, need {self.min_samples:,} of each: no verdict"
            )
        numbers = (
            f"median new {self.new_median:.1f} ms vs old {self.old_median:.1f} ms "
            f"(x{self.median_ratio:.2f}, guard x{self.max_median_ratio:g}), "
            f"Mann-Whitney one-sided p={self.p_value:.2g} (alpha {self.alpha:g})"
        )
        if self.verdict is Verdict.FAIL:
            return f"latency new vs old: {numbers}: new is significantly slower"
        if self.p_value < self.alpha:
            return f"latency new vs old: {numbers}: slower but within the ratio guard"
        return f"latency new vs old: {numbers}: new is not significantly slower"


def compare_latency(
    old: Sequence[float],
    new: Sequence[float],
    *,
    alpha: float = 0.01,
    max_median_ratio: float = 1.2,
    min_samples: int = 30,
) -> LatencyComparison:
    """Fail only when new is significantly slower (one-sided Mann-Whitney U, ``p < alpha``)
    and its median is more than ``max_median_ratio`` times the old median."""
    old_median = float(np.median(old)) if len(old) else math.nan
    new_median = float(np.median(new)) if len(new) else math.nan
    if len(old) < min_samples or len(new) < min_samples:
        return LatencyComparison(
            len(old),
            len(new),
            old_median,
            new_median,
            math.nan,
            alpha,
            max_median_ratio,
            min_samples,
            Verdict.NO_VERDICT,
        )
    p_value = float(stats.mannwhitneyu(new, old, alternative="greater").pvalue)
    slower = p_value < alpha and new_median > max_median_ratio * old_median
    return LatencyComparison(
        len(old),
        len(new),
        old_median,
        new_median,
        p_value,
        alpha,
        max_median_ratio,
        min_samples,
        Verdict.FAIL if slower else Verdict.PASS,
    )
