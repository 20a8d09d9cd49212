"""Raw HTTPS to an API server: the status code and the body as sent, nothing interpreted.

The official client raises on errors and drops most of a Status; the corpus needs both
verbatim, so cases speak plain HTTP through this.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3

JSON = "application/json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass
class Answer:
    status: int
    body: Any

    def field(self, *path: str | int) -> Any:
        """``body[path0][path1]...``, or None where the path does not exist."""
        value = self.body
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value


@dataclass
class Wire:
    """One API server as the cases see it.

    ``compact`` discards every revision before now, as an etcd compaction does: the recorder
    compacts etcd, the twin its store. ``tokens`` maps a user name to a bearer token that
    authenticates as that user with no permissions granted.
    """

    url: str
    ca_file: str
    token: str
    compact: Callable[[], None]
    tokens: dict[str, str] = field(default_factory=dict)
    #: requests sent so far, watches included
    sent: int = 0

    def __post_init__(self) -> None:
        self._pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=self.ca_file)

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = JSON,
        as_user: str | None = None,
        accept: str = JSON,
    ) -> Answer:
        self.sent += 1
        token = self.tokens[as_user] if as_user else self.token
        headers = {"Authorization": f"Bearer {token}", "Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        reply = self._pool.request(
            method, self.url + path, body=data, headers=headers, timeout=30, retries=False
        )
        text = reply.data.decode()
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return Answer(reply.status, parsed)

    def watch(self, path: str, until: Callable[[list[dict[str, Any]]], bool], limit_s: float = 10):
        """Events of a watch request (``path`` carries ``watch=true``) until ``until(events)``
        holds or ``limit_s`` passes; then the stream is closed."""
        self.sent += 1
        reply = self._pool.request(
            "GET",
            self.url + path,
            headers={"Authorization": f"Bearer {self.token}"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=limit_s),
            retries=False,
        )
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + limit_s
        buffer = b""
        try:
            for chunk in reply.read_chunked():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        events.append(json.loads(line))
                if until(events) or time.monotonic() > deadline:
                    break
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            pass
        finally:
            reply.release_conn()
            reply.close()
        return reply.status, events
