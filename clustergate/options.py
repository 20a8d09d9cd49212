"""The command-line options of a clustergate run.

A plugin (loaded by ``-p clustergate.options`` in pytest.ini) rather than part of conftest.py:
pytest reads options before it finds conftest files, and a value such as
``--kubeconfig ~/.kube/config`` would otherwise be taken for a test path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clustergate")
    group.addoption(
        "--target",
        choices=("twin", "live"),
        help="default: live when --kubeconfig or --context is given, else the local twin",
    )
    group.addoption("--kubeconfig", help="kubeconfig of the live cluster (default $KUBECONFIG)")
    group.addoption("--context", help="kubeconfig context of the live cluster")
    group.addoption("--config", help="cluster config YAML: what the cluster is expected to be")
    group.addoption(
        "--allow-disruptive",
        action="store_true",
        help="run disruptive checks (drains, upgrades, scaling, weight changes)",
    )
    group.addoption(
        "--sweep",
        action="store_true",
        help="put back and delete everything runs that are no longer alive left (weights, "
        "cordons, namespaces, leases), whatever its age, and exit",
    )
    group.addoption(
        "--observe-upgrade",
        action="store_true",
        help="upgrade suite: follow the node-group update already in progress, start none",
    )
    group.addoption(
        "--locust-workers",
        type=int,
        default=0,
        metavar="N",
        help="cutover: N local Locust worker processes per load phase (master/worker mode)",
    )
    group.addoption(
        "--history-dir",
        metavar="DIR",
        help="nightly history: earlier runs' summaries this run is compared with "
        "(default: reports.history_dir of the config)",
    )
    group.addoption("--twin-nodes", type=int, default=3, help="nodes of the local twin")
    group.addoption(
        "--twin-fault",
        action="append",
        default=[],
        metavar="NAME",
        help="start the twin with this fault (repeatable)",
    )
    group.addoption(
        "--keep-on-failure",
        action="store_true",
        help="keep a failed check's namespace and objects to look at (remove later: --sweep)",
    )
    group.addoption("--reports-dir", default=str(ROOT / "reports"), help="where results go")
