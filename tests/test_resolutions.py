"""Counting independent units: request records in, units and their outcomes out (a table).

Each row is a load phase's records, written as (t, backend, resolution), and what must come
out: the units in order of their first request, as (key, backend, requests, mixed), and the
outcomes the share is judged on. Then the cutover's judge, fed records of a Route 53 step,
counts resolutions, not requests, and says "undecidable" below the units a verdict needs.
"""

from __future__ import annotations

import pytest

from clustergate.config import CutoverSection, CutoverStep
from clustergate.cutover import StepJudge
from clustergate.load_phase import RequestRecord
from clustergate.resolutions import unit_outcomes, units_of
from clustergate.stats import Verdict, units_needed

NAMES = ("old", "new")


def records(*rows: tuple[float, str | None, str | None]) -> list[RequestRecord]:
    return [
        RequestRecord(t, backend, 200, 3.0, None, resolution) for t, backend, resolution in rows
    ]


ROWS = [
    (
        "one resolution carries every request it served: one unit, however many requests",
        records((0.0, "new", "c1-1"), (0.1, "new", "c1-1"), (0.2, "new", "c1-1")),
        [("c1-1", "new", 3, False)],
        [True],
    ),
    (
        "each client's each resolution is a unit, ordered by its first request",
        records(
            (0.5, "old", "c2-1"),
            (0.0, "old", "c1-1"),
            (0.6, "old", "c2-1"),
            (5.1, "new", "c1-2"),
            (0.1, "old", "c1-1"),
        ),
        [("c1-1", "old", 2, False), ("c2-1", "old", 2, False), ("c1-2", "new", 1, False)],
        [False, False, True],
    ),
    (
        "requests dialled by address (no resolution) are units of their own",
        records((0.0, "old", None), (0.1, "new", None), (0.2, "new", None)),
        [
            ("request-0", "old", 1, False),
            ("request-1", "new", 1, False),
            ("request-2", "new", 1, False),
        ],
        [False, True, True],
    ),
    (
        "a unit whose responses name no cluster counts for no side",
        records((0.0, None, "c1-1"), (0.1, None, "c1-1"), (0.2, "old", "c2-1")),
        [("c1-1", None, 2, False), ("c2-1", "old", 1, False)],
        [False],
    ),
    (
        "a resolution answered by both clusters is split again behind the name: mixed, "
        "counted where most of its requests went",
        records((0.0, "new", "c1-1"), (0.1, "old", "c1-1"), (0.2, "new", "c1-1")),
        [("c1-1", "new", 3, True)],
        [True],
    ),
    (
        "a failed request without a backend still belongs to its unit",
        records((0.0, None, "c1-1"), (0.1, "old", "c1-1")),
        [("c1-1", "old", 2, False)],
        [False],
    ),
]


@pytest.mark.parametrize(
    ("phase", "units", "outcomes"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS]
)
def test_units_of_a_phase(
    phase: list[RequestRecord],
    units: list[tuple[str, str | None, int, bool]],
    outcomes: list[bool],
) -> None:
    found = units_of(phase, NAMES)
    assert [(u.key, u.backend, u.requests, u.mixed) for u in found] == units
    assert unit_outcomes(found, "new") == outcomes


def _section(kind: str) -> CutoverSection:
    driver = (
        {
            "kind": "route53",
            "hosted_zone_id": "Z1",
            "record_name": "shop.example.com",
            "set_identifiers": {"old": "old", "new": "new"},
        }
        if kind == "route53"
        else {"kind": "elbv2", "listener_arn": "arn", "target_groups": {"old": "a", "new": "b"}}
    )
    return CutoverSection.model_validate(
        {"endpoint": "http://shop.example.com", "driver": driver, "steps": [{"weight": 10}]}
    )


def _clustered(clients: int, requests_each: int) -> list[RequestRecord]:
    """``clients`` resolutions, one in ten to new, each carrying ``requests_each`` requests."""
    return records(
        *(
            (c + r / 1000, "new" if c % 10 == 0 else "old", f"c{c}-1")
            for c in range(clients)
            for r in range(requests_each)
        )
    )


def test_a_route53_step_counts_resolutions_and_says_when_they_are_too_few() -> None:
    section = _section("route53")
    judge = StepJudge(section, CutoverStep(weight=10, min_requests=100))
    needed = units_needed(0.10, section.tolerance, judge.confidence)
    result = judge.judge(_clustered(40, 200))
    assert result.requests == 8000
    assert result.share.interval.trials == 40
    assert result.verdict is Verdict.NO_VERDICT
    assert f"undecidable: 40 independent resolutions, need {needed:,}" in result.problems[0]
    # Judged per request (an ALB splits each one), the same records are 8,000 trials.
    per_request = StepJudge(_section("elbv2"), CutoverStep(weight=10, min_requests=100))
    assert per_request.judge(_clustered(40, 200)).share.interval.trials == 8000
