"""clustergate as an installed pytest plugin (the ``pytest11`` entry point): its options are known
before pytest parses the command line, so ``--kubeconfig PATH`` with a space works as ``=`` does,
a team runs clustergate's fixtures from a directory of its own beside its own conftest.py, and
pytest runs that are not clustergate's do not see it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clustergate.options import VALUE_OPTIONS, joined
from tests.conftest import ROOT, RunningTwin

TEAM_CONFTEST = """
import pytest


@pytest.fixture
def team_label():
    return "team-a"
"""
TEAM_TEST = """
def test_the_team_sees_the_cluster(cluster, run, team_label):
    nodes = cluster.core().list_node().items
    print("TEAM", team_label, len(nodes), run.namespace)
    assert nodes
"""
PLAIN_TEST = """
def test_asks_for_the_cluster(cluster):
    pass
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--kubeconfig", "/k", "-m", "gate"], ["--kubeconfig=/k", "-m", "gate"]),
        (["--kubeconfig=/k", "--context", "prod"], ["--kubeconfig=/k", "--context=prod"]),
        (["--twin-fault", "a", "--twin-fault", "b"], ["--twin-fault=a", "--twin-fault=b"]),
        (["--", "--kubeconfig", "x"], None),
        (["--kubeconfig=/k", "--sweep"], None),
        (["-q", "--kubeconfig"], None),
        (["--context", "-q"], None),
    ],
)
def test_each_option_value_after_a_space_is_joined_to_its_option(
    args: list[str], expected: list[str] | None
) -> None:
    assert joined(args) == expected


def test_the_options_joined_are_the_clustergate_options_that_take_a_value() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    group = shown.split("clustergate:\n", 1)[1].split("\n\n", 1)[0]
    taking_a_value = set(re.findall(r"^\s+(--[a-z-]+)=", group, re.MULTILINE))
    assert taking_a_value == set(VALUE_OPTIONS)


def test_a_pytest_run_that_is_not_clustergates_has_none_of_its_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN_TEST)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:locust"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "fixture 'cluster' not found" in ran.stdout, ran.stdout


def test_pytest_main_from_python_is_asked_for_the_joined_spelling(tmp_path: Path) -> None:
    # No command line to start again: pytest.main() was called with the list it was given.
    called = "import pytest; raise SystemExit(pytest.main(['--kubeconfig', 'k', '--co']))"
    ran = subprocess.run(
        [sys.executable, "-c", called],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 4, ran.stdout + ran.stderr
    assert "write --kubeconfig=VALUE (with '=') when calling pytest.main()" in ran.stderr


def _as_typed(twin: RunningTwin, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """pytest as a person types it: no -c, no --rootdir, every value after a space."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "--kubeconfig",
            str(twin.kubeconfig),
            "--config",
            str(twin.config),
            "--reports-dir",
            str(twin.state_dir / "reports-plugin"),
            *args,
        ],
        cwd=cwd,
        env=twin.environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_kubeconfig_outside_the_checkout_after_a_space_keeps_the_project_ini(
    twin: RunningTwin,
) -> None:
    # Read as a test path, the kubeconfig would root the run beside it (the twin's state
    # directory): no pytest.ini, so no testpaths, markers or addopts, and all of tests/ collected.
    collected = _as_typed(twin, "-m", "gate and irsa", "--co", "-o", "log_cli=false", cwd=ROOT)
    output = collected.stdout + collected.stderr
    assert collected.returncode == 0, output
    assert f"rootdir: {ROOT}\n" in output, output
    assert "configfile: pytest.ini" in output, output
    assert "testpaths: suites" in output, output
    assert "<Dir tests>" not in output, output
    assert "<Module test_irsa_pods.py>" in output, output


def test_a_team_runs_the_fixtures_from_its_own_directory_with_its_own_conftest(
    twin: RunningTwin, tmp_path: Path
) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(TEAM_CONFTEST))
    (tmp_path / "test_team.py").write_text(textwrap.dedent(TEAM_TEST))
    ran = _as_typed(twin, "-s", "-p", "no:cacheprovider", "-p", "no:locust", cwd=tmp_path)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert re.search(r"TEAM team-a \d+ \S+", output), output
    assert f"rootdir: {tmp_path}" in output, output
