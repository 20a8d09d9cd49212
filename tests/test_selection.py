"""Profiles include the narrower ones; disruption needs a profile beyond gate or the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustergate.selection import disruption_allowed, selected_suites

ROOT = Path(__file__).parents[1]
ALL = ["hygiene", "irsa", "dns", "autoscaler", "drain", "upgrade", "cutover"]


@pytest.mark.parametrize(
    ("args", "markexpr", "expected"),
    [
        ([], "", ALL),
        (["suites/dns"], "", ["dns"]),
        (["suites/dns/test_gate.py::test_x"], "gate", ["dns"]),
        ([], "gate and irsa", ["irsa"]),
        ([], "dns or drain", ["dns", "drain"]),
        ([], "gate", ALL),
        ([], "not disruptive and cutover", ["cutover"]),
        (["suites/irsa"], "dns", []),
    ],
)
def test_selected_suites_follow_paths_and_markers(args, markexpr, expected) -> None:
    assert selected_suites(args, ROOT, markexpr) == expected


@pytest.mark.parametrize(
    ("markexpr", "flag", "allowed"),
    [
        ("", False, False),
        ("gate", False, False),
        ("gate and dns", False, False),
        ("signoff", False, True),
        ("nightly and drain", False, True),
        ("gate", True, True),
        ("not disruptive", False, False),
    ],
)
def test_disruption_needs_a_wider_profile_or_the_flag(markexpr, flag, allowed) -> None:
    assert disruption_allowed(markexpr, flag) is allowed
