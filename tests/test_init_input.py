"""`clustergate init` without a cluster: bad input is one message and exit 4, and the pieces
that read the node-local-dns arguments and compare a config with a cluster, row by row."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from clustergate.cli import main
from clustergate.config import parse_config
from clustergate.config_writer import render
from clustergate.discover.cluster import Discovery
from clustergate.discover.cutover import Candidate
from clustergate.discover.dns import corefile_binds, local_ips
from clustergate.discover.drift import drift
from clustergate.discover.found import Found, Section

ROLE = "arn:aws:iam::111122223333:role/app"
LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/shop/1/2"


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        code = main(list(argv))
    except SystemExit as exited:  # argparse's usage errors
        code = exited.code
    assert code == 4
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_bad_input_is_one_message_and_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.yaml"
    assert "cannot read config" in _error(capsys, "init", "--check", f"--config={missing}")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [\n")
    out = f"--output={tmp_path / 'c.yaml'}"
    assert "is not YAML" in _error(capsys, "init", f"--kubeconfig={kubeconfig}", out)
    assert "does not exist" in _error(capsys, "init", f"--kubeconfig={missing}", out)
    assert "--output=FILE" in _error(capsys, "init", f"--kubeconfig={kubeconfig}")
    assert "--config=FILE" in _error(capsys, "init", "--check")
    assert "unrecognized arguments: --bogus" in _error(capsys, "init", "--bogus")
    assert not (tmp_path / "c.yaml").exists()


@pytest.mark.parametrize(
    ("args", "ips"),
    [
        (
            ["-localip", "169.254.20.10,10.100.0.10", "-conf", "/etc/Corefile"],
            ["169.254.20.10", "10.100.0.10"],
        ),
        (["--localip=169.254.20.10"], ["169.254.20.10"]),
        (["-conf", "/etc/Corefile"], []),
    ],
)
def test_localip_argument(args: list[str], ips: list[str]) -> None:
    assert local_ips(args) == ips


def test_corefile_binds_in_order_once_each() -> None:
    corefile = (
        "cluster.local:53 {\n    bind 169.254.20.10 10.100.0.10  # both\n}\n"
        ".:53 {\n    bind 169.254.20.10 10.100.0.10\n    forward . /etc/resolv.conf\n}\n"
    )
    assert corefile_binds(corefile) == ["169.254.20.10", "10.100.0.10"]


def _discovery(**changes: object) -> Discovery:
    values = {
        "cluster": {"name": "prod", "region": "eu-west-1", "kubernetes_version": "1.31"},
        "dns": {"nodelocal_ip": "169.254.20.10", "mode": "iptables"},
        "autoscaler": {
            "kind": "cluster-autoscaler",
            "namespace": "kube-system",
            "deployment": "cluster-autoscaler",
            "status_configmap": "cluster-autoscaler-status",
        },
    }
    sections = {
        key: Section(values={k: Found(v, f"{key} source") for k, v in items.items()})
        for key, items in values.items()
    }
    for key, value in changes.items():
        section, name = key.split("__")
        sections[section].values[name] = Found(value, f"{section} source")
    sections["irsa"] = Section(
        items=[
            {
                "namespace": Found("app", "sa"),
                "service_account": Found("app", "sa"),
                "role_arn": Found(ROLE, "ServiceAccount app/app annotation"),
            }
        ]
    )
    sections["node_groups"] = Section(
        items=[{"name": Found("general", "eks"), "asg": Found("eks-general-1", "eks asg")}]
    )
    weights = {"tg-old": 90, "tg-new": 10}
    candidate = Candidate("elbv2", LISTENER, weights, {}, "listener port 443")
    return Discovery(sections=sections, candidates=[candidate])


CONFIG = {
    "cluster": {"name": "prod", "region": "eu-west-1"},
    "irsa": {"mappings": [{"namespace": "app", "service_account": "app", "role_arn": ROLE}]},
    "node_groups": [{"name": "general"}],
    "cutover": {
        "endpoint": "https://shop.example.com",
        "driver": {
            "kind": "elbv2",
            "listener_arn": LISTENER,
            "target_groups": {"old": "tg-old", "new": "tg-new"},
        },
        "steps": [{"weight": 100}],
    },
}


def test_keys_left_to_run_time_and_equal_values_are_no_drift() -> None:
    assert drift(parse_config(CONFIG), _discovery()) == []


def test_each_changed_key_is_one_line_with_both_values_and_the_source() -> None:
    config = parse_config(
        {
            **CONFIG,
            "cluster": {**CONFIG["cluster"], "kubernetes_version": "1.30"},
            "node_groups": [{"name": "general", "asg": "eks-general-0"}, {"name": "gone"}],
        }
    )
    lines = [d.line() for d in drift(config, _discovery(dns__mode="ipvs"))]
    assert lines == [
        "cluster.kubernetes_version: config 1.30, cluster 1.31 (cluster source)",
        "dns.mode: config iptables, cluster ipvs (dns source)",
        "node_groups[general].asg: config eks-general-0, cluster eks-general-1 (eks asg)",
        "node_groups[gone]: config present, cluster (absent) (not found in eks:ListNodegroups)",
    ]


def test_a_weight_driver_the_account_no_longer_has_is_drift() -> None:
    config = parse_config(
        {
            **CONFIG,
            "cutover": {
                **CONFIG["cutover"],
                "driver": {
                    **CONFIG["cutover"]["driver"],
                    "target_groups": {"old": "tg-old", "new": "tg-x"},
                },
            },
        }
    )
    (line,) = [d.line() for d in drift(config, _discovery())]
    assert line.startswith("cutover.driver.target_groups: config ['tg-old', 'tg-x'], cluster")


def test_clustergate_is_a_console_script() -> None:
    (script,) = entry_points(group="console_scripts", name="clustergate")
    assert script.load() is main


def test_a_cluster_with_nothing_to_find_still_gets_a_valid_commented_config() -> None:
    discovery = _discovery()
    discovery.sections["dns"] = Section(notes=["No DaemonSet kube-system/node-local-dns: ..."])
    discovery.sections["irsa"] = Section(notes=["Add to each mapping ..."])
    discovery.sections["node_groups"] = Section()
    discovery.candidates = []
    text = render(discovery, "/home/me/.kube/config", "prod")
    config = parse_config(yaml.safe_load(text))
    assert config.irsa.mappings == ()
    assert config.node_groups == ()
    assert "# No DaemonSet kube-system/node-local-dns" in text
    assert "mappings: [] # no ServiceAccount carries eks.amazonaws.com/role-arn" in text
    assert "node_groups: [] # eks:ListNodegroups lists none" in text
    assert "# No ALB listener forwards by weight" in text
