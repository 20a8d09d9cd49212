"""A disruptive check runs alone among the run's workers; others wait their turn (issue 2).

Threads stand in for xdist workers: flock locks belong to open files, so two opens in one
process contend exactly as two processes do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from clustergate.turns import check_turn, remove_turns, turns_dir
from clustergate.wait import WaitTimeout


@pytest.fixture
def run_id() -> Iterator[str]:
    name = uuid.uuid4().hex[:8]
    yield name
    remove_turns(name)
    assert not turns_dir(name).exists()


def hold(
    run_id: str, check: str, disruptive: bool, release: threading.Event, log: list[str]
) -> threading.Thread:
    def body() -> None:
        with check_turn(run_id, check, disruptive=disruptive, timeout_s=10):
            log.append(f"{check} in")
            release.wait(10)
            log.append(f"{check} out")

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def wait_for(log: list[str], entry: str) -> None:
    deadline = time.monotonic() + 5
    while entry not in log:
        assert time.monotonic() < deadline, f"{entry!r} never logged; log: {log}"
        time.sleep(0.02)


def test_ordinary_checks_share_the_run(run_id: str) -> None:
    release, log = threading.Event(), []
    first = hold(run_id, "a", False, release, log)
    second = hold(run_id, "b", False, release, log)
    wait_for(log, "a in")
    wait_for(log, "b in")
    release.set()
    first.join(), second.join()


def test_a_disruptive_check_waits_until_the_others_end_and_says_for_whom(run_id: str) -> None:
    release, log = threading.Event(), []
    holder = hold(run_id, "suites/dns/test_x.py::test_probe", False, release, log)
    wait_for(log, "suites/dns/test_x.py::test_probe in")
    drain = "suites/drain/test_d.py::test_drain"
    with (
        pytest.raises(WaitTimeout) as waited,
        check_turn(run_id, drain, disruptive=True, timeout_s=1),
    ):
        pytest.fail("a disruptive check ran beside another")
    release.set()
    holder.join()
    message = str(waited.value)
    assert "suites/drain/test_d.py::test_drain" in message
    assert "shared suites/dns/test_x.py::test_probe" in message


def test_checks_that_come_after_a_waiting_disruptive_check_queue_behind_it(run_id: str) -> None:
    release_a, release_d, release_c, log = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
        [],
    )
    a = hold(run_id, "a", False, release_a, log)
    wait_for(log, "a in")
    d = hold(run_id, "drain", True, release_d, log)
    time.sleep(0.3)
    c = hold(run_id, "c", False, release_c, log)
    time.sleep(0.3)
    assert log == ["a in"], "the drain or the later check ran beside a"
    release_a.set()
    wait_for(log, "drain in")
    time.sleep(0.3)
    assert "c in" not in log, "a check ran beside the drain"
    release_d.set()
    wait_for(log, "c in")
    release_c.set()
    for thread in (a, d, c):
        thread.join()
    assert log == ["a in", "a out", "drain in", "drain out", "c in", "c out"]
