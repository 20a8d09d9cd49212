"""Measurements recorded by checks, and the run summary written from them.

A check records a measurement through the ``measure`` fixture; it travels with the test report
(``user_properties``), so it reaches the xdist controller, the JUnit XML (as a property) and
``summary.json``, which holds the cluster facts, each check's outcome, duration and
measurements. Nothing secret is recorded: values are numbers and context is short text.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from clustergate import flaky
from clustergate.redact import Redactor, known_secrets

if TYPE_CHECKING:
    from clustergate.report.history import HistorySettings

MEASUREMENT = "clustergate.measurement"
#: Attribute of a failed check's test report carrying its diagnostics (set where it ran).
DIAGNOSTICS = "clustergate_diagnostics"


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: str
    context: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"measurement {self.name} is not a finite number: {self.value}")


class Recorder:
    """Bound to one check; ``record`` adds a measurement to that check's report."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def __call__(self, name: str, value: float, unit: str, **context: object) -> Measurement:
        measurement = Measurement(
            name, float(value), unit, {key: str(val) for key, val in context.items()}
        )
        self._item.user_properties.append((MEASUREMENT, json.dumps(asdict(measurement))))
        return measurement


@dataclass
class CheckResult:
    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""
    markers: list[str] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    #: What the cluster looked like when the check failed (clustergate/diagnostics.py).
    diagnostics: dict[str, Any] | None = None
    #: Failed attempts of a check marked flaky that were retried (clustergate/flaky.py).
    retries: list[dict[str, Any]] = field(default_factory=list)
    #: Passed, but only after a retry.
    flaky: bool = False


class SummaryWriter:
    """A pytest plugin, registered on the process that writes reports (the xdist controller)."""

    def __init__(
        self,
        path: Path,
        facts: dict[str, Any],
        history: HistorySettings | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.path = path
        self.facts = facts
        self.history = history
        #: Failure messages may quote what a check saw, a token included: they are redacted.
        self.redactor = redactor or Redactor(known_secrets())
        self.started = datetime.now(UTC)
        self.checks: dict[str, CheckResult] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = self.checks.setdefault(report.nodeid, CheckResult(report.nodeid))
        check.duration_s += report.duration
        retry = flaky.retry_of(report)
        if retry is not None:
            check.retries.append({**retry, "error": self.redactor.text(str(retry.get("error")))})
            return
        check.markers = sorted(
            {str(key) for key, value in report.keywords.items() if value == 1 and key.isalpha()}
        )
        for key, value in report.user_properties:
            if key == MEASUREMENT and (measurement := json.loads(value)) not in check.measurements:
                check.measurements.append(measurement)
        diagnostics = getattr(report, DIAGNOSTICS, None)
        if diagnostics and check.diagnostics is None:
            check.diagnostics = diagnostics
        if report.when == "call" or report.outcome != "passed":
            if report.outcome != "passed" or check.outcome == "passed":
                check.outcome = _outcome(report)
            if report.outcome != "passed":
                check.message = self.redactor.text(_message(report))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        counts: dict[str, int] = {}
        for check in self.checks.values():
            counts[check.outcome] = counts.get(check.outcome, 0) + 1
            check.flaky = flaky.is_flaky_pass(asdict(check))
        summary = {
            "started": self.started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "exit_status": int(exitstatus),
            "verdict": "fit" if int(exitstatus) == 0 else "not fit",
            "facts": self.facts,
            "counts": counts,
            "checks": [asdict(check) for check in self.checks.values()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(summary, indent=2, sort_keys=True))
        from clustergate.report.render import write_report  # matplotlib: loaded once, here

        judged = write_report(summary, self.path.with_name("report.html"), self.history)
        if judged != summary:
            self.path.write_text(json.dumps(judged, indent=2, sort_keys=True))
            session.exitstatus = judged["exit_status"]


def _outcome(report: pytest.TestReport) -> str:
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return "passed"


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    return str(report.longrepr or "")[-2000:]
