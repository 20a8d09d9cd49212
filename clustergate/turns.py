"""Within one run, a disruptive check runs alone: no other check of the run beside it.

A drain or a node-group upgrade evicts the probe pods of whatever runs beside it, replaces the
nodes and DaemonSet pods that another module's fixtures have just listed, and two disruptive
checks at once would each measure the other's damage. The cluster Lease
(``clustergate.lease``) keeps *other runs* out; this keeps the run's own xdist workers apart.
xdist's ``--dist loadgroup`` is not used for it: it only pins a group to one worker and says
nothing about what the other workers run meanwhile.

It is a readers-writer lock on files named after the run id, which every worker of the run
(local processes) sees. A worker holds it shared from the first check of a module until the
module's fixtures are torn down, since those fixtures (probe pods, node lists) are what a
disruption would invalidate; a disruptive check holds it exclusively. A disruptive check that
waits closes a turnstile first, so checks that start after it queue behind it instead of
starving it. Each holder leaves a note naming its check, so a wait that times out says what it
waited for.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from clustergate.wait import poll_until


def turns_dir(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"clustergate-turns-{run_id}"


def remove_turns(run_id: str) -> None:
    """Called by the process that owns the run once every worker has ended."""
    shutil.rmtree(turns_dir(run_id), ignore_errors=True)


class Turns:
    """One worker's hold on the run's lock: none, shared, or exclusive (disruptive)."""

    def __init__(self, run_id: str, timeout_s: float) -> None:
        self.directory = turns_dir(run_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.disruptive: bool | None = None
        self._lock: IO[str] | None = None
        self._note = self.directory / f"holder-{os.getpid()}-{id(self)}"

    def take(self, check: str, *, disruptive: bool) -> None:
        """Hold the lock in the mode ``check`` needs, waiting for it if need be."""
        if self.disruptive is not disruptive:
            self.release()
            waiting_for = (
                "the run's other checks and their modules to end, to run alone"
                if disruptive
                else "a disruptive check of this run to end"
            )
            what = f"{check}: {waiting_for}"
            with open(self.directory / "turnstile", "a") as turnstile:
                self._wait(turnstile, fcntl.LOCK_EX, what)
                lock = open(self.directory / "run", "a")  # noqa: SIM115 - held until release()
                try:
                    self._wait(lock, fcntl.LOCK_EX if disruptive else fcntl.LOCK_SH, what)
                except BaseException:
                    lock.close()
                    raise
            self._lock, self.disruptive = lock, disruptive
        kind = "disruptive" if disruptive else "shared"
        self._note.write_text(f"{kind} {check} (pid {os.getpid()})")

    def release(self) -> None:
        if self._lock is None:
            return
        self._note.unlink(missing_ok=True)
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()
        self._lock, self.disruptive = None, None

    def _holders(self) -> str:
        notes = sorted(p.read_text() for p in self.directory.glob("holder-*") if p.is_file())
        return "; ".join(notes) or "no check holds it (released just now)"

    def _wait(self, handle: IO[str], mode: int, what: str) -> None:
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
            timeout_s=self.timeout_s,
            describe=lambda _: f"held by: {self._holders()}",
            interval_s=0.1,
            progress_every_s=30.0,
        )
