"""Progress a person can follow while a run takes tens of minutes, under xdist too.

Two kinds of line reach the terminal:

- one when each check starts and one when it ends, with its outcome and duration;
- for every wait longer than a few seconds, one at least every :data:`EVERY_S` saying what is
  awaited, what is seen now and how much of its time is gone (``clustergate.wait`` says them
  through :func:`say`; library code knows nothing of pytest).

``-q`` quiets both. How lines get to the terminal:

- Start and end lines are written where the terminal is: xdist forwards each check's
  ``logstart``, test reports and ``logfinish`` from the worker to the controller's hooks, in
  order, so the controller prints them as it would without xdist.
- A wait runs inside a check, on a worker whose stdout and stderr nobody sees. xdist's channel
  carries only xdist's own events (an unknown event name is a ValueError in the controller),
  and a warning or a made-up test report would land in the warnings summary or the JUnit XML.
  So each worker appends its lines to a file of its own in a folder the controller made and
  named in ``workerinput``; a thread of the controller reads the new lines of those files every
  :data:`FOLLOW_EVERY_S` and writes them to its terminal. Without xdist, lines are written to
  the terminal straight away, with output capture suspended, as pytest's live logging does.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clustergate import flaky
from clustergate.jsonl import JsonLinesFollower

log = logging.getLogger("clustergate.progress")

#: A long wait says what it sees at least this often (seconds).
EVERY_S = 30.0
#: How often the xdist controller looks for new lines from its workers (seconds).
FOLLOW_EVERY_S = 1.0
PREFIX = "clustergate:"
#: ``workerinput`` key: the folder where workers write their lines.
WORKERINPUT_KEY = "clustergate_progress_dir"

Sink = Callable[[str], None]
_sink: Sink | None = None
_sink_lock = threading.Lock()


def say(line: str) -> None:
    """Tell the person following the run ``line`` (also logged, so a failed check's captured
    log keeps it)."""
    log.info("%s", line)
    with _sink_lock:
        sink = _sink
    if sink is not None:
        sink(line)


def set_sink(target: Sink | None) -> Sink | None:
    """Send what :func:`say` is told to ``target`` from now on; returns the one before."""
    global _sink
    with _sink_lock:
        before, _sink = _sink, target
    return before


@contextmanager
def sink(target: Sink) -> Iterator[None]:
    """Send what :func:`say` is told to ``target`` while the block runs."""
    before = set_sink(target)
    try:
        yield
    finally:
        set_sink(before)


def span(seconds: float) -> str:
    """A duration as a person reads it on a progress line: 42 s, 12 min, 1 h 05 min."""
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def wait_line(what: str, seen: str, elapsed_s: float, timeout_s: float) -> str:
    """``waiting for X: <seen now>; 12 min of 90 min``."""
    return f"waiting for {what}: {seen}; {span(elapsed_s)} of {span(timeout_s)}"


def check_line(nodeid: str, outcome: str | None = None, duration_s: float = 0.0) -> str:
    if outcome is None:
        return f"{PREFIX} start {nodeid}"
    return f"{PREFIX} end   {nodeid}: {outcome} in {span(duration_s)}"


def _outcome(reports: list[pytest.TestReport]) -> str:
    """A check's outcome from its phase reports, as the summary counts it, with its retries."""
    retries = sum(report.outcome == flaky.RERUN for report in reports)  # type: ignore[comparison-overlap]
    after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    for report in reports:
        if report.failed:
            return ("failed" if report.when == "call" else "error") + after
    if any(report.skipped for report in reports):
        return "skipped" + after
    return "passed" + after


class _Terminal:
    """Writes whole lines to the terminal reporter, from any thread, capture suspended."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._plugins = config.pluginmanager
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        # Looked up when needed: the terminal reporter registers in a pytest_configure that
        # may run after the one that made this object.
        reporter = self._plugins.getplugin("terminalreporter")
        if reporter is None:
            return
        with self._lock, self._suspended():
            # A line of its own, also after a row of progress dots.
            if self._config.get_terminal_writer().width_of_current_line:
                reporter.write("\n")
            reporter.write_line(line)

    @contextmanager
    def _suspended(self) -> Iterator[None]:
        capture = self._plugins.getplugin("capturemanager")
        if capture is None:
            yield
            return
        with capture.global_and_fixture_disabled():
            yield


class ProgressReporter:
    """The pytest side, registered on every process (:func:`register`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.worker = getattr(config, "workerinput", None)
        self.current = ""
        self.phases: dict[str, list[pytest.TestReport]] = {}
        self._terminal = _Terminal(config) if self.worker is None else None
        self._folder: Path | None = None
        self._follower: _Follower | None = None
        self._out: Any = None
        self._out_lock = threading.Lock()
        self._sink_before: Sink | None = None

    # --- every process -------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._sink_before = set_sink(self._tell)
        if self.worker is not None and self.worker.get(WORKERINPUT_KEY):
            path = Path(self.worker[WORKERINPUT_KEY]) / f"{self.worker['workerid']}.jsonl"
            self._out = path.open("a", buffering=1)

    def _tell(self, line: str) -> None:
        where = f" ({self.current})" if self.current else ""
        if self._out is not None:
            with self._out_lock:
                self._out.write(json.dumps({"check": self.current, "line": line}) + "\n")
        elif self._terminal is not None:
            self._terminal.write(f"{PREFIX} {line}{where}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        set_sink(self._sink_before)
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self.current = nodeid
        if self._follower is not None:
            self._follower.read()
        if self._terminal is not None:
            self.phases[nodeid] = []
            self._terminal.write(check_line(nodeid))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._terminal is not None:
            self.phases.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        self.current = ""
        if self._follower is not None:
            self._follower.read()  # what the check's waits said comes before its end
        if self._terminal is not None:
            reports = self.phases.pop(nodeid, [])
            duration = sum(report.duration for report in reports)
            self._terminal.write(check_line(nodeid, _outcome(reports), duration))

    # --- the xdist controller ------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Name the folder for workers' lines in each worker's ``workerinput``."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="clustergate-progress-"))
            assert self._terminal is not None
            self._follower = _Follower(self._folder, self._terminal.write)
        node.workerinput[WORKERINPUT_KEY] = str(self._folder)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class _Follower:
    """Reads the lines workers append to their files and writes them to the terminal."""

    def __init__(self, folder: Path, write: Sink, every_s: float = FOLLOW_EVERY_S) -> None:
        self.folder = folder
        self.write = write
        self.every_s = every_s
        self._lines = JsonLinesFollower(folder)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clustergate-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.read()

    def read(self) -> None:
        with self._lock:
            self._read()

    def _read(self) -> None:
        for path, said in self._lines.new_lines():
            where = f" ({said['check']})" if said["check"] else ""
            self.write(f"{PREFIX} [{path.stem}] {said['line']}{where}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.read()


def register(config: pytest.Config) -> None:
    """Register the progress lines on this process unless ``-q`` asked for quiet."""
    if config.get_verbosity() < 0:
        return
    config.pluginmanager.register(ProgressReporter(config), "cg-progress")


def pytest_configure(config: pytest.Config) -> None:
    """``-p clustergate.progress``: the suites' pytest.ini loads it like this."""
    register(config)
