"""SIGTERM is handled like Ctrl-C, against a deadline.

A pipeline that cancels a job sends SIGTERM and, some seconds later, SIGKILL. On SIGTERM the
run raises KeyboardInterrupt, so pytest tears down as after Ctrl-C: every undo action still
registered runs, put-backs (uncordon, weights, sizes) before deletions (``clustergate.runctx``).
From the first SIGTERM on, ``runs.sigterm_deadline_s`` counts down; an action not started
before it passes is skipped and left for ``pytest --sweep`` (the cordon annotation and the
weight record in the run namespace say what to put back).

Under xdist the checks, and so their undo lists, live in the workers. The process that owns
the run forwards SIGTERM to its workers (each leaves its pid in a directory named after the
run, and removes it when its teardown is done) and waits for them until the deadline before it
ends itself, instead of letting xdist kill workers that are still putting things back.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

log = logging.getLogger("clustergate.shutdown")

_state: dict[str, float | None] = {"deadline_s": 20.0, "deadline": None}
_workers: dict[str, Path | None] = {"dir": None}


def workers_dir(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"clustergate-workers-{run_id}"


def set_deadline_s(seconds: float) -> None:
    """How long after the first SIGTERM put-backs and deletions may still start."""
    _state["deadline_s"] = seconds


def terminating() -> bool:
    """True once a SIGTERM arrived."""
    return _state["deadline"] is not None


def past_deadline() -> bool:
    deadline = _state["deadline"]
    return deadline is not None and time.monotonic() > deadline


def install(run_id: str | None, *, worker: bool) -> None:
    """Handle SIGTERM in this process (again once the run id is known); a worker also says
    where it can be reached."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if run_id is None:
        return
    directory = workers_dir(run_id)
    _workers["dir"] = directory
    if worker:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / str(os.getpid())).touch()


def leave() -> None:
    """A worker whose teardown is done: the owner of the run need not wait for it."""
    directory = _workers["dir"]
    if directory is not None:
        (directory / str(os.getpid())).unlink(missing_ok=True)


def remove(run_id: str) -> None:
    """Called by the process that owns the run once every worker has ended."""
    shutil.rmtree(workers_dir(run_id), ignore_errors=True)


def _worker_pids() -> list[int]:
    directory = _workers["dir"]
    if directory is None or not directory.is_dir():
        return []
    pids = [int(path.name) for path in directory.iterdir() if path.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def begin() -> None:
    """Start the countdown: from now on put-backs go first and the deadline holds."""
    _state["deadline"] = time.monotonic() + (_state["deadline_s"] or 0.0)


def _on_sigterm(signum: int, frame: object) -> None:
    if terminating():
        return  # the interrupt is already on its way; a second SIGTERM changes nothing
    begin()
    deadline_s = _state["deadline_s"] or 0.0
    log.warning(
        "SIGTERM: putting back what the run changed, then deleting what it made; what is not "
        "done within %.0f s is left for pytest --sweep",
        deadline_s,
    )
    workers = _worker_pids()
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    directory = _workers["dir"]

    def tearing_down(pid: int) -> bool:
        return directory is not None and (directory / str(pid)).exists() and _alive(pid)

    while any(tearing_down(pid) for pid in workers) and not past_deadline():
        time.sleep(0.1)
    raise KeyboardInterrupt
