"""Nightly history: every run's summary kept in a folder, and each run compared with the last ones.

A *series* is one thing measured the same way in every run: the check that records it, the
measurement's name and unit, and the context keys in :data:`SERIES_CONTEXT` (a cutover step's
weight, a backend, a service account, a node group). Other context (the node, the sample time,
how many queries) only says where a value came from: node names change with every upgrade. A
series that has several values in one run (DNS p99 on each node) counts with its worst value;
timeline samples (context ``t``) are not compared.

Whether a value got worse depends on its unit (:data:`DIRECTION`): times and latencies (``s``,
``ms``) are better lower, rates (``requests/s``) better higher. Measurements in other units
(counts, pods, nodes, shares) are not compared: their checks judge them against the config,
and a share that deviates from its weight is the cutover check's finding, not a trend.

Each check marked flaky (or retried) gets its *flake rate*: its passes that needed a retry
over the runs that ran it, in the runs compared and this one (clustergate/flaky.py).

A series has *regressed* when its value is worse than the median of its values in the last
``runs`` earlier runs of the same cluster and target by more than ``ratio`` (1.5: a latency 50%
above its median, a rate a third below it). Only values of checks that passed become part of
the norm. A median of zero gives no ratio, so that series is shown but not judged.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from clustergate.config import ReportsSection
from clustergate.flaky import FlakeRate, flake_rates
from clustergate.report.measurements import Point, points, short_name

SERIES_CONTEXT = ("weight", "step", "phase", "backend", "service_account", "nodegroup")
TIMELINE_CONTEXT = "t"


class Direction(StrEnum):
    LOWER_IS_BETTER = "lower is better"
    HIGHER_IS_BETTER = "higher is better"


DIRECTION: dict[str, Direction] = {
    "s": Direction.LOWER_IS_BETTER,
    "ms": Direction.LOWER_IS_BETTER,
    "requests/s": Direction.HIGHER_IS_BETTER,
}


@dataclass(frozen=True)
class HistorySettings:
    """Where the history lives and how a run is judged against it (config ``reports.*``)."""

    dir: Path
    runs: int = 7
    ratio: float = 1.5
    #: Regressions fail the run (exit status 1, verdict "not fit") instead of only warning.
    fail: bool = False


def settings_from_config(
    reports: ReportsSection, reports_dir: Path, history_dir: str | None = None
) -> HistorySettings:
    """The history of a run from config ``reports.*``; ``history_dir`` (``--history-dir``)
    overrides ``reports.history_dir``. A relative history directory is taken from the folder
    that holds the reports directory, so the default ``reports/history`` sits inside the
    reports directory (and a run with ``--reports-dir /tmp/x/reports`` keeps its history in
    ``/tmp/x/reports/history``, apart from everyone else's)."""
    directory = Path(history_dir or reports.history_dir).expanduser()
    if not directory.is_absolute():
        directory = reports_dir.parent / directory
    return HistorySettings(
        directory, reports.history_runs, reports.regression_ratio, reports.regressions_fail
    )


@dataclass(frozen=True, order=True)
class SeriesKey:
    check: str
    name: str
    unit: str
    identity: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        where = ", ".join(f"{key}={value}" for key, value in self.identity)
        return f"{self.name} [{where}]" if where else self.name

    def describe(self) -> str:
        return f"{self.label()} of {short_name(self.check)}"


@dataclass(frozen=True)
class Comparison:
    """One series of this run against the same series in earlier runs."""

    key: SeriesKey
    value: float
    #: (run id, value) of the earlier runs that have this series, oldest first.
    earlier: tuple[tuple[str, float], ...]
    direction: Direction
    limit: float

    @property
    def median(self) -> float:
        return statistics.median(value for _, value in self.earlier)

    @property
    def worse_by(self) -> float | None:
        """How many times worse than the median (above 1: worse); None without a ratio."""
        median = self.median
        if median == 0:
            return None
        if self.direction is Direction.LOWER_IS_BETTER:
            return self.value / median
        return median / self.value if self.value else math.inf

    @property
    def regressed(self) -> bool:
        worse_by = self.worse_by
        return worse_by is not None and worse_by > self.limit

    def describe(self) -> str:
        worse_by = self.worse_by
        change = "no ratio (median is 0)" if worse_by is None else f"{worse_by:.2f}x the median"
        return (
            f"{self.key.describe()}: {self.value:.4g} {self.key.unit} against a median of "
            f"{self.median:.4g} {self.key.unit} over {len(self.earlier)} earlier run(s), "
            f"{change} ({self.direction}; limit {self.limit:g}x)"
        )


@dataclass
class HistoryView:
    """What the history says about this run, for the report."""

    settings: HistorySettings
    earlier_runs: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    #: Checks marked flaky or retried, over the earlier runs and this one.
    flake_rates: list[FlakeRate] = field(default_factory=list)

    @property
    def regressions(self) -> list[Comparison]:
        return [comparison for comparison in self.comparisons if comparison.regressed]

    @property
    def run_ids(self) -> list[str]:
        return [str(run.get("facts", {}).get("run_id", "?")) for run in self.earlier_runs]


def series_key(point: Point) -> SeriesKey | None:
    """The series a point belongs to, or None when it is not compared across runs."""
    if point.unit not in DIRECTION or TIMELINE_CONTEXT in point.context:
        return None
    identity = tuple((key, point.context[key]) for key in SERIES_CONTEXT if key in point.context)
    return SeriesKey(point.check, point.name, point.unit, identity)


def series_values(found: Iterable[Point], *, passed_only: bool = False) -> dict[SeriesKey, float]:
    """Each series' value in one run: the worst when the run measured it more than once."""
    values: dict[SeriesKey, list[float]] = {}
    for point in found:
        key = series_key(point)
        if key is None or (passed_only and point.outcome != "passed"):
            continue
        values.setdefault(key, []).append(point.value)
    worst = {Direction.LOWER_IS_BETTER: max, Direction.HIGHER_IS_BETTER: min}
    return {key: worst[DIRECTION[key.unit]](found) for key, found in values.items()}


def history_file_name(summary: Mapping[str, Any]) -> str:
    """``<UTC start, sortable>-<run id>.json``: file names sort in the order runs started."""
    run_id = str(summary.get("facts", {}).get("run_id", "run"))
    try:
        started = datetime.fromisoformat(str(summary.get("started")))
        stamp = started.strftime("%Y%m%dT%H%M%S")
    except ValueError:
        stamp = "00000000T000000"
    return f"{stamp}-{run_id}.json"


def _same_target(run: Mapping[str, Any], summary: Mapping[str, Any]) -> bool:
    theirs, ours = run.get("facts", {}), summary.get("facts", {})
    return all(theirs.get(key) == ours.get(key) for key in ("cluster", "target"))


def earlier_runs(
    settings: HistorySettings, summary: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The last ``settings.runs`` runs of the same cluster and target (oldest first), and the
    history files that could not be read."""
    if not settings.dir.is_dir():
        return [], []
    own = summary.get("facts", {}).get("run_id")
    found: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for path in sorted(settings.dir.glob("*.json"), reverse=True):
        if len(found) == settings.runs:
            break
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            unreadable.append(f"{path.name}: {error}")
            continue
        if not isinstance(run, dict) or not isinstance(run.get("facts"), dict):
            unreadable.append(f"{path.name}: not a clustergate run summary")
            continue
        if run["facts"].get("run_id") != own and _same_target(run, summary):
            found.append(run)
    return found[::-1], unreadable


def compare(
    summary: Mapping[str, Any], runs: list[dict[str, Any]], ratio: float
) -> list[Comparison]:
    """Each series of this run that earlier runs also have, against their median."""
    earlier = [
        (str(run.get("facts", {}).get("run_id", "?")), series_values(points(run), passed_only=True))
        for run in runs
    ]
    comparisons = []
    for key, value in sorted(series_values(points(summary)).items()):
        before = tuple((run_id, values[key]) for run_id, values in earlier if key in values)
        if before:
            comparisons.append(Comparison(key, value, before, DIRECTION[key.unit], ratio))
    return comparisons


def judge(
    summary: Mapping[str, Any], settings: HistorySettings
) -> tuple[dict[str, Any], HistoryView]:
    """The summary with its comparison against the history added; with ``settings.fail`` a
    regression makes a passing run fail."""
    runs, unreadable = earlier_runs(settings, summary)
    view = HistoryView(
        settings,
        runs,
        compare(summary, runs, settings.ratio),
        unreadable,
        flake_rates([*runs, summary]),
    )
    judged = dict(summary)
    judged["history"] = {
        "dir": str(settings.dir),
        "compared_with": view.run_ids,
        "regression_ratio": settings.ratio,
        "regressions_fail": settings.fail,
    }
    judged["regressions"] = [comparison.describe() for comparison in view.regressions]
    judged["flake_rates"] = [
        {**asdict(rate), "rate": round(rate.rate, 4)} for rate in view.flake_rates
    ]
    if settings.fail and view.regressions and judged.get("exit_status") == 0:
        judged["exit_status"] = 1
        judged["verdict"] = "not fit"
    return judged, view


def archive(summary: Mapping[str, Any], settings: HistorySettings) -> Path:
    """Keep this run's summary in the history (written whole or not at all)."""
    settings.dir.mkdir(parents=True, exist_ok=True)
    target = settings.dir / history_file_name(summary)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(summary, indent=2, sort_keys=True))
    os.replace(partial, target)
    return target
