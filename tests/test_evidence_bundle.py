"""The evidence bundle from its parts: a real Locust phase's request log and stats in the run's
artifacts, a summary with a failed check's diagnostics, and secrets planted in every kind of
file; the archive is opened, every checksum in its manifest verified, every file accounted for,
and no secret value left. The same checks on a real run: tests/test_failure_evidence.py."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from clustergate.evidence import MANIFEST, artifacts_dir, slug, write_bundle
from clustergate.load_phase import LOCUST_STATS, run_phase
from clustergate.redact import MASK, Redactor
from tests.test_load import server_url  # noqa: F401  (the fixture: a local HTTP server)

RUN_ID = "cg-20261204t1400-beef"
KUBE_TOKEN = "kube-bearer-token-0123456789abcdef"
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYzzSECRETzzzz"
SESSION_TOKEN = "FwoGZXIvYXdzSESSIONzzTOKENzz0123456789abcdef"


def open_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every other file of a bundle, by path inside its top folder."""
    with tarfile.open(path, "r:gz") as archive:
        members = [member for member in archive.getmembers() if member.isfile()]
        tops = {member.name.split("/", 1)[0] for member in members}
        assert len(tops) == 1, f"one top folder expected, found {tops}"
        files = {}
        for member in members:
            extracted = archive.extractfile(member)
            assert extracted is not None
            files[member.name.split("/", 1)[1]] = extracted.read()
    manifest = json.loads(files.pop(MANIFEST))
    return manifest, files


def verify_bundle(path: Path, secrets: list[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Every file listed with its sha256 and size, nothing unlisted, no secret anywhere."""
    manifest, files = open_bundle(path)
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == set(files), "the manifest must list exactly the files in the archive"
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == listed[name]["sha256"], name
        assert len(data) == listed[name]["bytes"], name
    everything = {**files, MANIFEST: json.dumps(manifest).encode()}
    for name, data in everything.items():
        for secret in secrets:
            assert secret.encode() not in data, f"{name} holds a secret ({secret[:6]}...)"
    return manifest, files


def test_bundle_holds_reports_diagnostics_load_logs_and_facts_with_verified_checksums(
    server_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    nodeid = "suites/cutover/test_cutover.py::test_each_cutover_step_gets_its_share_within_slo"
    phase_dir = artifacts_dir(reports, RUN_ID) / slug(nodeid) / "step-1-weight-10"
    result = run_phase(server_url, users=1, spawn_rate=1, duration_s=2, request_log_dir=phase_dir)
    stats = list(csv.DictReader(io.StringIO((phase_dir / f"{LOCUST_STATS}_stats.csv").read_text())))
    aggregated = next(row for row in stats if row["Name"] == "Aggregated")
    # Locust writes its final statistics as it stops, and the request log closes after the
    # last user stops, so the log may hold a few requests more, never fewer.
    counted = int(aggregated["Request Count"])
    assert counted <= len(result.records)
    assert counted >= 0.98 * len(result.records), (counted, len(result.records))

    diagnostics = {
        "namespace": "clustergate-run-main",
        "events": [{"reason": "Planted", "message": f"Authorization: Bearer {KUBE_TOKEN}"}],
        "pods": [{"name": "probe", "log_tail": f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}"}],
    }
    summary = {"checks": [{"nodeid": nodeid, "outcome": "failed", "diagnostics": diagnostics}]}
    (reports / "summary.json").write_text(json.dumps(summary))
    (reports / "report.html").write_text(f"<p>token {SESSION_TOKEN}</p>")
    (reports / "junit.xml").write_text(f"<testsuite><system-out>{AWS_SECRET}</system-out>")
    (phase_dir / "locust-master.log").write_text(f"x-amz-security-token: {SESSION_TOKEN}\n")
    facts = {"config": {"content": {"cluster": {"name": "c"}, "token": "planted-config-token"}}}
    identities = {"kubernetes": {"username": "admin"}, "aws": {"arn": "arn:aws:iam::1:user/a"}}

    path = write_bundle(
        reports,
        RUN_ID,
        facts,
        identities,
        summary["checks"],
        Redactor([KUBE_TOKEN, AWS_SECRET, SESSION_TOKEN]),
    )
    assert path == reports / f"evidence-{RUN_ID}.tar.gz"
    manifest, files = verify_bundle(
        path, [KUBE_TOKEN, AWS_SECRET, SESSION_TOKEN, "planted-config-token"]
    )
    assert manifest["run_id"] == RUN_ID
    assert manifest["identities"] == identities
    load = f"load/{slug(nodeid)}/step-1-weight-10"
    assert {
        "junit.xml",
        "summary.json",
        "report.html",
        "facts.json",
        f"diagnostics/000-{slug(nodeid)}.json",
        f"{load}/{LOCUST_STATS}_stats.csv",
        f"{load}/{LOCUST_STATS}_stats_history.csv",
        f"{load}/locust-master.log",
    } <= set(files)
    (request_log,) = [name for name in files if name.startswith(load) and name.endswith(".jsonl")]
    assert len(files[request_log].splitlines()) == len(result.records)
    assert MASK.encode() in files[f"diagnostics/000-{slug(nodeid)}.json"]
    assert not list(reports.glob("*.partial")), "the archive is written aside, then renamed"
    assert not artifacts_dir(reports, RUN_ID).parent.exists(), "packed artifacts leave reports/"
