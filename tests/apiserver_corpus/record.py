"""Record a real kube-apiserver's answers to the corpus requests (tests/apiserver_corpus).

    python -m tests.apiserver_corpus.record --kube-apiserver PATH --etcd PATH --version v1.31.2

starts etcd and kube-apiserver on loopback (a generated CA and serving certificate, static
bearer tokens, RBAC, no controllers), sends every case of ``tests/apiserver_corpus/cases.py``
and writes ``kube-apiserver-<version>.json`` beside this file. Run it again for each new
Kubernetes minor; the twin's replay (tests/twin/test_apiserver_corpus.py) compares against
every corpus file there. Differences the twin keeps on purpose are listed in the file's
``out_of_scope`` section, which this tool carries over from an earlier recording of the same
name. Neither binary is part of the project: build or install them yourself.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clustergate.twin.apiserver.tls import write_serving_files
from tests.apiserver_corpus.cases import CASES, UNPRIVILEGED
from tests.apiserver_corpus.wire import Wire

CORPUS_DIR = Path(__file__).parent
ROOT = CORPUS_DIR.parents[1]
#: The configmaps watch is served by etcd rather than the watch cache, so that a compaction
#: expires it at once as it expires a continue token (with a cache, only later).
APISERVER_FLAGS = ("--watch-cache-sizes=configmaps#0", "--authorization-mode=RBAC")
READY_S = 120
SERVICE_RANGE = "10.100.0.0/16"
#: The first address of the range: the kubernetes Service, named in the serving certificate.
SERVICE_IP = "10.100.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_account_keys(folder: Path) -> tuple[Path, Path]:
    """The key pair kube-apiserver signs and verifies service-account tokens with (RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / "sa-key.pem", folder / "sa-pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


class Etcd:
    def __init__(self, binary: str, folder: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [
                binary,
                "--data-dir",
                str(folder / "etcd"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
            ],
            stdout=(folder / "etcd.log").open("w"),
            stderr=subprocess.STDOUT,
        )

    def _call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def compact(self) -> None:
        """Compact every revision up to now, as kube-apiserver's compactor does every 5 min."""
        everything = {"key": base64.b64encode(b"\0").decode(), "range_end": "AA==", "limit": 1}
        header = self._call("/v3/kv/range", everything)["header"]
        revision = int(header["revision"])  # type: ignore[index]
        self._call("/v3/kv/compaction", {"revision": revision, "physical": True})


@contextmanager
def servers(apiserver: str, etcd_binary: str) -> Iterator[Wire]:
    with tempfile.TemporaryDirectory(prefix="corpus-") as temp:
        folder = Path(temp)
        # The same CA and serving certificate for 127.0.0.1 the twin's API server uses.
        serving = write_serving_files(folder / "tls", "cluster.local", SERVICE_IP)
        sa_key, sa_pub = service_account_keys(folder)
        admin, nobody = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        tokens = folder / "tokens.csv"
        tokens.write_text(f'{admin},corpus-admin,1,"system:masters"\n{nobody},{UNPRIVILEGED},2\n')
        etcd = Etcd(etcd_binary, folder)
        port = free_port()
        command = [
            apiserver,
            f"--etcd-servers={etcd.url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={serving.ca_cert}",
            f"--token-auth-file={tokens}",
            "--service-account-issuer=https://oidc.eks.us-west-2.amazonaws.com/id/CORPUS",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            *APISERVER_FLAGS,
        ]
        process = subprocess.Popen(
            command, stdout=(folder / "apiserver.log").open("w"), stderr=subprocess.STDOUT
        )
        wire = Wire(
            url=f"https://127.0.0.1:{port}",
            ca_file=str(serving.ca_cert),
            token=admin,
            compact=etcd.compact,
            tokens={UNPRIVILEGED: nobody},
        )
        try:
            wait_ready(wire, process, folder / "apiserver.log")
            yield wire
        finally:
            for child in (process, etcd.process):
                child.terminate()
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()


def wait_ready(wire: Wire, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kube-apiserver exited ({process.returncode}):\n{log.read_text()}")
        try:
            answer = wire.send("GET", "/readyz")
            if answer.status == 200:
                return
            last = f"{answer.status} {answer.body}"
        except Exception as error:  # any failure to connect means "not yet"
            last = repr(error)
        time.sleep(0.5)
    raise SystemExit(f"kube-apiserver not ready after {READY_S} s; last: {last}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-apiserver", required=True, help="path of a kube-apiserver binary")
    parser.add_argument("--etcd", required=True, help="path of an etcd binary")
    parser.add_argument(
        "--version", required=True, help="the Kubernetes version of the binary, e.g. v1.31.2"
    )
    parser.add_argument("--source", default="", help="where the binary came from")
    args = parser.parse_args()
    target = CORPUS_DIR / f"kube-apiserver-{args.version}.json"
    earlier = json.loads(target.read_text()) if target.exists() else {}
    with servers(args.kube_apiserver, args.etcd) as wire:
        reported = wire.send("GET", "/version").body
        before = wire.sent
        observed = {name: case(wire) for name, case in CASES.items()}
        requests = wire.sent - before
    corpus = {
        "server": {
            "version": args.version,
            "reported_version": reported,
            "source": args.source,
            "flags": list(APISERVER_FLAGS),
            "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        },
        "requests": requests,
        "cases": observed,
        "out_of_scope": earlier.get("out_of_scope", {}),
    }
    target.write_text(json.dumps(corpus, indent=1, sort_keys=True) + "\n")
    print(f"{len(observed)} cases written to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
