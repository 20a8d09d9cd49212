"""Bad input gets one clear error and a non-zero exit, never fifty failures or a traceback.

Each case runs the suites' pytest against a running twin, as a user would against a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

USAGE_ERROR = 4


def _assert_one_clear_error(result, *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == USAGE_ERROR, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for fragment in fragments:
        assert fragment in output, output[-3000:]
    assert not re.search(r"\d+ (passed|failed|error)", output), "no check may run"


def test_unknown_context_names_the_contexts_there_are(twin) -> None:
    result = twin.pytest("-m", "gate", "--context", "prod-typo")
    _assert_one_clear_error(
        result, "has no context 'prod-typo'", "clustergate-twin, clustergate-twin-viewer"
    )


def test_unreachable_server_says_it_cannot_reach_it(twin, tmp_path: Path) -> None:
    kubeconfig = yaml.safe_load(twin.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    moved = tmp_path / "kubeconfig"
    moved.write_text(yaml.safe_dump(kubeconfig))
    result = twin.pytest("-m", "gate", "--kubeconfig", str(moved))
    _assert_one_clear_error(result, "cannot reach the API server at https://127.0.0.1:9")


def test_token_without_permission_names_each_missing_verb(twin) -> None:
    result = twin.pytest("-m", "gate", "--context", "clustergate-twin-viewer")
    _assert_one_clear_error(
        result,
        "lack",
        "create namespaces (core)",
        "create pods (core)",
        "Apply deploy/rbac.yaml",
    )
    assert "list pods (core)" not in result.stdout + result.stderr


def test_malformed_config_names_the_key(twin, tmp_path: Path) -> None:
    config = yaml.safe_load(twin.config.read_text())
    config["dns"]["slo"]["p99"] = 50
    broken = tmp_path / "cluster.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = twin.pytest("-m", "gate", "--config", str(broken))
    _assert_one_clear_error(result, "dns.slo.p99: unknown key")
