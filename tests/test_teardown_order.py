"""The order of a run's teardown: put-backs before deletions, and after SIGTERM a deadline
beyond which what is left is left for the sweep (on a RunContext whose undo actions only
record that they ran; no cluster is needed to order them)."""

from __future__ import annotations

import pytest

from clustergate import shutdown
from clustergate.runctx import RunContext


@pytest.fixture
def done() -> list[str]:
    return []


@pytest.fixture
def run(done: list[str]) -> RunContext:
    context = RunContext(cluster=None, run_id="cg-t", namespace="ns", labels={})  # type: ignore[arg-type]
    context.on_teardown("put back the weight", lambda: done.append("weight"))
    return context


@pytest.fixture
def sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM arrived (the countdown started) for the duration of the test only."""
    monkeypatch.setitem(shutdown._state, "deadline_s", 60.0)
    monkeypatch.setitem(shutdown._state, "deadline", None)
    shutdown.begin()


def _check(run: RunContext, done: list[str]) -> list[str]:
    with run.check_scope() as failures:
        run.on_teardown("delete workload", lambda: done.append("workload"), deletes=True)
        run.on_teardown("uncordon node", lambda: done.append("uncordon"))
        run.on_teardown("delete budget", lambda: done.append("budget"), deletes=True)
    return failures


def test_a_check_puts_back_before_it_deletes(run: RunContext, done: list[str]) -> None:
    assert _check(run, done) == []
    assert done == ["uncordon", "budget", "workload"]
    assert run.undo_all() == []
    assert done[-1] == "weight"


def test_after_sigterm_every_put_back_of_the_run_comes_before_any_deletion(
    run: RunContext, done: list[str], sigterm: None
) -> None:
    assert _check(run, done) == []
    assert done == ["uncordon"], "a check's deletions wait for the run's put-backs"
    assert run.undo_all() == []
    assert done == ["uncordon", "weight", "budget", "workload"]
    assert run.everything_put_back


def test_what_is_not_started_before_the_deadline_is_left_for_the_sweep(
    run: RunContext, done: list[str], sigterm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(shutdown._state, "deadline", 0.0)
    failures = _check(run, done) + run.undo_all()
    assert done == []
    assert sorted(failures) == [
        f"{what}: not started before the SIGTERM deadline"
        for what in ("delete budget", "delete workload", "put back the weight", "uncordon node")
    ]
    assert not run.everything_put_back, "the namespace with the weight's record must stay"


def test_a_failed_put_back_keeps_the_namespace_for_the_sweep(
    run: RunContext, done: list[str]
) -> None:
    def refuse() -> None:
        raise RuntimeError("AccessDenied")

    run.on_teardown("set the weight back", refuse)
    assert run.undo_all() == ["set the weight back: AccessDenied"]
    assert done == ["weight"]
    assert not run.everything_put_back
