"""Benchmark (printed, never asserted): false alarms and misses of the share check on traffic
behind a weighted DNS record, per request and per resolution, for a few TTL/users settings.

    python -m tests.bench_route53_units [--runs 300] [--seed 1]

Each row simulates ``runs`` steps (tests/clustered_traffic.py: clients caching the answer for
the TTL and keeping their connection) on a healthy split (the new share is the weight) and on a
skewed one (half the weight), and judges each step twice: over requests (what a cutover that
counts requests does) and over resolutions (:func:`clustergate.stats.unit_share_check`).
"false alarm" is a healthy step failed; "miss" a skewed step passed; "undecided" a step given no
verdict. Over requests the false alarms run far above alpha once a resolution carries many
requests; over resolutions they stay at most alpha and short steps are undecided instead.

Then the table of docs/cutover-route53.md: per weight and tolerance, the resolutions from
which a verdict is possible (``units_needed``) and from which a split exactly on target passes
nine times in ten (exact, summing the binomial over the outcomes whose interval fits).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from clustergate.stats import (
    Verdict,
    proportion_interval,
    share_check,
    unit_share_check,
    units_needed,
)
from tests.clustered_traffic import ClusteredStep, simulate_step

TARGET, TOLERANCE, CONFIDENCE = 0.25, 0.05, 0.99
#: (clients, duration s, TTL s): a short step, the twin's default, a long step, a long TTL.
SETTINGS = ((8, 60.0, 60.0), (50, 120.0, 10.0), (200, 300.0, 60.0), (200, 300.0, 300.0))
REQUESTS_PER_S = 2.0


def _verdicts(steps: list[ClusteredStep]) -> tuple[list[Verdict], list[Verdict]]:
    by_request = [
        share_check(s.new_requests, s.requests, TARGET, TOLERANCE, confidence=CONFIDENCE).verdict
        for s in steps
    ]
    by_unit = [
        unit_share_check(list(s.unit_is_new), TARGET, TOLERANCE, confidence=CONFIDENCE).verdict
        for s in steps
    ]
    return by_request, by_unit


def _rates(verdicts: list[Verdict], bad: Verdict) -> str:
    n = len(verdicts)
    return (
        f"{100 * verdicts.count(bad) / n:5.1f}% / "
        f"{100 * verdicts.count(Verdict.NO_VERDICT) / n:5.1f}%"
    )


#: The docs' table: a four-step cutover at 0.99 overall.
TABLE_CONFIDENCE = 0.9975


def _pass_probability(units: int, share: float, tolerance: float, confidence: float) -> float:
    """Chance that a split exactly on ``share`` passes :func:`unit_share_check` at ``units``:
    the binomial mass of the hit counts whose interval fits the band (only counts inside the
    band can)."""
    low, high = share - tolerance, share + tolerance
    inside = range(max(0, int(units * low)), min(units, int(units * high) + 1) + 1)
    fits = []
    for hits in inside:
        interval = proportion_interval(hits, units, confidence)
        if low <= interval.low and interval.high <= high:
            fits.append(hits)
    return float(stats.binom.pmf(fits, units, share).sum()) if fits else 0.0


def _units_to_pass(share: float, tolerance: float, confidence: float, power: float = 0.9) -> int:
    units = units_needed(share, tolerance, confidence)
    while _pass_probability(units, share, tolerance, confidence) < power:
        units = int(units * 1.05) + 1
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    needed = units_needed(TARGET, TOLERANCE, CONFIDENCE)
    print(
        f"weight {100 * TARGET:g}% ± {100 * TOLERANCE:g}%, confidence {CONFIDENCE}, "
        f"{REQUESTS_PER_S:g} requests/s per client; a verdict needs {needed} resolutions"
    )
    print(
        "clients duration   ttl  resolutions  requests | false alarm / undecided  "
        "(requests | resolutions) | miss / undecided (requests | resolutions)"
    )
    for clients, duration, ttl in SETTINGS:
        setting = {"clients": clients, "duration_s": duration, "ttl_s": ttl}
        healthy = [
            simulate_step(rng, requests_per_s=REQUESTS_PER_S, new_share=TARGET, **setting)
            for _ in range(args.runs)
        ]
        skewed = [
            simulate_step(rng, requests_per_s=REQUESTS_PER_S, new_share=TARGET / 2, **setting)
            for _ in range(args.runs)
        ]
        healthy_req, healthy_unit = _verdicts(healthy)
        skewed_req, skewed_unit = _verdicts(skewed)
        units = np.mean([len(s.unit_is_new) for s in healthy])
        requests = np.mean([s.requests for s in healthy])
        print(
            f"{clients:7d} {duration:7.0f}s {ttl:4.0f}s {units:12.0f} {requests:9.0f} | "
            f"{_rates(healthy_req, Verdict.FAIL)} | {_rates(healthy_unit, Verdict.FAIL)} | "
            f"{_rates(skewed_req, Verdict.PASS)} | {_rates(skewed_unit, Verdict.PASS)}"
        )

    print(f"\nresolutions a step needs at confidence {TABLE_CONFIDENCE}:")
    print("  verdict possible from / an on-target step passes 9 times in 10 from")
    for weight in (0.10, 0.25, 0.50, 1.00):
        cells = [
            f"{units_needed(weight, tolerance, TABLE_CONFIDENCE)} / "
            f"{_units_to_pass(weight, tolerance, TABLE_CONFIDENCE)}"
            for tolerance in (0.05, 0.10)
        ]
        print(
            f"  {100 * weight:3.0f}%: tolerance 0.05 {cells[0]:>12}, tolerance 0.10 {cells[1]:>10}"
        )


if __name__ == "__main__":
    main()
