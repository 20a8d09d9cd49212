"""A check used by tests/test_run_safety.py: it creates labelled objects and a cordon, then
waits to be interrupted. Collected only when named explicitly (python_files=check_*.py)."""

from __future__ import annotations

from kubernetes import client

from clustergate import nodes
from clustergate.wait import poll_until


def test_holds_objects_until_interrupted(cluster, run) -> None:
    core = cluster.core()
    core.create_namespaced_config_map(
        run.namespace, client.V1ConfigMap(metadata=run.metadata("held"), data={"a": "b"})
    )
    nodes.cordon(run, core.list_node().items[0].metadata.name)
    print("HOLDING", flush=True)
    poll_until(lambda: False, bool, what="an interrupt", timeout_s=120, interval_s=0.5)
