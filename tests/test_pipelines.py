"""The shipped pipelines are valid and run what the README documents, as the gate role.

Nothing here runs GitHub Actions or a Job (neither can run on this machine): the files are
parsed and checked against deploy/rbac.yaml and README.md, which is what keeps them in step.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config

ROOT = Path(__file__).parents[1]
WORKFLOW = ROOT / "examples" / "pipeline.github-actions.yml"
JOB = ROOT / "examples" / "gate-job.yaml"


def _readme_gate_command() -> str:
    found = re.search(r"^pytest -m gate .*$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert found, "README.md shows no `pytest -m gate` command"
    return found.group(0)


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_workflow_assumes_its_role_with_oidc_and_runs_the_readmes_gate() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"]["id-token"] == "write", "OIDC needs id-token: write"
    steps = _steps()
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-"))
    assert aws["with"]["role-to-assume"].startswith("arn:aws:iam::")
    runs = [s["run"] for s in steps if "run" in s]
    assert any(run.startswith("aws eks update-kubeconfig --name") for run in runs)
    gate = next(run for run in runs if run.startswith("pytest "))
    assert shlex.split(gate) == shlex.split(_readme_gate_command())
    uploaded = {
        s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact")
    }
    assert {"reports/junit.xml", "reports/"} <= uploaded
    assert all(
        s.get("if") == "always()"
        for s in steps
        if s.get("uses", "").startswith("actions/upload-artifact")
    ), "reports must be kept when the gate fails"


def test_the_job_runs_the_gate_as_the_service_account_bound_to_clustergate_gate() -> None:
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(JOB.read_text())}
    job = documents["Job"]
    pod = job["spec"]["template"]["spec"]
    account = (job["metadata"]["namespace"], pod["serviceAccountName"])
    rbac = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))
    gate_binding = next(
        doc
        for doc in rbac
        if doc["kind"] == "ClusterRoleBinding" and doc["roleRef"]["name"] == "clustergate-gate"
    )
    bound = {
        (s.get("namespace"), s["name"])
        for s in gate_binding["subjects"]
        if s["kind"] == "ServiceAccount"
    }
    assert account in bound, f"{account} is not bound to clustergate-gate in deploy/rbac.yaml"
    disruptive = next(
        doc
        for doc in rbac
        if doc["kind"] == "ClusterRoleBinding"
        and doc["roleRef"]["name"] == "clustergate-disruptive"
    )
    assert account not in {(s.get("namespace"), s["name"]) for s in disruptive["subjects"]}
    args = pod["containers"][0]["args"]
    assert args[:2] == ["-m", "gate"]
    assert job["spec"]["backoffLimit"] == 0, "a failed gate must not be retried into a pass"


def test_the_jobs_kubeconfig_reads_the_projected_service_account_token(tmp_path: Path) -> None:
    configmap = next(d for d in yaml.safe_load_all(JOB.read_text()) if d["kind"] == "ConfigMap")
    path = tmp_path / "kubeconfig"
    path.write_text(configmap["data"]["kubeconfig"])
    _, current = config.list_kube_config_contexts(config_file=str(path))
    assert current["name"] == "in-cluster"
    user = yaml.safe_load(path.read_text())["users"][0]["user"]
    assert user == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
    mounts = {
        m["mountPath"]
        for m in next(d for d in yaml.safe_load_all(JOB.read_text()) if d["kind"] == "Job")["spec"][
            "template"
        ]["spec"]["containers"][0]["volumeMounts"]
    }
    assert "/etc/clustergate" in mounts


def test_the_runner_image_sits_beside_the_probes_and_carries_the_suites() -> None:
    dockerfile = (ROOT / "runner" / "Dockerfile").read_text()
    assert (ROOT / "probe" / "Dockerfile").is_file()
    for copied in ("clustergate", "suites", "pytest.ini"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", dockerfile, re.MULTILINE), copied
    assert "'.[runner]'" in dockerfile
