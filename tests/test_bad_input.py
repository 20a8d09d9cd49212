"""Every bad input gets one message, printed once, and exit code 4, with no traceback.

Each test runs pytest as a person types it, from the checkout's root, once with
``--kubeconfig=FILE`` and once with ``--kubeconfig FILE``. Inputs that fail before a request
need no server (a closed port stands for an unreachable one); a rejected token, missing
permissions and the AWS identity need an answering API server and AWS: the shared twin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from clustergate import preflight
from tests.conftest import ROOT, RunningTwin

EXAMPLE_CONFIG = ROOT / "examples" / "cluster.eks.yaml"
#: A port nothing listens on: connection refused at once.
CLOSED = "https://127.0.0.1:1"
#: --option=value and --option value.
FORMS = ("joined", "spaced")
#: Variables that would give boto3 credentials by another way than the ones a test sets.
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def _kubeconfig(server: str = CLOSED, **user: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c1", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u1", "user": user or {"token": "t"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "c1", "user": "u1"}}],
        "current-context": "prod",
    }


def _option(name: str, value: Path | str, form: str) -> list[str]:
    return [f"--{name}={value}"] if form == "joined" else [f"--{name}", str(value)]


def _run(
    kubeconfig: Path,
    config: Path,
    form: str,
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *_option("kubeconfig", kubeconfig, form),
            *_option("config", config, form),
            *_option("reports-dir", tmp_path / "reports", form),
            "-m",
            "gate",
            *extra,
        ],
        cwd=ROOT,
        env=env if env is not None else inherited,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_told_once(
    ran: subprocess.CompletedProcess[str], *expected: str, where: Path | None = None
) -> None:
    """Exit code 4, one error line saying each of ``expected`` once (and the file at fault)."""
    output = ran.stdout + ran.stderr
    assert ran.returncode == 4, output
    for text in expected:
        assert output.count(text) == 1, f"{text!r} should be printed once:\n{output}"
    if where is not None:
        assert str(where) in output, output
    assert output.count("ERROR: ") == 1, output
    for noise in ("Traceback", "INTERNALERROR", "_pytest.outcomes.Exit", "!!!"):
        assert noise not in output, output


def _write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize(
    ("name", "content", "context", "expected"),
    [
        (
            "not-yaml",
            "clusters: [\n  - name: c1\n  bad",
            None,
            "is not YAML (line 2, column 3): expected the node content",
        ),
        ("not-a-kubeconfig", {"server": CLOSED}, None, "is YAML but not a kubeconfig"),
        (
            "no-current-context",
            {**_kubeconfig(), "current-context": ""},
            None,
            "has no current-context and no --context was given; its contexts are: prod",
        ),
        ("no-such-context", _kubeconfig(), "staging", "has no context 'staging' (--context)"),
        (
            "missing-certificate",
            {
                **_kubeconfig(),
                "clusters": [
                    {
                        "name": "c1",
                        "cluster": {"server": CLOSED, "certificate-authority": "gone.crt"},
                    }
                ],
            },
            None,
            "clusters[c1].cluster.certificate-authority names gone.crt, which does not exist",
        ),
        (
            "failing-exec-plugin",
            _kubeconfig(
                exec={
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": "sh",
                    "args": ["-c", "echo 'token for cluster x expired' >&2; exit 3"],
                }
            ),
            None,
            "failed: exec: process returned 3. token for cluster x expired.",
        ),
        ("unreachable-server", _kubeconfig(), None, f"cannot reach the API server at {CLOSED}"),
    ],
)
def test_a_bad_kubeconfig_is_told_once(
    name: str, content: object, context: str | None, expected: str, form: str, tmp_path: Path
) -> None:
    kubeconfig = _write(tmp_path / name, content)
    extra = _option("context", context, form) if context else []
    ran = _run(kubeconfig, EXAMPLE_CONFIG, form, tmp_path, *extra)
    assert_told_once(ran, expected, where=kubeconfig)


def test_a_malformed_config_file_is_told_once_naming_the_key(form: str, tmp_path: Path) -> None:
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["timeouts"]["drian_s"] = config["timeouts"].pop("drain_s")
    bad = _write(tmp_path / "cluster.yaml", config)
    ran = _run(_write(tmp_path / "kubeconfig", _kubeconfig()), bad, form, tmp_path)
    assert_told_once(
        ran, f"{bad} is not a valid clustergate config:", "timeouts.drian_s: unknown key"
    )


def test_an_expired_token_is_told_once(twin: RunningTwin, form: str, tmp_path: Path) -> None:
    kubeconfig = yaml.safe_load(twin.kubeconfig.read_text())
    for user in kubeconfig["users"]:
        user["user"]["token"] = "expired-token"
    expired = _write(tmp_path / "kubeconfig", kubeconfig)
    ran = _run(expired, twin.config, form, tmp_path, env=twin.environment())
    assert_told_once(
        ran, "rejected the credentials (401 Unauthorized): the token is expired", where=expired
    )


def test_missing_aws_credentials_are_told_once(
    twin: RunningTwin, form: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in twin.environment().items() if k not in AWS_CREDENTIAL_VARIABLES}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    ran = _run(twin.kubeconfig, twin.config, form, tmp_path, env=env)
    assert_told_once(ran, "no AWS credentials: Unable to locate credentials.")


def test_aws_credentials_of_another_account_are_told_once(
    twin: RunningTwin, form: str, tmp_path: Path
) -> None:
    config = yaml.safe_load(twin.config.read_text())
    config["cluster"]["account_id"] = "111122223333"
    other = _write(tmp_path / "cluster.yaml", config)
    ran = _run(twin.kubeconfig, other, form, tmp_path, env=twin.environment())
    assert_told_once(
        ran,
        f"but {other} says cluster.account_id: '111122223333'",
        "the AWS credentials are for account ",
    )


def test_a_token_without_the_permissions_is_told_once_naming_each_missing_verb(
    twin: RunningTwin, form: str, tmp_path: Path
) -> None:
    viewer = _option("context", "clustergate-twin-viewer", form)
    ran = _run(twin.kubeconfig, twin.config, form, tmp_path, *viewer, env=twin.environment())
    assert_told_once(
        ran,
        "lack",
        "this profile needs clustergate-gate",
        "ClusterRole clustergate-gate grants create namespaces (core)",
        "create rolebindings (rbac.authorization.k8s.io)",
        "bind clusterroles/clustergate-run (rbac.authorization.k8s.io)",
        "Role clustergate-gate-heartbeat in kube-system grants create leases "
        "(coordination.k8s.io) in namespace kube-system",
        "Apply deploy/rbac.yaml",
    )
    assert "list pods (core)" not in ran.stdout + ran.stderr


def test_aws_credentials_of_the_configured_account_pass_the_preflight(
    twin: RunningTwin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in twin.env.items():
        monkeypatch.setenv(name, value)
    session = boto3.Session(region_name=twin.env["AWS_REGION"])
    caller = session.client("sts").get_caller_identity()
    account = caller["Account"]
    assert preflight.check_aws(session, None, account, "cluster.yaml") == caller["Arn"]
    assert preflight.check_aws(session, None, None, "cluster.yaml") == caller["Arn"]
    with pytest.raises(preflight.PreflightError, match=f"are for account {account} "):
        preflight.check_aws(session, None, "111122223333", "cluster.yaml")
