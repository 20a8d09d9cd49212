"""Run one Locust load phase in subprocesses and read back every request it made.

Locust patches the standard library with gevent when imported, so it never runs inside the
caller's process: :func:`run_phase` starts ``python -m locust -f load/locustfile.py --headless``
(with ``workers`` > 0: a ``--master`` and that many ``--worker`` processes, Locust's own
distributed mode) and follows the request log the locustfile writes (one JSON line per request,
see load/locustfile.py). While the phase runs it re-reads the log every ``poll_interval_s`` and,
when ``stop_when(records)`` says the evidence is enough, stops Locust early: SIGTERM to the
master, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clustergate.jsonl import JsonLinesFollower

#: The locustfile of this repository.
LOCUSTFILE = Path(__file__).resolve().parents[1] / "load" / "locustfile.py"
#: Time allowed for Locust to start (and workers to connect) before the phase's own duration.
STARTUP_ALLOWANCE_S = 30.0
#: How long a master waits for its workers to connect (within the startup allowance).
WORKERS_CONNECT_S = 20


#: Locust's own statistics (``--csv``): <prefix>_stats.csv, _failures.csv, _stats_history.csv.
LOCUST_STATS = "locust"


class PhaseError(RuntimeError):
    """Locust did not run the phase (failed to start, or ran past its deadline)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the locustfile recorded it."""

    t: float  # start, Unix seconds
    backend: str | None  # the cluster the response named; None when it named none
    status: int  # HTTP status, 0 when no response came
    latency_ms: float
    error: str | None
    #: The DNS answer the request rode (one client's one resolution), None when the endpoint
    #: was dialled by address; requests that share it share one weighted draw.
    resolution: str | None = None
    #: The address the request connected to, when the client resolved the endpoint itself.
    address: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or not 200 <= self.status < 400


@dataclass(frozen=True)
class PhaseResult:
    records: tuple[RequestRecord, ...]
    #: From the first request's start to the last request's end.
    duration_s: float
    stopped_early: bool
    workers: int
    exit_code: int | None
    by_backend: dict[str | None, list[RequestRecord]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        groups: dict[str | None, list[RequestRecord]] = defaultdict(list)
        for record in self.records:
            groups[record.backend].append(record)
        object.__setattr__(self, "by_backend", dict(groups))

    @property
    def requests_per_s(self) -> float:
        return len(self.records) / self.duration_s if self.duration_s > 0 else 0.0

    def describe(self) -> str:
        counts = ", ".join(
            f"{backend or 'unnamed'} {len(records):,}"
            for backend, records in sorted(self.by_backend.items(), key=lambda kv: str(kv[0]))
        )
        how = "stopped early" if self.stopped_early else "ran its full duration"
        return (
            f"{len(self.records):,} requests in {self.duration_s:.1f}s "
            f"({self.requests_per_s:,.0f}/s; {counts or 'none'}), {how}"
        )


class RequestLogReader:
    """Follows every ``*.jsonl`` file of a directory, returning only complete lines."""

    def __init__(self, directory: Path) -> None:
        self._follower = JsonLinesFollower(directory)
        self.records: list[RequestRecord] = []

    def read_new(self) -> int:
        before = len(self.records)
        for _, raw in self._follower.new_lines():
            self.records.append(
                RequestRecord(
                    float(raw["t"]),
                    raw["backend"],
                    int(raw["status"]),
                    float(raw["latency_ms"]),
                    raw["error"],
                    raw.get("resolution"),
                    raw.get("address"),
                )
            )
        return len(self.records) - before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"


def _end(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


def run_phase(
    host: str,
    users: int,
    spawn_rate: float,
    duration_s: float,
    request_log_dir: str | Path,
    workers: int = 0,
    stop_when: Callable[[Sequence[RequestRecord]], bool] | None = None,
    *,
    path: str = "/",
    backend_header: str = "X-Served-By",
    backend_field: str = "",
    user_rps: float = 0.0,
    resolver: Sequence[str] = (),
    remote_workers: int = 0,
    master_bind_host: str = "127.0.0.1",
    master_port: int = 0,
    locustfile: Path = LOCUSTFILE,
    poll_interval_s: float = 0.25,
    stop_grace_s: float = 10.0,
) -> PhaseResult:
    """Run ``users`` (spawned at ``spawn_rate``/s) against ``host`` for ``duration_s``.

    ``request_log_dir`` must hold no request log yet (a phase's records are every ``*.jsonl``
    in it); Locust's own output goes there too, as ``locust-*.log``, and its statistics as
    ``locust_stats.csv`` (with ``_failures``, ``_exceptions``, ``_stats_history``). With
    ``workers`` > 0 the records reach the log through the master every 3 s (Locust's worker
    report interval), so an early stop reacts that much later than in a single process.
    ``resolver``: the name servers the users resolve ``host`` through (empty: the system's).
    ``remote_workers`` more workers, started by hand on other machines against
    ``master_bind_host:master_port`` (load/README.md), are awaited for up to
    :data:`WORKERS_CONNECT_S` before the phase starts.
    """
    log_dir = Path(request_log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if any(log_dir.glob("*.jsonl")):
        raise ValueError(f"{log_dir} already holds request logs; give each phase its own directory")
    env = {
        **os.environ,
        "CLUSTERGATE_PATH": path,
        "CLUSTERGATE_BACKEND_HEADER": backend_header,
        "CLUSTERGATE_BACKEND_FIELD": backend_field,
        "CLUSTERGATE_USER_RPS": str(user_rps),
        "CLUSTERGATE_RESOLVER": ",".join(resolver),
        "CLUSTERGATE_PHASES": json.dumps(
            [{"users": users, "spawn_rate": spawn_rate, "duration_s": duration_s}]
        ),
        "CLUSTERGATE_REQUEST_LOG": str(log_dir),
    }
    locust = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING"]
    master_cmd = [
        *locust,
        "--headless",
        "--only-summary",
        "--host",
        host.rstrip("/"),
        f"--csv={log_dir / LOCUST_STATS}",
    ]
    worker_cmds: list[list[str]] = []
    if workers or remote_workers:
        port = master_port or _free_port()
        master_cmd += [
            "--master",
            f"--master-bind-host={master_bind_host}",
            f"--master-bind-port={port}",
            f"--expect-workers={workers + remote_workers}",
            f"--expect-workers-max-wait={WORKERS_CONNECT_S}",
        ]
        worker_cmds = [
            [*locust, "--worker", "--master-host=127.0.0.1", f"--master-port={port}"]
        ] * workers

    master_log = log_dir / "locust-master.log"
    processes: list[subprocess.Popen[bytes]] = []
    reader = RequestLogReader(log_dir)
    stopped_early = False
    deadline = time.monotonic() + STARTUP_ALLOWANCE_S + duration_s + stop_grace_s
    try:
        with master_log.open("wb") as out:
            master = subprocess.Popen(master_cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        processes.append(master)
        for index, command in enumerate(worker_cmds):
            with (log_dir / f"locust-worker-{index}.log").open("wb") as out:
                processes.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
        while master.poll() is None:
            if time.monotonic() > deadline:
                raise PhaseError(
                    f"Locust phase ({users} users, {duration_s:.0f}s) still running "
                    f"{STARTUP_ALLOWANCE_S + duration_s + stop_grace_s:.0f}s after its start "
                    f"with {len(reader.records)} requests recorded; master log:\n"
                    f"{_log_tail(master_log)}"
                )
            time.sleep(poll_interval_s)
            if reader.read_new() and stop_when is not None and stop_when(reader.records):
                stopped_early = True
                _end(master, stop_grace_s)
    finally:
        for process in processes:
            _end(process, stop_grace_s)
    reader.read_new()
    # Locust exits 1 when any request failed: that is a result, not a failure to run.
    crashed = master.returncode not in (0, 1) and not stopped_early
    if crashed or (master.returncode != 0 and not reader.records):
        raise PhaseError(
            f"Locust exited with {master.returncode} after {len(reader.records)} requests; "
            f"master log:\n{_log_tail(master_log)}"
        )
    records = tuple(sorted(reader.records, key=lambda record: record.t))
    duration = max(r.t + r.latency_ms / 1000 for r in records) - records[0].t if records else 0.0
    return PhaseResult(
        records, duration, stopped_early, workers + remote_workers, master.returncode
    )
