"""Record a real kube-apiserver's answers to the corpus requests (tests/apiserver_corpus).

    python tools/record_apiserver.py --kube-apiserver PATH --etcd PATH --version v1.31.2

starts etcd and kube-apiserver on loopback (a generated CA and serving certificate, static
bearer tokens, RBAC, no controllers), sends every case of ``tests/apiserver_corpus/cases.py``
and writes ``tests/apiserver_corpus/kube-apiserver-<version>.json``. Run it again for each new
Kubernetes minor; the twin's replay (tests/twin/test_apiserver_corpus.py) compares against
every corpus file there. Differences the twin keeps on purpose are listed in the file's
``out_of_scope`` section, which this tool carries over from an earlier recording of the same
name. Neither binary is part of the project: build or install them yourself.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.apiserver_corpus.cases import CASES, UNPRIVILEGED  # noqa: E402
from tests.apiserver_corpus.wire import Wire  # noqa: E402

CORPUS_DIR = ROOT / "tests" / "apiserver_corpus"
#: The configmaps watch is served by etcd rather than the watch cache, so that a compaction
#: expires it at once as it expires a continue token (with a cache, only later).
APISERVER_FLAGS = ("--watch-cache-sizes=configmaps#0", "--authorization-mode=RBAC")
READY_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_pem(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def certificates(folder: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1 signed by it, a service-account key pair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corpus-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "sa-key", "sa-pub")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    write_pem(paths["key"], key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_pem(paths["sa-key"], sa_key)
    paths["sa-pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths


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
        paths = certificates(folder)
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
            f"--tls-cert-file={paths['cert']}",
            f"--tls-private-key-file={paths['key']}",
            f"--client-ca-file={paths['ca']}",
            f"--token-auth-file={tokens}",
            "--service-account-issuer=https://oidc.eks.us-west-2.amazonaws.com/id/CORPUS",
            f"--service-account-key-file={paths['sa-pub']}",
            f"--service-account-signing-key-file={paths['sa-key']}",
            "--service-cluster-ip-range=10.100.0.0/16",
            *APISERVER_FLAGS,
        ]
        process = subprocess.Popen(
            command, stdout=(folder / "apiserver.log").open("w"), stderr=subprocess.STDOUT
        )
        wire = Wire(
            url=f"https://127.0.0.1:{port}",
            ca_file=str(paths["ca"]),
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
        observed = {name: case(wire) for name, case in CASES.items()}
    corpus = {
        "server": {
            "version": args.version,
            "reported_version": reported,
            "source": args.source,
            "flags": list(APISERVER_FLAGS),
            "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        },
        "requests": wire.sent,
        "cases": observed,
        "out_of_scope": earlier.get("out_of_scope", {}),
    }
    target.write_text(json.dumps(corpus, indent=1, sort_keys=True) + "\n")
    print(f"{len(observed)} cases written to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
