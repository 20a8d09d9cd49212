"""The evidence bundle a sign-off keeps: ``reports/evidence-<run id>.tar.gz``.

One archive per run, written at its end whatever the outcome, holding what a person needs to
judge the run later without the cluster:

- ``junit.xml``, ``summary.json``, ``report.html`` as the run wrote them;
- ``diagnostics/`` — one JSON per failed check (clustergate/diagnostics.py);
- ``load/`` — the load phases' request logs, Locust's stats CSVs and logs (the run's
  artifacts directory, ``reports/artifacts/<run id>/``, removed once packed);
- ``facts.json`` — the cluster as found at the start: versions, nodes per node group, the
  add-ons' images, the EKS cluster and node groups, and the cluster config used;
- ``manifest.json`` — the sha256 and size of every other file, and who ran it: the Kubernetes
  identity (SelfSubjectReview where the API server has it, else the kubeconfig's user) and the
  AWS one (sts get-caller-identity).

Every file passes through the redactor (clustergate/redact.py) before it is hashed and packed,
so the manifest's checksums are those of what is in the archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config as BotoConfig
from kubernetes import client
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException

from clustergate.kube import Cluster, list_all
from clustergate.redact import Redactor

log = logging.getLogger("clustergate.evidence")

MANIFEST = "manifest.json"
#: The run's files for the bundle (load phases' logs, stats) live under this, per run id.
ARTIFACTS = "artifacts"
#: Each request to gather facts or identities may take this long.
REQUEST_TIMEOUT_S = 10.0
#: Every AWS call of the bundle: bounded, so a slow endpoint delays the bundle, never hangs it.
_BOUNDED = BotoConfig(
    connect_timeout=REQUEST_TIMEOUT_S, read_timeout=REQUEST_TIMEOUT_S, retries={"max_attempts": 2}
)
ADDON_NAMESPACE = "kube-system"


def artifacts_dir(reports_dir: Path, run_id: str) -> Path:
    return reports_dir / ARTIFACTS / run_id


def slug(nodeid: str) -> str:
    """A file name for a check: ``suites/dns/test_x.py::test_y[a]`` → ``dns-test_x-test_y-a``."""
    text = nodeid.removeprefix("suites/").replace(".py", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:150]


# --- what is gathered at the start of the run -------------------------------------------------


def kubernetes_identity(cluster: Cluster) -> dict[str, Any]:
    """Who the run is to the API server: SelfSubjectReview (authentication.k8s.io/v1, since
    1.28), else the kubeconfig context's user name (what the server knows is then unsaid)."""
    try:
        review = client.AuthenticationV1Api(cluster.api).create_self_subject_review(
            client.V1SelfSubjectReview(), _request_timeout=REQUEST_TIMEOUT_S
        )
        info = review.status.user_info
        return {
            "source": "SelfSubjectReview",
            "username": info.username,
            "uid": info.uid,
            "groups": list(info.groups or []),
        }
    except Exception as error:  # an old server or no permission: say so, use the kubeconfig
        why = f"{error.status} {error.reason}" if isinstance(error, ApiException) else str(error)
        return {
            "source": "kubeconfig",
            "username": _kubeconfig_user(cluster),
            "context": cluster.context,
            "self_subject_review": f"unavailable: {why[:200]}",
        }


def _kubeconfig_user(cluster: Cluster) -> str | None:
    try:
        contexts, _ = kubeconfig.list_kube_config_contexts(config_file=cluster.kubeconfig)
    except Exception:  # the run connected with it: reading it again cannot matter much
        return None
    for item in contexts:
        if item["name"] == cluster.context:
            return str(item.get("context", {}).get("user"))
    return None


def aws_identity(session: boto3.Session) -> dict[str, Any]:
    try:
        answer = session.client(
            "sts",
            config=_BOUNDED,
        ).get_caller_identity()
    except Exception as error:  # no credentials is a fact of the run, not a failure of it
        return {"source": "sts:GetCallerIdentity", "error": f"{type(error).__name__}: {error}"}
    return {
        "source": "sts:GetCallerIdentity",
        "account": answer.get("Account"),
        "arn": answer.get("Arn"),
        "user_id": answer.get("UserId"),
    }


def cluster_facts(
    cluster: Cluster, session: boto3.Session, cluster_name: str, config_path: str
) -> dict[str, Any]:
    """Versions, node groups, add-on images, the EKS view and the config used. What cannot be
    read is said under ``problems``; nothing here fails the run."""
    problems: list[str] = []
    facts: dict[str, Any] = {"gathered_at": datetime.now(UTC).isoformat()}

    def attempt(key: str, gather: Any) -> None:
        try:
            facts[key] = gather()
        except Exception as error:  # facts are evidence, never a reason to stop
            problems.append(f"{key}: {type(error).__name__}: {str(error)[:300]}")

    attempt("server_version", lambda: _server_version(cluster))
    attempt("node_groups", lambda: _node_groups(cluster))
    attempt("addon_images", lambda: _addon_images(cluster))
    attempt("eks", lambda: _eks(session, cluster_name))
    attempt("config", lambda: {"path": config_path, "content": _config(config_path)})
    facts["problems"] = problems
    return facts


def _server_version(cluster: Cluster) -> dict[str, Any]:
    info = cluster.version().get_code(_request_timeout=REQUEST_TIMEOUT_S)
    return {"git_version": info.git_version, "platform": info.platform}


def _node_groups(cluster: Cluster) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for node in list_all(cluster.core().list_node, _request_timeout=REQUEST_TIMEOUT_S):
        labels = node.metadata.labels or {}
        group = groups.setdefault(
            labels.get("eks.amazonaws.com/nodegroup", "-"),
            {"nodes": [], "kubelet_versions": set(), "instance_types": set(), "zones": set()},
        )
        group["nodes"].append(node.metadata.name)
        group["kubelet_versions"].add(node.status.node_info.kubelet_version)
        group["instance_types"].add(labels.get("node.kubernetes.io/instance-type", "-"))
        group["zones"].add(labels.get("topology.kubernetes.io/zone", "-"))
    return {
        name: {key: sorted(value) if isinstance(value, set) else value for key, value in g.items()}
        for name, g in sorted(groups.items())
    }


def _addon_images(cluster: Cluster) -> dict[str, list[str]]:
    apps = cluster.apps()
    images: dict[str, list[str]] = {}
    for kind, lister in (
        ("daemonset", apps.list_namespaced_daemon_set),
        ("deployment", apps.list_namespaced_deployment),
    ):
        for item in lister(ADDON_NAMESPACE, _request_timeout=REQUEST_TIMEOUT_S).items:
            containers = item.spec.template.spec.containers or []
            images[f"{kind}/{item.metadata.name}"] = [c.image for c in containers]
    return dict(sorted(images.items()))


def _eks(session: boto3.Session, cluster_name: str) -> dict[str, Any]:
    eks = session.client(
        "eks",
        config=_BOUNDED,
    )
    described = eks.describe_cluster(name=cluster_name)["cluster"]
    groups = {}
    for name in eks.list_nodegroups(clusterName=cluster_name).get("nodegroups", []):
        group = eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)["nodegroup"]
        groups[name] = {
            key: group.get(key)
            for key in ("version", "releaseVersion", "amiType", "capacityType", "status")
        } | {"scaling": group.get("scalingConfig"), "instance_types": group.get("instanceTypes")}
    return {
        "version": described.get("version"),
        "platform_version": described.get("platformVersion"),
        "status": described.get("status"),
        "nodegroups": groups,
    }


def _config(path: str) -> Any:
    return yaml.safe_load(Path(path).read_text())


# --- the bundle -------------------------------------------------------------------------------


@dataclass
class Bundle:
    """Files for the archive, each redacted, then hashed."""

    redactor: Redactor
    files: dict[str, bytes] = field(default_factory=dict)

    def add_text(self, name: str, text: str) -> None:
        self.files[name] = self.redactor.text(text).encode()

    def add_json(self, name: str, data: Any) -> None:
        self.add_text(
            name, json.dumps(self.redactor.data(data), indent=2, sort_keys=True, default=str)
        )

    def add_file(self, name: str, path: Path) -> None:
        if path.is_file():
            self.add_text(name, path.read_text(errors="replace"))

    def add_tree(self, prefix: str, root: Path) -> None:
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                self.add_file(f"{prefix}/{path.relative_to(root).as_posix()}", path)

    def manifest(self, run_id: str, identities: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "written_at": datetime.now(UTC).isoformat(),
            "identities": self.redactor.data(identities),
            "files": [
                {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                for name, data in sorted(self.files.items())
            ],
        }

    def write(self, path: Path, run_id: str, identities: dict[str, Any]) -> Path:
        """The archive at ``path`` (written aside, then renamed: never half a bundle)."""
        manifest = json.dumps(self.manifest(run_id, identities), indent=2).encode()
        partial = path.with_name(path.name + ".partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        top = f"evidence-{run_id}"
        with tarfile.open(partial, "w:gz") as archive:
            for name, data in [*sorted(self.files.items()), (MANIFEST, manifest)]:
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                archive.addfile(info, io.BytesIO(data))
        partial.replace(path)
        return path


def write_bundle(
    reports_dir: Path,
    run_id: str,
    facts: dict[str, Any],
    identities: dict[str, Any],
    checks: Iterable[dict[str, Any]],
    redactor: Redactor,
    junit: Path | None = None,
) -> Path:
    """Pack this run's reports, diagnostics, load artifacts and facts into the bundle."""
    bundle = Bundle(redactor)
    bundle.add_file("junit.xml", junit or reports_dir / "junit.xml")
    bundle.add_file("summary.json", reports_dir / "summary.json")
    bundle.add_file("report.html", reports_dir / "report.html")
    bundle.add_json("facts.json", facts)
    for index, check in enumerate(checks):
        if check.get("diagnostics"):
            name = f"diagnostics/{index:03d}-{slug(str(check['nodeid']))}.json"
            bundle.add_json(name, {"nodeid": check["nodeid"], **check["diagnostics"]})
    artifacts = artifacts_dir(reports_dir, run_id)
    bundle.add_tree("load", artifacts)
    path = bundle.write(reports_dir / f"evidence-{run_id}.tar.gz", run_id, identities)
    # The bundle holds them now; reports/ keeps one archive per run, not every request log.
    shutil.rmtree(artifacts, ignore_errors=True)
    with contextlib.suppress(OSError):  # other runs' artifacts may still be there
        artifacts.parent.rmdir()
    return path
