"""A small HTTPS admission webhook for the tests: a real TLS server with a CA of its own (its
caBundle), recording every AdmissionReview it gets and answering what the test says."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clustergate.twin.apiserver.tls import issue_serving_files

Obj = dict[str, Any]
Responder = Callable[[Obj], Obj]


def allow(review: Obj) -> Obj:
    return {"allowed": True}


class WebhookServer:
    """An HTTPS admission webhook: records every AdmissionReview, answers what ``responder``
    says (its ``response`` without the uid, which the server fills in)."""

    def __init__(self, directory: Path, dns_names: tuple[str, ...] = ()) -> None:
        self.files = issue_serving_files(
            directory, list(dns_names), ["127.0.0.1"], subject="webhook", stem="webhook"
        )
        self.reviews: list[tuple[str, Obj]] = []
        self.responder: Responder = allow
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.reviews.append((self.path, body))
                response = {**server.responder(body), "uid": body["request"]["uid"]}
                review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
                raw = json.dumps({**review, "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.files.cert, self.files.key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.files.ca_cert.read_bytes()).decode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
