"""The gate runs as ClusterRole clustergate-gate and is proven read-only; disruption with that
identity is refused by the preflight, naming what is missing.

deploy/rbac.yaml is applied to the shared twin with kubectl as an operator applies it, the
IRSA probe role is bound in each mapped namespace, and the twin issues the ServiceAccount's
token (``python -m clustergate.twin kubeconfig --as-role``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clustergate.kube import connect
from clustergate.preflight import prove_read_only

ROOT = Path(__file__).parents[1]
USAGE_ERROR = 4


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _irsa_probe_bindings(config: Path) -> str:
    namespaces = sorted(
        {m["namespace"] for m in yaml.safe_load(config.read_text())["irsa"]["mappings"]}
    )
    return yaml.safe_dump_all(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "clustergate-irsa-probe", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "clustergate-irsa-probe",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "clustergate-gate", "namespace": "clustergate"}
            ],
        }
        for namespace in namespaces
    )


@pytest.fixture(scope="module")
def gate_kubeconfig(twin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _kubectl(twin.kubeconfig, "apply", "-f", str(ROOT / "deploy" / "rbac.yaml"))
    _kubectl(twin.kubeconfig, "apply", "-f", "-", stdin=_irsa_probe_bindings(twin.config))
    output = tmp_path_factory.mktemp("gate-role") / "kubeconfig"
    issued = subprocess.run(
        [sys.executable, "-m", "clustergate.twin", "kubeconfig", "--state-dir", str(twin.state_dir),
         "--as-role", "clustergate-gate", "--output", str(output)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert "system:serviceaccount:clustergate:clustergate-gate" in issued.stdout
    return output


def test_the_gate_passes_as_clustergate_gate_and_is_proven_read_only(
    twin, gate_kubeconfig: Path
) -> None:
    result = twin.pytest(
        "-m", "gate", "--kubeconfig", str(gate_kubeconfig), "-p", "no:cacheprovider"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "read-only proven: the identity cannot patch nodes (core)" in output
    assert "delete pods (core) in namespace kube-system" in output


def test_a_disruptive_check_as_clustergate_gate_is_refused_naming_the_missing_verbs(
    twin, gate_kubeconfig: Path
) -> None:
    result = twin.pytest("-m", "drain", "--kubeconfig", str(gate_kubeconfig))
    output = result.stdout + result.stderr
    assert result.returncode == USAGE_ERROR, output[-4000:]
    assert "Traceback" not in output
    for fragment in (
        "this profile needs clustergate-disruptive and clustergate-gate",
        "ClusterRole clustergate-disruptive grants",
        "patch nodes (core)",
        "create pods/eviction (core)",
        "create leases (coordination.k8s.io)",
    ):
        assert fragment in output, output[-4000:]
    assert " passed" not in output, "no check may run"


def test_an_admin_identity_is_not_proven_read_only(twin) -> None:
    proof = prove_read_only(connect(str(twin.kubeconfig), None))
    assert not proof.proven
    assert "patch nodes (core)" in proof.allowed
    assert proof.describe().startswith("NOT read-only: the identity can patch nodes (core)")
