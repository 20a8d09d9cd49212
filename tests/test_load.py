"""Load phases: load/locustfile.py run by clustergate.load_phase against a small local server."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from clustergate.load_phase import (
    LOCUSTFILE,
    PhaseResult,
    RequestLogReader,
    RequestRecord,
    run_phase,
)
from clustergate.stats import Decision, SequentialShareTest


async def _answer(request: web.Request) -> web.Response:
    """Half old, half new, named in the header and the body; on ``/body-only-flaky`` named only
    in the body, and one answer in five is a 503."""
    cluster = random.choice(["old", "new"])
    if request.path == "/body-only-flaky":
        status = 503 if random.random() < 0.2 else 200
        return web.json_response({"cluster": cluster}, status=status)
    return web.json_response({"cluster": cluster}, headers={"X-Served-By": cluster})


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/{tail:.*}", _answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def assert_both_backends(result: PhaseResult) -> None:
    assert set(result.by_backend) == {"old", "new"}, result.describe()
    assert all(record.status == 200 for record in result.records)
    assert all(record.latency_ms > 0 for record in result.records)


def test_one_user_phase_records_every_request_with_its_backend(
    server_url: str, tmp_path: Path
) -> None:
    result = run_phase(server_url, users=1, spawn_rate=1, duration_s=2, request_log_dir=tmp_path)
    assert_both_backends(result)
    assert not result.stopped_early
    assert len(result.records) > 100
    assert 1.0 < result.duration_s < 5.0, result.describe()
    assert result.requests_per_s == pytest.approx(len(result.records) / result.duration_s)
    starts = [record.t for record in result.records]
    assert starts == sorted(starts)
    assert abs(starts[0] - time.time()) < 60


def test_backend_named_by_a_body_field_and_failures_recorded(
    server_url: str, tmp_path: Path
) -> None:
    result = run_phase(
        server_url,
        users=1,
        spawn_rate=1,
        duration_s=1.5,
        request_log_dir=tmp_path,
        path="/body-only-flaky",
        backend_header="",
        backend_field="cluster",
    )
    assert set(result.by_backend) == {"old", "new"}, result.describe()
    assert {record.status for record in result.records} == {200, 503}
    assert all(record.failed == (record.status == 503) for record in result.records)
    assert result.exit_code == 1  # Locust's exit code when requests failed


def test_unreachable_host_gives_records_without_a_response(tmp_path: Path) -> None:
    result = run_phase("http://127.0.0.1:9", 1, 1, duration_s=1, request_log_dir=tmp_path)
    assert result.records
    assert all(r.status == 0 and r.error and r.backend is None for r in result.records)


def test_phase_stops_early_when_the_sequential_test_decides(
    server_url: str, tmp_path: Path
) -> None:
    sprt = SequentialShareTest(0.5, 0.05)

    def decided(records: Sequence[RequestRecord]) -> bool:
        outcome = sprt.evaluate([record.backend == "new" for record in records])
        return outcome.decision is not Decision.UNDECIDED

    started = time.monotonic()
    result = run_phase(server_url, 1, 1, duration_s=60, request_log_dir=tmp_path, stop_when=decided)
    assert result.stopped_early
    assert time.monotonic() - started < 30, "the phase ran on after stop_when said enough"
    outcome = sprt.evaluate([record.backend == "new" for record in result.records])
    assert outcome.decision is Decision.ACCEPT, outcome.describe()
    assert outcome.requests_used < len(result.records)


def test_shape_runs_the_phases_in_order_then_stops() -> None:
    # In a subprocess: importing Locust would monkey-patch the test process.
    script = (
        "import locustfile\n"
        "shape = locustfile.PhaseShape()\n"
        "for t in (0, 1.9, 2.1, 4.9, 5.1):\n"
        "    shape.get_run_time = lambda t=t: t\n"
        "    print(shape.tick())\n"
    )
    phases = [
        {"users": 1, "spawn_rate": 1, "duration_s": 2},
        {"users": 5, "spawn_rate": 2.5, "duration_s": 3},
    ]
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=LOCUSTFILE.parent,
        env={**os.environ, "CLUSTERGATE_PHASES": json.dumps(phases)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert " ".join(out) == "(1, 1.0) (1, 1.0) (5, 2.5) (5, 2.5) None"


def test_master_with_one_worker_records_the_workers_requests(
    server_url: str, tmp_path: Path
) -> None:
    result = run_phase(
        server_url, users=1, spawn_rate=1, duration_s=2, request_log_dir=tmp_path, workers=1
    )
    assert_both_backends(result)
    assert result.workers == 1
    # Only the master writes: the worker's records came through Locust's worker reports.
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


def test_a_used_log_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "requests-old.jsonl").write_text("")
    with pytest.raises(ValueError, match="already holds request logs"):
        run_phase("http://127.0.0.1:9", 1, 1, 1, tmp_path)


def test_reader_takes_only_complete_lines(tmp_path: Path) -> None:
    line = json.dumps({"t": 1.5, "backend": "new", "status": 200, "latency_ms": 2.0, "error": None})
    log = tmp_path / "requests-a.jsonl"
    log.write_text(line + "\n" + line[:20])
    reader = RequestLogReader(tmp_path)
    assert reader.read_new() == 1
    with log.open("a") as appended:
        appended.write(line[20:] + "\n")
    assert reader.read_new() == 1
    assert reader.records == [RequestRecord(1.5, "new", 200, 2.0, None)] * 2
