"""Load on a cutover endpoint, recording which cluster served every request.

Standalone: ``locust -f load/locustfile.py --host https://shop.example.com`` (web UI on :8089).
From the suite: :func:`clustergate.load_phase.run_phase` runs it headless in a subprocess.
This file needs only Locust, dnspython and the standard library, so a worker on another
machine needs nothing of clustergate (see load/README.md).

Configuration, all from the environment:

- ``CLUSTERGATE_PATH``: the path requested (default ``/``).
- ``CLUSTERGATE_BACKEND_HEADER``: the response header naming the serving cluster (default
  ``X-Served-By``); ``CLUSTERGATE_BACKEND_FIELD``: a top-level JSON body field naming it, used
  when the header is absent or set to the empty string.
- ``CLUSTERGATE_USER_RPS``: requests per second per user (``constant_throughput``); unset, a
  user sends its next request as soon as the last one is answered.
- ``CLUSTERGATE_PHASES``: a JSON list of ``{"users", "spawn_rate", "duration_s"}``; when set,
  :class:`PhaseShape` drives the users through them and ends the run after the last. Unset,
  users and spawn rate come from the command line or the web UI as usual.
- ``CLUSTERGATE_RESOLVER``: comma-separated name servers (``host`` or ``host:port``) the
  users resolve the host through; unset: those of /etc/resolv.conf.
- ``CLUSTERGATE_REQUEST_LOG``: a directory (read by a master or a single process). When set,
  every request is recorded as one JSON line
  ``{"t", "backend", "status", "latency_ms", "error", "resolution", "address"}`` (``t``: start,
  Unix seconds; ``backend``: null when the response named none; ``status``: 0 when no response
  came; ``resolution``: which DNS answer the request rode, null when the host is an address;
  ``address``: the address it connected to).

How a user reaches a host given by name, as a real client does: it resolves the name through
a stub of its own that keeps the answer for its TTL (the smallest TTL along a CNAME chain, as
resolvers cache it), connects to the address and keeps that connection; once the answer has
expired, the next request resolves again (a new, independent weighted draw at the name's
authoritative servers) and, when the address changed, connects there. Each user is one
client with its own cache, so every resolution is one unit of evidence and each request
records which one it rode. A host given as an address is connected to directly.

Where records are written: a process that runs users by itself writes its own file,
``requests-<host>-<pid>.jsonl``. In distributed mode workers do not write: they hand their
records to the master with Locust's worker report (``report_to_master``, every 3 s and once
more when they stop), and the master writes them. So the records of workers on other machines
end up on the master's machine, where the suite reads them.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import dns.exception
import dns.nameserver
import dns.resolver
from locust import FastHttpUser, LoadTestShape, constant, constant_throughput, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

PATH = os.environ.get("CLUSTERGATE_PATH", "/")
BACKEND_HEADER = os.environ.get("CLUSTERGATE_BACKEND_HEADER", "X-Served-By")
BACKEND_FIELD = os.environ.get("CLUSTERGATE_BACKEND_FIELD", "")
USER_RPS = float(os.environ.get("CLUSTERGATE_USER_RPS", "0") or 0)
PHASES: list[dict[str, float]] = json.loads(os.environ.get("CLUSTERGATE_PHASES", "") or "[]")
REQUEST_LOG = os.environ.get("CLUSTERGATE_REQUEST_LOG", "")
RESOLVER = [s.strip() for s in os.environ.get("CLUSTERGATE_RESOLVER", "").split(",") if s.strip()]
RECORDS_KEY = "clustergate_records"
#: Numbers the users of this process, for resolution ids unique across processes and users.
_USER_NUMBERS = itertools.count()


def backend_of(response: Any) -> str | None:
    """The cluster a response names, by header first, then by JSON body field."""
    if response is None:
        return None
    headers = getattr(response, "headers", None)
    if BACKEND_HEADER and headers is not None and headers.get(BACKEND_HEADER):
        return str(headers.get(BACKEND_HEADER))
    if BACKEND_FIELD and getattr(response, "content", None):
        try:
            body = json.loads(response.content)
        except ValueError:
            return None
        if isinstance(body, dict) and body.get(BACKEND_FIELD) is not None:
            return str(body[BACKEND_FIELD])
    return None


class RecordFile:
    """This process's request log: one JSON line per request. Flushed at most every
    ``FLUSH_INTERVAL_S`` (a write per request would cost a system call each), so a runner
    polling the file sees records that are at most that old, plus the gap to the next request."""

    FLUSH_INTERVAL_S = 0.1

    def __init__(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        name = f"requests-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._file: TextIO = open(Path(directory) / name, "a", encoding="utf-8")  # noqa: SIM115
        self._flushed_at = 0.0

    def write(self, records: list[dict[str, Any]]) -> None:
        self._file.write("".join(json.dumps(record) + "\n" for record in records))
        now = time.monotonic()
        if now - self._flushed_at >= self.FLUSH_INTERVAL_S:
            self._file.flush()
            self._flushed_at = now

    def close(self) -> None:
        self._file.close()


class Recorder:
    """Where this process's records go: its own file, or the next report to the master."""

    def __init__(self) -> None:
        self.file: RecordFile | None = None
        self.pending: list[dict[str, Any]] | None = None

    def add(self, record: dict[str, Any]) -> None:
        if self.pending is not None:
            self.pending.append(record)
        elif self.file is not None:
            self.file.write([record])

    @property
    def active(self) -> bool:
        return self.pending is not None or self.file is not None


recorder = Recorder()


@events.init.add_listener
def set_up_recording(environment: Environment, **_: Any) -> None:
    """Workers always forward (keeping them is the master's setting); others write if asked."""
    if isinstance(environment.runner, WorkerRunner):
        recorder.pending = []
    elif REQUEST_LOG:
        recorder.file = RecordFile(REQUEST_LOG)


@events.request.add_listener
def record_request(
    response_time: float,
    response: Any,
    exception: BaseException | None,
    start_time: float,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if not recorder.active:
        return
    context = context or {}
    recorder.add(
        {
            "t": start_time,
            "backend": backend_of(response),
            "status": getattr(response, "status_code", 0) or 0,
            "latency_ms": response_time,
            "error": None if exception is None else str(exception),
            "resolution": context.get("resolution"),
            "address": context.get("address"),
        }
    )


@events.report_to_master.add_listener
def hand_records_to_master(data: dict[str, Any], **_: Any) -> None:
    if recorder.pending is not None:
        data[RECORDS_KEY], recorder.pending = recorder.pending, []


@events.worker_report.add_listener
def write_worker_records(data: dict[str, Any], **_: Any) -> None:
    """Fired only on a master, for each report a worker sends."""
    records = data.get(RECORDS_KEY)
    if records and recorder.file is not None:
        recorder.file.write(records)


@events.quitting.add_listener
def close_record_file(**_: Any) -> None:
    if recorder.file is not None:
        recorder.file.close()
        recorder.file = None


def _nameserver(server: str) -> dns.nameserver.Do53Nameserver:
    host, _, port = server.rpartition(":") if ":" in server else (server, "", "")
    return dns.nameserver.Do53Nameserver(host, int(port) if port else 53)


class ClientResolver:
    """One client's stub resolver: one answer for the host, kept until its TTL runs out."""

    def __init__(self, host: str, servers: list[str], client_id: str) -> None:
        self.host = host
        self._resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = [_nameserver(server) for server in servers]
        self._client_id = client_id
        self._resolutions = 0
        self._address = ""
        self._expires = 0.0

    def current(self) -> tuple[str, str]:
        """``(address, resolution id)``: the cached answer, or a new one when it has expired.
        Raises dns.exception.DNSException when the name does not resolve."""
        if time.time() >= self._expires:
            answer = self._resolver.resolve(self.host, "A", search=False)
            self._address = answer.rrset[0].address
            # dnspython sets expiration from the smallest TTL of the whole CNAME chain.
            self._expires = answer.expiration
            self._resolutions += 1
        return self._address, f"{self._client_id}-{self._resolutions}"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CutoverUser(FastHttpUser):
    """Requests the cutover endpoint, and nothing else, resolving its name as a client does."""

    wait_time = constant_throughput(USER_RPS) if USER_RPS > 0 else constant(0)

    def on_start(self) -> None:
        parts = urlsplit(self.host or "")
        self._parts = parts
        self._resolver: ClientResolver | None = None
        if parts.hostname and not _is_address(parts.hostname):
            client_id = f"{socket.gethostname()}-{os.getpid()}-{next(_USER_NUMBERS)}"
            self._resolver = ClientResolver(parts.hostname, RESOLVER, client_id)

    @task
    def get_endpoint(self) -> None:
        if self._resolver is None:
            self.client.get(PATH, name=PATH)
            return
        try:
            address, resolution = self._resolver.current()
        except dns.exception.DNSException as error:
            self.environment.events.request.fire(
                request_type="GET",
                name=PATH,
                response_time=0.0,
                response_length=0,
                response=None,
                exception=error,
                start_time=time.time(),
                context={"resolution": None, "address": None},
            )
            return
        port = f":{self._parts.port}" if self._parts.port else ""
        # The connection to this address stays open (keep-alive) and is reused until the
        # answer expires and another address comes up.
        self.client.get(
            f"{self._parts.scheme}://{address}{port}{PATH}",
            name=PATH,
            headers={"Host": self._parts.netloc},
            context={"resolution": resolution, "address": address},
        )


class PhaseShape(LoadTestShape):
    """Users and spawn rate per phase from ``CLUSTERGATE_PHASES``; stops after the last phase.

    Active only when the variable is set, so that without it the web UI asks for the users."""

    abstract = not PHASES

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        phase_end = 0.0
        for phase in PHASES:
            phase_end += float(phase["duration_s"])
            if elapsed < phase_end:
                return int(phase["users"]), float(phase["spawn_rate"])
        return None
