"""Fixtures for clustergate's own tests: a whole twin, started as a user would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@dataclass(frozen=True)
class RunningTwin:
    state_dir: Path
    kubeconfig: Path
    config: Path
    env: dict[str, str]

    def pytest(
        self, *args: str, timeout: float = 300, **popen: object
    ) -> subprocess.CompletedProcess:
        """Run the suites' pytest against this twin as against a live cluster."""
        return subprocess.run(
            self.command(*args),
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **popen,
        )

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pytest.ini"),
            "--rootdir",
            str(ROOT),
            "-p",
            "no:randomly",
            "--kubeconfig",
            str(self.kubeconfig),
            "--config",
            str(self.config),
            "--reports-dir",
            str(self.state_dir / "reports"),
            f"--junitxml={self.state_dir / 'reports' / 'junit.xml'}",
            *args,
        ]

    def environment(self) -> dict[str, str]:
        """This process's environment without what pytest and xdist set in it (the suites'
        run must not think it is one of this run's workers) plus the twin's AWS settings."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        return {**inherited, **self.env}


def start_twin(state_dir: Path, *extra: str) -> RunningTwin:
    command = [
        sys.executable,
        "-m",
        "clustergate.twin",
        "up",
        "--state-dir",
        str(state_dir),
        *extra,
    ]
    started = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"twin did not start: {started.stderr}")
    env = json.loads((state_dir / "aws-env.json").read_text())
    return RunningTwin(state_dir, state_dir / "kubeconfig", state_dir / "cluster.yaml", env)


def stop_twin(state_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "clustergate.twin", "down", "--state-dir", str(state_dir)],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTwin]:
    """A healthy 3-node twin shared by the tests that only read or clean up after themselves."""
    state_dir = tmp_path_factory.mktemp("twin")
    running = start_twin(state_dir)
    try:
        yield running
    finally:
        stop_twin(state_dir)
