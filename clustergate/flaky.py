"""Checks known to be noisy on real clusters: retried when marked, every retry recorded.

::

    @pytest.mark.flaky(reruns=2, on=(ApiException, WaitTimeout))
    def test_...

A marked check whose setup or call fails with an exception of a kind named in ``on`` runs
again (setup, call, teardown), up to ``reruns`` more times. Any other failure, a failure in
teardown, and every failure of an unmarked check count at once: a retry must not hide a real
fault. Each failed attempt is reported with the outcome ``rerun`` (``R``/``RETRY`` on the
terminal) and recorded: on the check in ``summary.json`` (``retries``, and ``flaky: true`` when
it passed after one), as a ``clustergate.retry`` property of the check in the JUnit XML, and in
the nightly history, where :func:`flake_rates` gives each check's flaky passes over its runs.

pytest-rerunfailures retries on a regular expression of the error text and keeps no rate; this
module retries on exception types, decides on the process that ran the check (where the
exception is) and tells the report writer through attributes of the test report, which xdist
carries to the controller with the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

MARKER = "flaky"
RERUN = "rerun"
#: JUnit property (and user_properties key) of one retry.
RETRY_PROPERTY = "clustergate.retry"
#: Attribute of a failed attempt's report that will be retried: what the retry is about.
RETRY = "clustergate_retry"
_ATTEMPT = pytest.StashKey[int]()
USAGE = "@pytest.mark.flaky(reruns=N, on=(ExceptionType, ...))"


@dataclass(frozen=True)
class Policy:
    reruns: int
    on: tuple[type[BaseException], ...]


def policy_of(item: pytest.Item) -> Policy | None:
    """The item's retry policy, or None when it is not marked; a UsageError naming the check
    when the marker is malformed."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    reruns, on = marker.kwargs.get("reruns"), marker.kwargs.get("on")
    if isinstance(on, type):
        on = (on,)
    problems = []
    if marker.args or set(marker.kwargs) - {"reruns", "on"}:
        problems.append("it takes only the keywords reruns and on")
    if not isinstance(reruns, int) or isinstance(reruns, bool) or reruns < 1:
        problems.append(f"reruns must be a whole number of at least 1, not {reruns!r}")
    kinds = tuple(on) if isinstance(on, tuple | list) else ()
    if not kinds or not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        problems.append(f"on must name the exception types worth a retry, not {on!r}")
    if problems:
        raise pytest.UsageError(f"{item.nodeid}: {USAGE}: {'; '.join(problems)}")
    assert isinstance(reruns, int)
    return Policy(reruns, kinds)


def retry_of(report: pytest.TestReport) -> dict[str, Any] | None:
    """What a retried attempt's report records (attempt, phase, error), else None."""
    if report.outcome != RERUN:  # type: ignore[comparison-overlap]
        return None
    return dict(getattr(report, RETRY, None) or {})


def _error(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(crash.message) if crash is not None else str(report.longrepr or "")
    return text[:500]


class FlakyRetries:
    """The pytest side (:func:`register`)."""

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            policy_of(item)  # a malformed marker is a usage error before anything runs

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Iterator[None]:
        """Mark a failed attempt that will be retried. The innermost wrapper, so that others
        (failure diagnostics) see the mark."""
        report: pytest.TestReport = yield  # type: ignore[misc]
        policy = policy_of(item)
        attempt = item.stash.get(_ATTEMPT, 0)
        if (
            policy is not None
            and report.failed
            and call.when in ("setup", "call")
            and call.excinfo is not None
            and call.excinfo.errisinstance(policy.on)
            and attempt < policy.reruns
        ):
            setattr(
                report,
                RETRY,
                {
                    "attempt": attempt + 1,
                    "reruns": policy.reruns,
                    "when": call.when,
                    "error": _error(report),
                },
            )
        return report  # type: ignore[return-value]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        if policy_of(item) is None:
            return None
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        item.stash[_ATTEMPT] = 0
        while True:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            retried = next((r for r in reports if getattr(r, RETRY, None)), None)
            teardown_failed = any(r.failed for r in reports if r.when == "teardown")
            if retried is None or teardown_failed:
                for report in reports:
                    item.ihook.pytest_runtest_logreport(report=report)
                break
            # The phases before the failure are reported as they went, the failure as a rerun;
            # the attempt's teardown passed and is not reported (JUnit would close the case).
            for report in reports[: reports.index(retried) + 1]:
                if report is retried:
                    report.outcome = RERUN  # type: ignore[assignment]
                    item.user_properties.append(
                        (RETRY_PROPERTY, json.dumps(getattr(report, RETRY)))
                    )
                item.ihook.pytest_runtest_logreport(report=report)
            _forget_failed_fixtures(item)
            item.stash[_ATTEMPT] += 1
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.outcome == RERUN:  # type: ignore[comparison-overlap]
            return RERUN, "R", "RETRY"
        return None


def _forget_failed_fixtures(item: pytest.Item) -> None:
    """A fixture that failed is cached with its error for its whole scope; the retry must run
    it again. pytest keeps no public handle on an item's fixture definitions: read it from
    ``_fixtureinfo``, as pytest-rerunfailures does."""
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            cached = getattr(definition, "cached_result", None)
            if cached is not None and cached[2] is not None:
                definition.cached_result = None


@dataclass(frozen=True)
class FlakeRate:
    check: str
    runs: int
    flaky_passes: int

    @property
    def rate(self) -> float:
        return self.flaky_passes / self.runs if self.runs else 0.0

    def describe(self) -> str:
        return f"{self.flaky_passes} flaky pass(es) in {self.runs} run(s) ({self.rate:.0%})"


def is_flaky_pass(check: Mapping[str, Any]) -> bool:
    """A check that passed, but only after a retry."""
    return check.get("outcome") == "passed" and bool(check.get("retries"))


def flake_rates(summaries: Sequence[Mapping[str, Any]]) -> list[FlakeRate]:
    """Each check's flaky passes over the runs that ran it (skips do not count), over the
    given run summaries; only checks marked flaky or retried in one of them."""
    runs: dict[str, int] = {}
    flaky: dict[str, int] = {}
    followed: set[str] = set()
    for summary in summaries:
        for check in summary.get("checks", []):
            nodeid = str(check.get("nodeid", ""))
            if MARKER in check.get("markers", []) or check.get("retries"):
                followed.add(nodeid)
            if check.get("outcome") == "skipped":
                continue
            runs[nodeid] = runs.get(nodeid, 0) + 1
            flaky[nodeid] = flaky.get(nodeid, 0) + is_flaky_pass(check)
    return [
        FlakeRate(nodeid, runs.get(nodeid, 0), flaky.get(nodeid, 0)) for nodeid in sorted(followed)
    ]


def register(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reruns, on): a check known to be noisy on real clusters; retried up to "
        "reruns times on a failure of one of the exception types in on, every retry recorded",
    )
    config.pluginmanager.register(FlakyRetries(), "cg-flaky")


def pytest_configure(config: pytest.Config) -> None:
    """``-p clustergate.flaky``: the suites' pytest.ini loads it like this."""
    register(config)
