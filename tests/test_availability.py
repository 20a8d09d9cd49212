"""Availability timeline arithmetic: minimum, dips below a budget, Pending time."""

from __future__ import annotations

import pytest

from clustergate.availability import Dip, PodLife, Timeline


def _timeline(*points: tuple[float, int]) -> Timeline:
    timeline = Timeline()
    for at, count in points:
        timeline.record(at, count)
    return timeline


def test_repeated_counts_are_one_step() -> None:
    timeline = _timeline((0.0, 4), (1.0, 4), (2.0, 3), (2.5, 3), (3.0, 4))
    assert timeline.points == [(0.0, 4), (2.0, 3), (3.0, 4)]


def test_time_cannot_go_back() -> None:
    with pytest.raises(ValueError, match="back in time"):
        _timeline((2.0, 4), (1.0, 3))


def test_minimum_in_a_window_includes_the_value_in_force_at_its_start() -> None:
    timeline = _timeline((0.0, 4), (1.0, 2), (5.0, 4))
    assert timeline.minimum(0.0, 10.0) == (2, 1.0)
    assert timeline.minimum(2.0, 3.0) == (2, 2.0)
    assert timeline.minimum(6.0, 7.0) == (4, 6.0)
    assert _timeline().minimum(0.0, 1.0) is None
    assert timeline.value_at(0.5) == 4
    assert timeline.value_at(-1.0) is None


def test_dips_below_a_budget() -> None:
    timeline = _timeline((0.0, 4), (1.0, 3), (1.2, 2), (1.25, 3), (2.0, 2), (2.05, 4), (3.0, 2))
    assert timeline.dips_below(3, 0.0, 4.0) == [
        Dip(1.2, 1.25, 2),
        Dip(2.0, 2.05, 2),
        Dip(3.0, 4.0, 2),
    ]
    assert timeline.dips_below(2, 0.0, 4.0) == []
    assert timeline.dips_below(4, 0.0, 0.5) == []
    assert timeline.dips_below(5, 0.5, 1.1) == [Dip(0.5, 1.1, 3)]
    assert Dip(1.0, 1.5, 2).duration == pytest.approx(0.5)


def test_pending_time_ends_when_the_pod_runs_or_goes() -> None:
    assert PodLife("u", "p", pending_since=1.0, running_at=3.5).pending_for(now=100) == 2.5
    assert PodLife("u", "p", pending_since=1.0, deleted_at=2.0).pending_for(now=100) == 1.0
    assert PodLife("u", "p", pending_since=1.0).pending_for(now=10.0) == 9.0
    assert PodLife("u", "p").pending_for(now=10.0) == 0.0
