"""Transient API failures are survived, a down API server is not waited for (issue 12).

The library's one retry policy (clustergate.kube.ApiRetry) is checked first against a scripted
HTTP server, answer by answer; then the whole gate profile runs against a twin whose API server
fails a tenth of the requests (429 with Retry-After, 500, dropped connections) and must reach
the verdicts a healthy twin gets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3
import yaml
from kubernetes import client, config

from clustergate.kube import ApiRetry, api_retry, connect, explain_api_error
from tests.conftest import RunningTwin, start_twin, stop_twin

FAULT_RATE = 0.1
PROFILE = "gate"


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next scripted answer: a status, or "drop"."""

    script: list[tuple[int | str, dict[str, str]]] = []
    seen: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append(self.command)
        status, headers = type(self).script.pop(0) if type(self).script else (200, {})
        if status == "drop":
            self.close_connection = True
            return
        body = b"{}"
        self.send_response(int(status))
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


RETRY_NOW = {"Retry-After": "0"}


@pytest.mark.parametrize(
    ("method", "script", "status", "requests"),
    [
        ("GET", [(429, RETRY_NOW)], 200, 2),
        ("POST", [(429, RETRY_NOW)], 200, 2),
        ("POST", [(500, {})], 200, 2),
        ("PATCH", [(503, {}), ("drop", {})], 200, 3),
        ("POST", [("drop", {})], 200, 2),
        ("DELETE", [(502, {})], 200, 2),
        # A PodDisruptionBudget refusing an eviction: an answer for the caller, not load shedding.
        ("POST", [(429, {})], 429, 1),
        ("GET", [(404, {})], 404, 1),
        # Retries used up: the last answer itself comes back, for an ApiException with a status.
        ("GET", [(500, {})] * 10, 500, 6),
    ],
)
def test_the_policy_retries_transient_answers_only(
    scripted: tuple[str, type[_Scripted]],
    method: str,
    script: list[tuple[int | str, dict[str, str]]],
    status: int,
    requests: int,
) -> None:
    url, handler = scripted
    handler.script.extend(script)
    pool = urllib3.PoolManager(retries=api_retry())
    response = pool.request(
        method, url + "/api/v1/namespaces", body=b"{}" if method != "GET" else None
    )
    assert (response.status, len(handler.seen)) == (status, requests), handler.seen


def _backoff_until_exhausted(retry: ApiRetry, error: Exception) -> tuple[int, float]:
    """(attempts, seconds slept) the policy allows for one request meeting ``error`` each time."""
    slept = 0.0
    for attempt in range(1, 100):
        try:
            retry = retry.increment("POST", "/api", error=error)
        except urllib3.exceptions.MaxRetryError:
            return attempt, slept
        slept += retry.get_backoff_time()
    raise AssertionError("the policy never gave up")


def test_the_policy_gives_up_on_a_refused_connection_well_under_a_second() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    attempts, slept = _backoff_until_exhausted(api_retry(), refused)
    assert attempts == 3
    assert slept < 1.0, f"{slept:.2f}s of backoff before reporting a refused connection"


def _kubeconfig_to(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "down", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
                "current-context": "down",
            }
        )
    )
    return path


def test_a_down_api_server_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    server = "https://127.0.0.1:9"
    cluster = connect(str(_kubeconfig_to(tmp_path, server)), None)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        cluster.version().get_code()
    elapsed = time.monotonic() - started
    message = explain_api_error(raised.value, cluster.server, "asking for the version")
    print(f"refused connection reported after {elapsed:.3f}s: {message}")
    assert message == (
        f"cannot reach the API server at {server} while asking for the version: connection refused"
    )


def _raw_client(twin: RunningTwin) -> client.CoreV1Api:
    """A client of the twin with no retries at all, to see the faults it injects."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(twin.kubeconfig), client_configuration=configuration)
    configuration.retries = urllib3.Retry(0, read=0, connect=0, status=0, redirect=0)
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.fixture(scope="module")
def faulty_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTwin]:
    state_dir = tmp_path_factory.mktemp("twin-api-faults")
    running = start_twin(state_dir, "--api-fault-rate", str(FAULT_RATE))
    try:
        yield running
    finally:
        stop_twin(state_dir)


def test_the_fault_mode_fails_requests_that_the_library_retries(faulty_twin: RunningTwin) -> None:
    raw = _raw_client(faulty_twin)
    failed = 0
    for _ in range(200):
        try:
            raw.list_namespace(_request_timeout=10)
        except (client.ApiException, urllib3.exceptions.HTTPError):
            failed += 1
    assert 5 <= failed <= 50, f"{failed} of 200 requests without retries failed at rate 0.1"
    core = connect(str(faulty_twin.kubeconfig), None).core()
    for _ in range(200):
        core.list_namespace(_request_timeout=10)


def _verdicts(twin: RunningTwin) -> dict[str, str]:
    result = twin.pytest("-m", PROFILE, "-q", "-o", "log_cli=false", timeout=600)
    summary_path = twin.state_dir / "reports" / "summary.json"
    assert summary_path.exists(), (result.stdout + result.stderr)[-3000:]
    checks = json.loads(summary_path.read_text())["checks"]
    return {check["nodeid"]: f"{check['outcome']}: {check['message'][:200]}" for check in checks}


def test_suites_reach_the_healthy_verdicts_under_api_faults(
    twin: RunningTwin, faulty_twin: RunningTwin
) -> None:
    healthy, faulty = _verdicts(twin), _verdicts(faulty_twin)
    outcome = {node: verdict.split(":", 1)[0] for node, verdict in healthy.items()}
    under_faults = {node: verdict.split(":", 1)[0] for node, verdict in faulty.items()}
    differing = {
        node: (healthy.get(node, "absent"), faulty.get(node, "absent"))
        for node in sorted(set(healthy) | set(faulty))
        if outcome.get(node) != under_faults.get(node)
    }
    assert healthy, "the healthy twin's run recorded no check"
    assert not differing, json.dumps(differing, indent=2)
