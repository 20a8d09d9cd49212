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
PASSING = ("passed", "skipped")


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


def spans(path: Path, phases: tuple[str, ...]) -> dict[str, tuple[float, float, bool]]:
    """nodeid → (first start, last stop, disruptive) over the given phases of each check."""
    found: dict[str, tuple[float, float, bool]] = {}
    for line in path.read_text().splitlines():
        phase = json.loads(line)
        if phase["when"] not in phases:
            continue
        start, stop, _ = found.get(phase["nodeid"], (phase["start"], phase["stop"], False))
        found[phase["nodeid"]] = (
            min(start, phase["start"]),
            max(stop, phase["stop"]),
            phase["disruptive"],
        )
    return found


def overlapping(
    chosen: dict[str, tuple[float, float, bool]], *, disruptive_only: bool = False
) -> list[str]:
    """Pairs of checks that ran at the same time (with one of them disruptive, if asked)."""
    return [
        f"{a} [{sa:.1f}, {ea:.1f}] and {b} [{sb:.1f}, {eb:.1f}]"
        for (a, (sa, ea, da)), (b, (sb, eb, db)) in itertools.combinations(
            sorted(chosen.items()), 2
        )
        if sa < eb and sb < ea and (da or db or not disruptive_only)
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


@pytest.fixture(scope="module")
def serial(own_twin: RunningTwin) -> dict[str, str]:
    return run_suite(own_twin, "n1")[0]


def test_a_healthy_twin_passes_every_check_of_the_whole_suite(serial: dict[str, str]) -> None:
    """``tools/healthy_runs.py -k 1``, on the way to the comparison below."""
    failed = {node: outcome for node, outcome in serial.items() if outcome not in PASSING}
    assert serial, "no check ran"
    assert not failed, json.dumps(failed, indent=2)


def test_four_workers_reach_the_verdicts_of_one_and_serialise_disruption(
    own_twin: RunningTwin, serial: dict[str, str]
) -> None:
    parallel, times = run_suite(own_twin, "n4", "-n", str(WORKERS))
    assert serial == parallel, json.dumps({"-n 1": serial, f"-n {WORKERS}": parallel}, indent=2)
    # A check holds its turn from its setup to its teardown (module fixtures aside), so a
    # disruptive check's call overlaps no other check's call.
    calls = spans(times, ("call",))
    disruptive = [node for node, span in calls.items() if span[2]]
    assert len(disruptive) >= 2, f"only {sorted(disruptive)} ran as disruptive checks"
    assert overlapping(calls), "no two checks ran at the same time: the run was not parallel"
    found = overlapping(calls, disruptive_only=True)
    assert not found, "a disruptive check ran beside another:\n" + "\n".join(found)
