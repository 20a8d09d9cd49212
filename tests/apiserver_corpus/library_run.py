"""Run clustergate's own preflight, paging, budget and drain code against a real kube-apiserver.

    python -m tests.apiserver_corpus.library_run --kube-apiserver PATH --etcd PATH

starts the two binaries as the recorder does (record.py) and prints what each piece of the
library did there, as JSON. The corpus checks the twin's answers request by request; this checks
the library's own sequences (a preflight's access reviews, a pager meeting an expired token, a
drain meeting a budget) against the real server once, by hand, for a person to read.

kube-apiserver runs alone, so three stand-ins do what controllers and a kubelet would, through the
API and nothing else: the kubelet confirms a deleted pod's termination (delete with grace 0) and
reports new pods Ready; the ReplicaSet controller replaces an evicted pod on another node; the
disruption controller writes the budget's status from the pods it selects.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from clustergate import preflight
from clustergate.budgets import find_blocking_budgets
from clustergate.drain import DrainError, DrainOptions, drain_node
from clustergate.kube import Cluster, connect, list_all
from tests.apiserver_corpus.cases import UNPRIVILEGED, namespace
from tests.apiserver_corpus.record import servers
from tests.apiserver_corpus.wire import Wire

NAMESPACE = "library-run"
APP = {"app": "web"}
#: The budget of the drained pods: two of three must stay up.
MIN_AVAILABLE = 2
CONFIGMAPS = 1203


def kubeconfig(wire: Wire, token: str, folder: Path, name: str) -> Path:
    path = folder / f"{name}.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "real",
                        "cluster": {"server": wire.url, "certificate-authority": wire.ca_file},
                    }
                ],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [{"name": name, "context": {"cluster": "real", "user": name}}],
                "current-context": name,
            }
        )
    )
    return path


def node(wire: Wire, name: str) -> None:
    wire.send("POST", "/api/v1/nodes", {"metadata": {"name": name, "labels": {"pool": "a"}}})


def pod(wire: Wire, name: str, node_name: str, owner: dict[str, Any]) -> None:
    body = {
        "metadata": {"name": name, "labels": APP, "ownerReferences": [owner]},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}],
        },
    }
    made = wire.send("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body)
    if made.status != 201:
        raise RuntimeError(f"pod {name} not created: {made.status} {made.body}")


class StandIns(threading.Thread):
    """The kubelet, the ReplicaSet controller and the disruption controller, as far as a drain
    needs them, every 0.2 s until stopped."""

    def __init__(self, wire: Wire, owner: dict[str, Any], replicas: int) -> None:
        super().__init__(daemon=True)
        self.wire, self.owner, self.replicas = wire, owner, replicas
        self.stopped = threading.Event()
        self.made = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.tick()
            except Exception as error:  # reported, not raised: the drain's outcome is the result
                self.errors.append(repr(error))

    def tick(self) -> None:
        pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        pods = self.wire.send("GET", pods_path).field("items") or []
        for item in pods:
            meta = item["metadata"]
            if meta.get("deletionTimestamp"):
                self.wire.send("DELETE", f"{pods_path}/{meta['name']}", {"gracePeriodSeconds": 0})
            elif not (item.get("status") or {}).get("conditions"):
                item["status"] = {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
                self.wire.send("PUT", f"{pods_path}/{meta['name']}/status", item)
        live = [item for item in pods if not item["metadata"].get("deletionTimestamp")]
        for _ in range(self.replicas - len(live)):
            self.made += 1
            pod(self.wire, f"web-new-{self.made}", "node-b", self.owner)
        ready = [
            item
            for item in live
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
        ]
        budget_path = f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/web"
        budget = self.wire.send("GET", budget_path).body
        names = {item["metadata"]["name"] for item in live}
        disrupted = {
            name: at
            for name, at in ((budget.get("status") or {}).get("disruptedPods") or {}).items()
            if name in names
        }
        healthy = len([item for item in ready if item["metadata"]["name"] not in disrupted])
        budget["status"] = {
            "observedGeneration": budget["metadata"].get("generation", 1),
            "currentHealthy": healthy,
            "desiredHealthy": MIN_AVAILABLE,
            "expectedPods": self.replicas,
            "disruptionsAllowed": max(0, healthy - MIN_AVAILABLE),
            "disruptedPods": disrupted,
        }
        self.wire.send("PUT", f"{budget_path}/status", budget)


def run_preflight(admin: Cluster, nobody: Cluster) -> dict[str, Any]:
    wanted = preflight.required_permissions(["drain"], disruptive=True)
    seen: dict[str, Any] = {"permissions_checked": len(wanted)}
    seen["admin"] = {"version": preflight.check_cluster(admin, wanted)}
    try:
        preflight.check_cluster(nobody, wanted)
        seen["unprivileged"] = "passed (wrong: it holds no permission)"
    except preflight.PreflightError as error:
        seen["unprivileged"] = str(error)
    return seen


def run_paging(wire: Wire, cluster: Cluster) -> dict[str, Any]:
    for index in range(CONFIGMAPS):
        wire.send(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/configmaps",
            {"metadata": {"name": f"c{index:04d}"}},
        )
    core = cluster.core()
    calls: list[str] = []

    def paged(**kwargs: Any) -> Any:
        calls.append("continue" if kwargs.get("_continue") else "first")
        try:
            return core.list_namespaced_config_map(NAMESPACE, **kwargs)
        except client.ApiException as error:
            calls.append(f"answered {error.status}")
            raise

    whole = list_all(paged, page_size=500)
    calls_whole = list(calls)
    calls.clear()

    def compacting(**kwargs: Any) -> Any:
        page = paged(**kwargs)
        if len(calls) == 1:
            # A write first: a compaction keeps the revision it is made at, the first page's.
            wire.send(
                "POST",
                f"/api/v1/namespaces/{NAMESPACE}/configmaps",
                {"metadata": {"name": "written-between-pages"}},
            )
            wire.compact()
        return page

    expired = list_all(compacting, page_size=500)
    return {
        "configmaps_made": CONFIGMAPS,
        "paged": {"items": len(whole), "calls": calls_whole},
        "token_expired_after_first_page": {"items": len(expired), "calls": calls},
    }


def run_drain(wire: Wire, cluster: Cluster) -> dict[str, Any]:
    for name in ("node-a", "node-b"):
        node(wire, name)
    rs = wire.send(
        "POST",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": APP},
                "template": {
                    "metadata": {"labels": APP},
                    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        },
    ).body
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": rs["metadata"]["uid"],
        "controller": True,
    }
    wire.send(
        "POST",
        f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": MIN_AVAILABLE, "selector": {"matchLabels": APP}},
        },
    )
    wire.send(
        "POST",
        f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets",
        {
            "metadata": {"name": "frozen"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "db"}}},
        },
    )
    for index in range(3):
        pod(wire, f"web-{index}", "node-a", owner)
    stand_ins = StandIns(wire, owner, 3)
    stand_ins.start()
    seen: dict[str, Any] = {}
    try:
        time.sleep(1.0)  # the stand-ins report the pods Ready and write the budget's status
        seen["blocking_budgets"] = [
            finding.describe() for finding in find_blocking_budgets(cluster)
        ]
        wire.send(
            "PATCH",
            "/api/v1/nodes/node-a",
            {"spec": {"unschedulable": True}},
            content_type="application/strategic-merge-patch+json",
        )
        try:
            result = drain_node(cluster, "node-a", DrainOptions(timeout_s=60, retry_interval_s=1.0))
            seen["drain"] = {
                "evicted": sorted(str(item.pod) for item in result.evicted),
                "seconds": round(result.duration_s, 1),
                "refusals": len(result.refusals),
                "first_refusal": (
                    {"budget": result.refusals[0].budget, "message": result.refusals[0].message}
                    if result.refusals
                    else None
                ),
            }
        except DrainError as error:
            seen["drain"] = {"failed": str(error)}
        left = wire.send("GET", f"/api/v1/namespaces/{NAMESPACE}/pods").field("items") or []
        seen["pods_after"] = sorted(
            f"{item['metadata']['name']}@{item['spec'].get('nodeName')}" for item in left
        )
    finally:
        stand_ins.stopped.set()
        stand_ins.join(timeout=5)
    seen["stand_in_errors"] = stand_ins.errors
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-apiserver", required=True, help="path of a kube-apiserver binary")
    parser.add_argument("--etcd", required=True, help="path of an etcd binary")
    arguments = parser.parse_args()
    with (
        servers(arguments.kube_apiserver, arguments.etcd) as wire,
        tempfile.TemporaryDirectory() as temp,
    ):
        folder = Path(temp)
        admin = connect(str(kubeconfig(wire, wire.token, folder, "admin")), None)
        nobody = connect(
            str(kubeconfig(wire, wire.tokens[UNPRIVILEGED], folder, UNPRIVILEGED)), None
        )
        namespace(wire, NAMESPACE)
        report = {
            "server": wire.send("GET", "/version").body,
            "preflight": run_preflight(admin, nobody),
            "paging": run_paging(wire, admin),
            "drain": run_drain(wire, admin),
        }
    print(json.dumps(report, indent=1, default=str))
    client.ApiClient().close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
