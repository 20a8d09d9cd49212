"""Progress a person can follow (issue 18): a line when each check starts and ends, and for
every long wait a line at least every 30 s saying what is awaited, what is seen now and how much
of its time is gone; under xdist too, and ``-q`` quiets it.

The wait's lines are tested with a fake clock (no sleeping); the way lines travel from xdist
workers to the controller's terminal with a real ``pytest -n 2`` run of a few small checks in
a folder of their own, and once more with the suites' own configuration against the twin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clustergate import eks_upgrade, progress
from clustergate.wait import WaitTimeout, poll_until
from tests.conftest import RunningTwin
from tests.inner_pytest import run_pytest


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a wait must not spin"
        self.now += seconds
        self.slept += seconds


def replaced(clock: FakeClock, total: int, every_s: float):
    """A node group update that replaces one node every ``every_s`` seconds."""
    return lambda: min(total, int((clock.now - 1000.0) // every_s))


def test_a_long_wait_says_what_it_sees_every_interval_and_when_it_is_over() -> None:
    clock, lines = FakeClock(), []
    with progress.sink(lines.append):
        poll_until(
            replaced(clock, 6, 100.0),
            lambda count: count == 6,
            what="node group general-a update",
            timeout_s=90 * 60,
            describe=lambda count: f"{count}/6 nodes replaced",
            interval_s=20.0,
            progress_every_s=30.0,
            clock=clock,
        )
    assert clock.slept == 600.0
    assert len(lines) == 600 // 30 + 1
    assert lines[0] == "waiting for node group general-a update: 0/6 nodes replaced; 30 s of 90 min"
    assert (
        lines[11] == "waiting for node group general-a update: 3/6 nodes replaced; 6 min of 90 min"
    )
    assert lines[-1] == "done waiting for node group general-a update after 10 min"


def test_a_wait_says_what_it_saw_last_also_between_its_polls() -> None:
    """A poll every 5 minutes still gives a line every 30 s; more than 30 s is not allowed."""
    clock, lines = FakeClock(), []
    with progress.sink(lines.append), pytest.raises(WaitTimeout, match="last seen: state 0"):
        poll_until(
            lambda: 0,
            bool,
            what="an AWS update",
            timeout_s=300,
            describe=lambda value: f"state {value}",
            interval_s=300,
            progress_every_s=600,
            clock=clock,
        )
    assert len(lines) == 10
    assert lines[-1] == "waiting for an AWS update: state 0; 5 min of 5 min"


def test_a_short_wait_says_nothing() -> None:
    clock, lines = FakeClock(), []
    values = iter([0, 0, 1])
    with progress.sink(lines.append):
        poll_until(
            lambda: next(values),
            bool,
            what="a pod",
            timeout_s=60,
            interval_s=2,
            clock=clock,
        )
    assert clock.slept == 4
    assert lines == []


def test_an_upgrade_says_how_many_of_its_nodes_are_replaced() -> None:
    old = {"ip-1", "ip-2", "ip-3", "ip-4", "ip-5", "ip-6"}
    assert eks_upgrade.replaced(old, ["ip-4", "ip-5", "ip-6", "ip-7"]) == "3/6 nodes replaced"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (3.25, "3.2 s"),
        (42, "42 s"),
        (119, "119 s"),
        (720, "12 min"),
        (5400, "90 min"),
        (7500, "2 h 05 min"),
    ],
)
def test_durations_read_as_a_person_says_them(seconds: float, said: str) -> None:
    assert progress.span(seconds) == said


CHECKS = """
import itertools

from clustergate.wait import poll_until


def test_quick():
    pass


def test_waits():
    counter = itertools.count()
    poll_until(
        lambda: next(counter), lambda n: n >= 8, what="the counter to reach 8", timeout_s=30,
        describe=lambda n: f"counter at {n}", interval_s=0.25, progress_every_s=0.5,
    )


def test_fails():
    assert False, "on purpose"
"""


def run_checks(tmp_path: Path, *args: str) -> str:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p clustergate.progress\n")
    (tmp_path / "test_checks.py").write_text(CHECKS)
    result = run_pytest(tmp_path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


def test_under_two_workers_each_check_starts_and_ends_and_waits_speak(tmp_path: Path) -> None:
    out = run_checks(tmp_path, "-n", "2")
    lines = out.splitlines()
    for name, outcome in (
        ("test_quick", "passed"),
        ("test_waits", "passed"),
        ("test_fails", "failed"),
    ):
        assert f"clustergate: start test_checks.py::{name}" in lines, out
        ends = [
            line
            for line in lines
            if line.startswith(f"clustergate: end   test_checks.py::{name}: ")
        ]
        assert len(ends) == 1, out
        assert f": {outcome} in " in ends[0], out
    waits = [line for line in lines if "waiting for the counter to reach 8" in line]
    assert len(waits) >= 3, out
    assert all(line.startswith("clustergate: [gw") for line in waits), out
    assert waits[0].endswith("(test_checks.py::test_waits)"), out
    said = lines.index(waits[-1])
    ended = next(i for i, line in enumerate(lines) if "end   test_checks.py::test_waits" in line)
    assert said < ended, "what a check's waits said comes before its end line"


def test_quiet_quiets_it(tmp_path: Path) -> None:
    out = run_checks(tmp_path, "-n", "2", "-q")
    assert "clustergate:" not in out, out


def test_the_suites_say_when_each_check_starts_and_ends_under_xdist(twin: RunningTwin) -> None:
    checks = [
        "suites/dns/test_dns_nodelocal.py::test_cache_runs_ready_on_every_node",
        "suites/dns/test_dns_nodelocal.py::test_kube_dns_upstream_service_selects_kube_dns",
    ]
    result = twin.pytest("-n", "2", *checks, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for check in checks:
        assert f"clustergate: start {check}" in result.stdout, result.stdout
        assert f"clustergate: end   {check}: passed in " in result.stdout, result.stdout
