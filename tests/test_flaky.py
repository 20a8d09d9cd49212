"""Checks known to be noisy are retried only when marked and only on the failure named, every
retry is recorded, and the history gives each check's flake rate (issue 18).

Each run is a real ``pytest`` in a folder of its own, with the project's plugins (flaky
retries, the summary writer, JUnit XML) and small checks that fail on chosen attempts: an
attempts file counts how often each check really ran.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from clustergate import flaky
from clustergate.report.history import HistorySettings, archive
from clustergate.report.render import write_report
from tests.inner_pytest import run_pytest

CONFTEST = """
from pathlib import Path

from clustergate.results import SummaryWriter


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(
            SummaryWriter(Path("reports/summary.json"), {"run_id": "cg-flaky-test"}), "summary"
        )
"""

CHECKS = '''
from pathlib import Path

import pytest


def attempt(name: str) -> int:
    """How many times ``name`` has run, this time included."""
    path = Path("attempts") / name
    path.parent.mkdir(exist_ok=True)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


@pytest.mark.flaky(reruns=2, on=(ConnectionError, TimeoutError))
def test_noisy_once():
    if attempt("noisy_once") == 1:
        raise ConnectionError("connection reset by peer")


@pytest.mark.flaky(reruns=2, on=(ConnectionError,))
def test_noisy_with_another_kind():
    attempt("another_kind")
    raise KeyError("not a network problem")


def test_unmarked():
    attempt("unmarked")
    raise ConnectionError("connection reset by peer")


@pytest.mark.flaky(reruns=2, on=(ConnectionError,))
def test_always_noisy():
    attempt("always")
    raise ConnectionError("connection refused")


@pytest.fixture(scope="module")
def shared():
    if attempt("shared_fixture") == 1:
        raise TimeoutError("the API server did not answer")
    return "ready"


@pytest.mark.flaky(reruns=1, on=(TimeoutError,))
def test_noisy_in_a_module_fixture(shared):
    assert shared == "ready"
'''


def run(tmp_path: Path, *args: str, checks: str = CHECKS) -> tuple[CompletedProcess, dict]:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -p clustergate.flaky --strict-markers\n"
    )
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_checks.py").write_text(checks)
    result = run_pytest(tmp_path, "-rA", "--junitxml=reports/junit.xml", *args)
    summary_path = tmp_path / "reports" / "summary.json"
    assert summary_path.exists(), result.stdout + result.stderr
    checks_by_name = {
        check["nodeid"].split("::")[-1]: check
        for check in json.loads(summary_path.read_text())["checks"]
    }
    return result, checks_by_name


def attempts(tmp_path: Path, name: str) -> int:
    return int((tmp_path / "attempts" / name).read_text())


def junit_cases(tmp_path: Path) -> dict[str, ET.Element]:
    tree = ET.parse(tmp_path / "reports" / "junit.xml")
    return {case.get("name", ""): case for case in tree.iter("testcase")}


@pytest.fixture(scope="module", params=[["-n", "0"], ["-n", "2"]], ids=["in-process", "xdist"])
def ran(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("flaky")
    result, checks = run(folder, *request.param)
    return folder, result, checks


def test_a_marked_check_failing_once_with_the_named_kind_passes_on_retry_as_flaky(ran) -> None:
    folder, result, checks = ran
    check = checks["test_noisy_once"]
    assert attempts(folder, "noisy_once") == 2
    assert check["outcome"] == "passed", result.stdout
    assert check["flaky"] is True
    (retry,) = check["retries"]
    assert retry["attempt"] == 1
    assert retry["when"] == "call"
    assert "ConnectionError: connection reset by peer" in retry["error"]
    case = junit_cases(folder)["test_noisy_once"]
    assert case.find("failure") is None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert json.loads(properties[flaky.RETRY_PROPERTY])["attempt"] == 1
    assert "4 rerun" in result.stdout.splitlines()[-1], result.stdout


def test_a_failure_of_another_kind_is_not_retried(ran) -> None:
    folder, _, checks = ran
    assert attempts(folder, "another_kind") == 1
    assert checks["test_noisy_with_another_kind"]["outcome"] == "failed"
    assert checks["test_noisy_with_another_kind"]["retries"] == []


def test_an_unmarked_check_is_never_retried(ran) -> None:
    folder, _, checks = ran
    assert attempts(folder, "unmarked") == 1
    assert checks["test_unmarked"]["outcome"] == "failed"
    assert checks["test_unmarked"]["retries"] == []


def test_retries_stop_after_reruns_and_the_check_fails_with_each_retry_recorded(ran) -> None:
    folder, result, checks = ran
    check = checks["test_always_noisy"]
    assert attempts(folder, "always") == 3
    assert check["outcome"] == "failed"
    assert check["flaky"] is False
    assert [retry["attempt"] for retry in check["retries"]] == [1, 2]
    assert "connection refused" in check["message"]
    case = junit_cases(folder)["test_always_noisy"]
    assert case.find("failure") is not None
    assert len([p for p in case.iter("property") if p.get("name") == flaky.RETRY_PROPERTY]) == 2
    assert result.returncode == 1


def test_a_module_fixture_that_failed_with_the_named_kind_runs_again(ran) -> None:
    folder, _, checks = ran
    check = checks["test_noisy_in_a_module_fixture"]
    assert attempts(folder, "shared_fixture") == 2
    assert check["outcome"] == "passed"
    assert check["flaky"] is True
    assert check["retries"][0]["when"] == "setup"


def test_every_check_is_once_in_the_junit_xml(ran) -> None:
    folder, _, checks = ran
    tree = ET.parse(folder / "reports" / "junit.xml")
    names = [case.get("name") for case in tree.iter("testcase")]
    assert sorted(names) == sorted(checks)


@pytest.mark.parametrize(
    "marker",
    [
        "@pytest.mark.flaky",
        "@pytest.mark.flaky(reruns=2)",
        "@pytest.mark.flaky(reruns=0, on=(ConnectionError,))",
        "@pytest.mark.flaky(reruns=2, on=('ConnectionError',))",
        "@pytest.mark.flaky(2, on=(ConnectionError,))",
    ],
)
def test_a_malformed_marker_is_one_usage_error_naming_the_check(
    tmp_path: Path, marker: str
) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -p clustergate.flaky --strict-markers\n"
    )
    (tmp_path / "test_bad.py").write_text(
        f"import pytest\n\n\n{marker}\ndef test_bad():\n    pass\n"
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"test_bad.py::test_bad: {flaky.USAGE}" in result.stderr
    assert "Traceback" not in result.stderr


NOISY = "suites/dns/test_dns.py::test_noisy"


NOISY = "suites/dns/test_dns.py::test_noisy"


def _run(run_id: str, started: str, flaky_pass: bool, outcome: str = "passed") -> dict[str, Any]:
    retries = [{"attempt": 1, "when": "call", "error": "ConnectionError: reset"}]
    return {
        "started": started,
        "exit_status": 0,
        "facts": {"run_id": run_id, "cluster": "staging", "target": "live", "suites": ["dns"]},
        "checks": [
            {
                "nodeid": NOISY,
                "outcome": outcome,
                "duration_s": 1.0,
                "markers": ["dns", "flaky"],
                "retries": retries if flaky_pass else [],
                "flaky": flaky_pass and outcome == "passed",
            },
            {
                "nodeid": "suites/dns/test_dns.py::test_steady",
                "outcome": "passed",
                "duration_s": 1.0,
                "markers": ["dns"],
            },
        ],
    }


def test_flake_rate_is_flaky_passes_over_runs_that_ran_the_check() -> None:
    runs = [
        _run("r1", "2026-12-01T01:00:00+00:00", True),
        _run("r2", "2026-12-02T01:00:00+00:00", False),
        _run("r3", "2026-12-03T01:00:00+00:00", False, outcome="skipped"),
        _run("r4", "2026-12-04T01:00:00+00:00", True),
        _run("r5", "2026-12-05T01:00:00+00:00", False, outcome="failed"),
    ]
    (rate,) = flaky.flake_rates(runs)
    assert rate.check == NOISY
    assert (rate.runs, rate.flaky_passes) == (4, 2)
    assert rate.rate == 0.5


def test_the_nightly_history_keeps_the_flake_rate_and_the_report_shows_it(tmp_path: Path) -> None:
    history = HistorySettings(tmp_path / "history")
    for day, was_flaky in ((1, True), (2, False), (3, False)):
        archive(_run(f"r{day}", f"2026-12-0{day}T01:00:00+00:00", was_flaky), history)
    tonight = _run("r4", "2026-12-04T01:00:00+00:00", True)
    page = tmp_path / "report.html"
    judged = write_report(tonight, page, history)
    assert judged["flake_rates"] == [{"check": NOISY, "runs": 4, "flaky_passes": 2, "rate": 0.5}]
    kept = json.loads(sorted(history.dir.glob("*-r4.json"))[0].read_text())
    assert kept["flake_rates"] == judged["flake_rates"]
    html = page.read_text()
    assert 'class="flake-rates"' in html
    row = '<td class="num">4</td><td class="num">2</td><td class="num">50%</td></tr>'
    assert f'<tr data-check="{NOISY}"><td>{NOISY}</td>{row}' in html
    assert 'class="badge flaky"' in html
    assert "attempt 1 (call): ConnectionError: reset" in html
