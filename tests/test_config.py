"""The cluster config schema: the shipped example parses, and bad input names key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clustergate.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parents[1] / "examples" / "cluster.eks.yaml"


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_documented_example_parses_with_every_section() -> None:
    config = load_config(EXAMPLE)
    assert config.cluster.name == "prod-eks-1"
    assert config.irsa.mappings[0].must_allow[0].operation == "ListObjectsV2"
    assert config.cutover is not None
    assert config.cutover.driver.kind == "elbv2"
    assert [step.weight for step in config.cutover.steps] == [10, 25, 50, 100]
    assert config.runs.heartbeat_namespace == "kube-system"
    assert config.nodes.expected_taints[0].key == "dedicated"


def test_minimal_config_needs_only_the_cluster() -> None:
    config = parse_config({"cluster": {"name": "c", "region": "us-east-1"}})
    assert config.cutover is None
    assert config.dns.mode == "iptables"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["dns"].update(mdoe="ipvs"), "dns.mdoe: unknown key"),
        (
            lambda c: c["dns"].update(mode="nftables"),
            "dns.mode: Input should be 'iptables' or 'ipvs'",
        ),
        (lambda c: c.pop("cluster"), "cluster: required key is missing"),
        (
            lambda c: c["irsa"]["mappings"][0].update(role_arn="payments-api"),
            "irsa.mappings.0.role_arn: Value error, must be an IAM role ARN",
        ),
        (
            lambda c: c["cutover"]["steps"].reverse(),
            "cutover: Value error, steps must not go down, got weights [100, 50, 25, 10]",
        ),
        (
            lambda c: c["cutover"]["driver"].update(kind="istio"),
            "cutover.driver: Input tag 'istio' found using 'kind' does not match",
        ),
        (
            lambda c: c["timeouts"].update(drain_s=-5),
            "timeouts.drain_s: Input should be greater than 0",
        ),
        (
            lambda c: c["drain"].update(replicas=3, min_available=3),
            "drain: Value error, min_available must be below replicas",
        ),
        (
            lambda c: c["timeouts"].update(sweep_after_s=3600),
            "timeouts: Value error, sweep_after_s is gone: --sweep removes what dead runs left",
        ),
        (
            lambda c: c["runs"].update(heartbeat_s=1),
            "runs.heartbeat_s: Input should be greater than or equal to 3",
        ),
        (
            lambda c: c["nodes"]["expected_taints"].append({"key": "a", "efect": "NoSchedule"}),
            "nodes.expected_taints.1.efect: unknown key",
        ),
        (
            lambda c: c["nodes"].update(expected_cordoned="node-a"),
            "nodes.expected_cordoned: Input should be a valid tuple",
        ),
    ],
)
def test_bad_config_names_the_key_and_the_problem(change, expected: str) -> None:
    data = _example()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "cluster.yaml")
    message = str(caught.value)
    assert message.startswith("cluster.yaml is not a valid clustergate config:")
    assert expected in message


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "cluster.yaml"
    broken.write_text("cluster:\n  name: a\n   region: b\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line 3, column \d+"):
        load_config(broken)


def test_missing_file_and_non_mapping_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping at the top level"):
        load_config(listed)
