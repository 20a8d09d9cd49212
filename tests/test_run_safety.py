"""Nothing a run creates outlives it: teardown on Ctrl-C, and the sweep after a kill."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from clustergate.kube import connect
from clustergate.runctx import CORDONED_BY, selector

ROOT = Path(__file__).parents[1]
HOLDING_CHECK = "tests/e2e_checks/check_holds_objects.py"


def _start_holding_run(twin) -> subprocess.Popen:
    process = subprocess.Popen(
        twin.command("-o", "python_files=check_*.py", "-s", "-p", "no:logging", HOLDING_CHECK),
        cwd=ROOT,
        env=twin.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if "HOLDING" in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the holding check never started:\n" + "".join(seen[-40:]))


def _leftovers(cluster) -> dict[str, list[str]]:
    core = cluster.core()
    namespaces = [
        ns.metadata.name
        for ns in core.list_namespace(label_selector=selector()).items
        if ns.status.phase != "Terminating"
    ]
    configmaps = [
        f"{cm.metadata.namespace}/{cm.metadata.name}"
        for cm in core.list_config_map_for_all_namespaces(label_selector=selector()).items
    ]
    cordoned = [
        node.metadata.name
        for node in core.list_node().items
        if node.spec.unschedulable or CORDONED_BY in (node.metadata.annotations or {})
    ]
    return {"namespaces": namespaces, "configmaps": configmaps, "cordoned": cordoned}


def _wait_clean(cluster, timeout_s: float = 30) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = _leftovers(cluster)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_ctrl_c_tears_down_everything_the_run_made(twin) -> None:
    cluster = connect(str(twin.kubeconfig), None)
    process = _start_holding_run(twin)
    assert any(_leftovers(cluster).values()), "the run should hold objects while it runs"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert _wait_clean(cluster) == {"namespaces": [], "configmaps": [], "cordoned": []}, output


def test_sweep_removes_what_a_killed_run_left(twin) -> None:
    cluster = connect(str(twin.kubeconfig), None)
    process = _start_holding_run(twin)
    process.kill()
    process.wait(timeout=30)
    left = _leftovers(cluster)
    assert left["namespaces"], f"a killed run leaves its namespace behind: {left}"
    assert left["cordoned"], f"a killed run leaves its cordon behind: {left}"
    swept = twin.pytest("--sweep", "--sweep-older-than", "0")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "sweep done" in swept.stdout + swept.stderr
    assert _wait_clean(cluster) == {"namespaces": [], "configmaps": [], "cordoned": []}
