"""The measurements of a run summary (``summary.json``), as the report and the history read them.

A summary stores each measurement under the check that recorded it; here each becomes a
:class:`Point` that also knows its check and suite, so that plots can gather one kind of
measurement across a suite and the history can follow one series across runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUITES_DIR = "suites"


@dataclass(frozen=True)
class Point:
    check: str
    suite: str
    outcome: str
    name: str
    value: float
    unit: str
    context: Mapping[str, str] = field(default_factory=dict)

    def number(self, key: str) -> float | None:
        """A context value as a number, or None when absent or not a finite number."""
        try:
            value = float(self.context[key])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    @property
    def test_name(self) -> str:
        return short_name(self.check)


def short_name(nodeid: str) -> str:
    """``suites/dns/test_x.py::test_y[a]`` -> ``test_y[a]``."""
    return nodeid.rsplit("::", 1)[-1]


def suite_of(check: Mapping[str, Any], known: Iterable[str] = ()) -> str:
    """The suite a check belongs to: its folder under suites/, else its suite marker."""
    parts = str(check.get("nodeid", "")).split("::", 1)[0].split("/")
    if len(parts) > 2 and parts[0] == SUITES_DIR:
        return parts[1]
    markers = set(check.get("markers", []))
    return next((suite for suite in known if suite in markers), "other")


def points(summary: Mapping[str, Any]) -> list[Point]:
    """Every measurement of the summary that is well formed; anything else is left out."""
    known = summary.get("facts", {}).get("suites", [])
    found = []
    for check in summary.get("checks", []):
        suite = suite_of(check, known)
        for measurement in check.get("measurements", []):
            try:
                value = float(measurement["value"])
                name, unit = str(measurement["name"]), str(measurement.get("unit", ""))
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            context = {str(k): str(v) for k, v in dict(measurement.get("context", {})).items()}
            found.append(
                Point(
                    str(check.get("nodeid", "")),
                    suite,
                    str(check.get("outcome", "")),
                    name,
                    value,
                    unit,
                    context,
                )
            )
    return found
