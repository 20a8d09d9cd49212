"""The command-line options of a clustergate run, and what makes a pytest run one.

This module is the ``pytest11`` entry point ``clustergate`` (pyproject.toml), as pytest-testinfra
registers its plugin: installed, it is loaded into every pytest run of the environment, before
pytest parses the command line, whichever directory the run starts from and whatever conftest.py
sits there. It stays light and inert in runs that are not clustergate's; in one that is (the ini
says ``clustergate = true``, as the checkout's pytest.ini does, or ``--target``, ``--kubeconfig``,
``--context``, ``--config`` or ``--sweep`` is given) it registers ``clustergate.plugin``, which
chooses the target and provides the fixtures, with the progress lines (``clustergate.progress``)
and the flaky marker (``clustergate.flaky``). ``-p no:clustergate`` leaves it all out.

``--kubeconfig PATH`` works as ``--kubeconfig=PATH`` does. pytest chooses its rootdir and ini
file from the command line's free arguments before it loads any plugin, so it takes PATH for a
test path, looks for an ini file beside it (``~/.kube/``) and misses the project's (its addopts,
testpaths and markers). Once the options are known the first hook that may end a run,
``pytest_cmdline_main``, starts the same command again in this process's place with every
clustergate value written ``--option=value``, which pytest then reads right from the start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: The options that take a value, which pytest takes for a test path when it follows a space.
VALUE_OPTIONS = (
    "--target",
    "--kubeconfig",
    "--context",
    "--config",
    "--locust-workers",
    "--history-dir",
    "--twin-nodes",
    "--twin-fault",
    "--reports-dir",
)
#: Giving one of these makes a run a clustergate run where the ini does not say so.
ACTIVATING = ("target", "kubeconfig", "context", "config", "sweep")
INI_KEY = "clustergate"


def joined(args: Sequence[str]) -> list[str] | None:
    """``args`` with each ``--option value`` of clustergate written ``--option=value``; None
    when there is none to rewrite. Nothing after ``--`` is an option."""
    rewritten: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            rewritten.extend(args[position:])
            break
        value = args[position + 1] if position + 1 < len(args) else None
        if arg in VALUE_OPTIONS and value is not None and not value.startswith("-"):
            rewritten.append(f"{arg}={value}")
            position += 2
        else:
            rewritten.append(arg)
            position += 1
    return rewritten if len(rewritten) != len(args) else None


def active(config: pytest.Config) -> bool:
    """Whether this pytest run is a clustergate run (``pytest --help`` never starts one)."""
    if config.option.help:
        return False
    return bool(config.getini(INI_KEY)) or any(config.getoption(name) for name in ACTIVATING)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    args = list(config.invocation_params.args)
    rewritten = joined(args)
    if rewritten is None:
        return
    argv = list(sys.orig_argv)
    start = len(argv) - len(args)
    if argv[start:] != args:
        # pytest.main(args) called from Python: there is no command line to start again.
        spaced = sorted({arg for arg in args if arg in VALUE_OPTIONS})
        raise pytest.UsageError(
            f"write {', '.join(f'{name}=VALUE' for name in spaced)} (with '=') when calling "
            "pytest.main() from Python"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [*argv[:start], *rewritten])


def pytest_configure(config: pytest.Config) -> None:
    if not active(config):
        return
    # Kubernetes and AWS load only in a clustergate run.
    from clustergate import flaky, plugin, progress

    for name, module in (
        ("clustergate.plugin", plugin),
        ("clustergate.progress", progress),
        ("clustergate.flaky", flaky),
    ):
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(module, name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_KEY,
        type="bool",
        default=False,
        help="clustergate: choose a target and provide its fixtures in this run",
    )
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
