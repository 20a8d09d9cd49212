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

from clustergate.turns import Turns, remove_turns, turns_dir
from clustergate.wait import WaitTimeout


@pytest.fixture
def run_id() -> Iterator[str]:
    name = uuid.uuid4().hex[:8]
    yield name
    remove_turns(name)
    assert not turns_dir(name).exists()


class Worker:
    """A thread that takes the run's lock for one check, logs, and waits to be let go."""

    def __init__(self, run_id: str, check: str, disruptive: bool, log: list[str]) -> None:
        self.release = threading.Event()
        self.turns = Turns(run_id, timeout_s=10)
        self.thread = threading.Thread(target=self._body, args=(check, disruptive, log))
        self.thread.start()

    def _body(self, check: str, disruptive: bool, log: list[str]) -> None:
        self.turns.take(check, disruptive=disruptive)
        log.append(f"{check} in")
        self.release.wait(10)
        log.append(f"{check} out")
        self.turns.release()

    def finish(self) -> None:
        self.release.set()
        self.thread.join()


def wait_for(log: list[str], entry: str) -> None:
    deadline = time.monotonic() + 5
    while entry not in log:
        assert time.monotonic() < deadline, f"{entry!r} never logged; log: {log}"
        time.sleep(0.02)


def test_ordinary_checks_share_the_run(run_id: str) -> None:
    log: list[str] = []
    first, second = Worker(run_id, "a", False, log), Worker(run_id, "b", False, log)
    wait_for(log, "a in")
    wait_for(log, "b in")
    first.finish(), second.finish()


def test_a_disruptive_check_waits_until_the_others_end_and_says_for_whom(run_id: str) -> None:
    log: list[str] = []
    holder = Worker(run_id, "suites/dns/test_x.py::test_probe", False, log)
    wait_for(log, "suites/dns/test_x.py::test_probe in")
    drain = Turns(run_id, timeout_s=1)
    with pytest.raises(WaitTimeout) as waited:
        drain.take("suites/drain/test_d.py::test_drain", disruptive=True)
    holder.finish()
    message = str(waited.value)
    assert "suites/drain/test_d.py::test_drain" in message
    assert "shared suites/dns/test_x.py::test_probe" in message
    drain.take("suites/drain/test_d.py::test_drain", disruptive=True)
    drain.release()


def test_checks_that_come_after_a_waiting_disruptive_check_queue_behind_it(run_id: str) -> None:
    log: list[str] = []
    a = Worker(run_id, "a", False, log)
    wait_for(log, "a in")
    drain = Worker(run_id, "drain", True, log)
    time.sleep(0.3)
    c = Worker(run_id, "c", False, log)
    time.sleep(0.3)
    assert log == ["a in"], "the drain or the later check ran beside a"
    a.finish()
    wait_for(log, "drain in")
    time.sleep(0.3)
    assert "c in" not in log, "a check ran beside the drain"
    drain.finish()
    wait_for(log, "c in")
    c.finish()
    assert log == ["a in", "a out", "drain in", "drain out", "c in", "c out"]


def test_a_worker_keeps_its_shared_turn_across_checks_and_gives_it_up_for_a_disruptive_one(
    run_id: str,
) -> None:
    worker, other = Turns(run_id, timeout_s=1), Turns(run_id, timeout_s=1)
    worker.take("suites/dns/test_a.py::test_one", disruptive=False)
    worker.take("suites/dns/test_a.py::test_two", disruptive=False)
    with pytest.raises(WaitTimeout) as waited:
        other.take("suites/drain/test_d.py::test_drain", disruptive=True)
    assert "shared suites/dns/test_a.py::test_two" in str(waited.value)
    worker.take("suites/drain/test_d.py::test_blocked", disruptive=True)
    assert worker.disruptive is True
    worker.release()
    other.take("suites/drain/test_d.py::test_drain", disruptive=True)
    other.release()
