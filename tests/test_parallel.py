"""The whole suite under ``-n 4`` against one twin: the verdicts of ``-n 1``, and no two
disruptive checks at the same time (issue 12).

This module is also a small pytest plugin for the suites' run (``-p tests.test_parallel``): on
the process that writes reports it appends each check's phase times, read from the reports
themselves (``TestReport.start``/``stop``), to the file named by $CLUSTERGATE_CHECK_TIMES, since
neither JUnit XML nor summary.json records when a check ran, only for how long.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningTwin, start_twin, stop_twin

TIMES_ENV = "CLUSTERGATE_CHECK_TIMES"
PROFILE = "nightly"
WORKERS = 4


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(TIMES_ENV)
    if not path or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    line = {
        "nodeid": report.nodeid,
        "when": report.when,
        "start": report.start,
        "stop": report.stop,
        "disruptive": "disruptive" in report.keywords,
        "outcome": report.outcome,
    }
    with open(path, "a") as times:
        times.write(json.dumps(line) + "\n")


def spans(path: Path) -> dict[str, tuple[float, float, bool]]:
    """nodeid → (first phase start, last phase stop, disruptive): setup to teardown, which is
    when a disruptive check holds the Lease and changes the cluster."""
    found: dict[str, tuple[float, float, bool]] = {}
    for line in path.read_text().splitlines():
        phase = json.loads(line)
        start, stop, _ = found.get(phase["nodeid"], (phase["start"], phase["stop"], False))
        found[phase["nodeid"]] = (
            min(start, phase["start"]),
            max(stop, phase["stop"]),
            phase["disruptive"],
        )
    return found


def overlapping(chosen: dict[str, tuple[float, float, bool]]) -> list[str]:
    return [
        f"{a} [{sa:.1f}, {ea:.1f}] and {b} [{sb:.1f}, {eb:.1f}]"
        for (a, (sa, ea, _)), (b, (sb, eb, _)) in itertools.combinations(sorted(chosen.items()), 2)
        if sa < eb and sb < ea
    ]


def run_suite(twin: RunningTwin, name: str, *args: str) -> tuple[dict[str, str], Path]:
    """Run the profile; (nodeid → outcome, the check-times file)."""
    times = twin.state_dir / f"times-{name}.jsonl"
    times.unlink(missing_ok=True)
    reports = twin.state_dir / f"reports-{name}"
    result = subprocess.run(
        twin.command(
            "-m",
            PROFILE,
            "-p",
            "tests.test_parallel",
            "-q",
            "-o",
            "log_cli=false",
            "--reports-dir",
            str(reports),
            f"--junitxml={reports / 'junit.xml'}",
            *args,
        ),
        cwd=ROOT,
        env={**twin.environment(), TIMES_ENV: str(times)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = reports / "summary.json"
    assert summary.exists(), (result.stdout + result.stderr)[-3000:]
    checks = json.loads(summary.read_text())["checks"]
    return {check["nodeid"]: check["outcome"] for check in checks}, times


@pytest.fixture(scope="module")
def own_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTwin]:
    state_dir = tmp_path_factory.mktemp("twin-parallel")
    running = start_twin(state_dir)
    try:
        yield running
    finally:
        stop_twin(state_dir)


def test_four_workers_reach_the_verdicts_of_one_and_serialise_disruption(
    own_twin: RunningTwin,
) -> None:
    serial, _ = run_suite(own_twin, "n1")
    parallel, times = run_suite(own_twin, "n4", "-n", str(WORKERS))
    assert serial == parallel, json.dumps({"-n 1": serial, f"-n {WORKERS}": parallel}, indent=2)
    checks = spans(times)
    disruptive = {node: span for node, span in checks.items() if span[2]}
    assert len(disruptive) >= 2, f"only {sorted(disruptive)} ran as disruptive checks"
    assert overlapping(checks), "no two checks ran at the same time: the run was not parallel"
    clashes = overlapping(disruptive)
    assert not clashes, "disruptive checks overlapped:\n" + "\n".join(clashes)
