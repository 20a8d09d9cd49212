"""Within one run, a disruptive check runs alone: no other check of the run beside it.

A drain or a node-group upgrade evicts the probe pods of whatever check runs beside it, and two
disruptive checks at once would each measure the other's damage. The cluster Lease
(``clustergate.lease``) keeps *other runs* out; this keeps the run's own xdist workers apart.
xdist's ``--dist loadgroup`` is not used for it: it only pins a group to one worker and says
nothing about what the other workers run meanwhile.

It is a readers-writer lock on files named after the run id, which every worker of the run (local
processes) sees: each check holds the run's lock shared, a disruptive check holds it exclusive.
A disruptive check that waits closes a turnstile first, so checks that start after it queue
behind it instead of starving it. Each holder leaves a note naming its check, so a wait that
times out says what it waited for.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from clustergate.wait import poll_until


def turns_dir(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"clustergate-turns-{run_id}"


def remove_turns(run_id: str) -> None:
    """Called by the process that owns the run once every worker has ended."""
    shutil.rmtree(turns_dir(run_id), ignore_errors=True)


def _holders(directory: Path) -> str:
    notes = sorted(path.read_text() for path in directory.glob("holder-*") if path.is_file())
    return "; ".join(notes) or "no check holds it (released just now)"


def _take(handle: IO[str], mode: int, what: str, directory: Path, timeout_s: float) -> None:
    def attempt() -> bool:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    poll_until(
        attempt,
        bool,
        what=what,
        timeout_s=timeout_s,
        describe=lambda _: f"held by: {_holders(directory)}",
        interval_s=0.1,
        progress_every_s=30.0,
    )


@contextmanager
def check_turn(run_id: str, check: str, *, disruptive: bool, timeout_s: float) -> Iterator[None]:
    """Hold the run's lock for the block: exclusive for a disruptive check, else shared."""
    directory = turns_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "disruptive" if disruptive else "shared"
    waiting_for = (
        "the run's other checks to end, to run alone"
        if disruptive
        else "a disruptive check of this run to end"
    )
    with open(directory / "turnstile", "a") as turnstile, open(directory / "run", "a") as lock:
        _take(turnstile, fcntl.LOCK_EX, f"{check}: {waiting_for}", directory, timeout_s)
        try:
            mode = fcntl.LOCK_EX if disruptive else fcntl.LOCK_SH
            _take(lock, mode, f"{check}: {waiting_for}", directory, timeout_s)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        note = directory / f"holder-{os.getpid()}"
        note.write_text(f"{kind} {check} (pid {os.getpid()})")
        try:
            yield
        finally:
            note.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
