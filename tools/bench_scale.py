"""Scale benchmark (issue 12): the gate profile against twins of 100 and 1,000 nodes.

    python tools/bench_scale.py [--nodes 100 --nodes 1000] [--pods-per-node 10] [--sample 2]

For each size: start a twin, fill it with ``pods-per-node`` pods per node (Deployments of a
simulated image, all available before the run), run ``-m gate`` with the DNS checks sampling
``--sample`` nodes per node group and zone (dns.sample_per_group_zone), and print the wall time
and the API requests the run made, by verb and by resource. Prints; asserts nothing.

The requests are counted on the client side, in the pytest process, by this module loaded as a
plugin (``-p bench_scale``): every request to the API server's URL through urllib3's
PoolManager, i.e. one count per logical request (retries inside are not counted again). That
is what must not grow with the pod count: the twin's own components (kubelets, controllers)
grow with the node count by design and are not the suites' doing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import urllib3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clustergate.kube import Cluster, connect
from clustergate.wait import wait_for_objects
from tests.conftest import ROOT, RunningTwin, start_twin, stop_twin

COUNTS_ENV = "CLUSTERGATE_BENCH_COUNTS"
SERVER_ENV = "CLUSTERGATE_BENCH_SERVER"
IMAGE = "registry.example.com/shop/web:1.0"
LOAD_NAMESPACE = "bench-load"
REPLICAS_PER_DEPLOYMENT = 500
_GROUP_VERSION = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/?")


def verb_and_resource(method: str, url: str) -> tuple[str, str]:
    """The Kubernetes verb and resource of a request URL, as the API server's audit log has it."""
    parts = urlsplit(url)
    path = _GROUP_VERSION.sub("", parts.path)
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 3 and segments[0] == "namespaces":
        segments = segments[2:]
    resource = "/".join(segments[:1] + segments[2:3]) or parts.path
    named = len(segments) >= 2
    query = parse_qs(parts.query)
    if method == "GET":
        if query.get("watch") in (["true"], ["1"]):
            return "watch", resource
        return ("get" if named else "list"), resource
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method, method.lower())
    if verb == "delete" and not named:
        verb = "deletecollection"
    return verb, resource


def pytest_configure(config: object) -> None:
    """Plugin side: count each request to the API server, write the counts at exit."""
    path, server = os.environ.get(COUNTS_ENV), os.environ.get(SERVER_ENV)
    if not path or not server:
        return
    counts: Counter[str] = Counter()
    original = urllib3.PoolManager.urlopen

    def counting(self: urllib3.PoolManager, method: str, url: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if url.startswith(server):
            verb, resource = verb_and_resource(method.upper(), url)
            counts[f"{verb} {resource}"] += 1
        return original(self, method, url, *args, **kwargs)

    urllib3.PoolManager.urlopen = counting  # type: ignore[method-assign]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")

    import atexit

    atexit.register(lambda: Path(f"{path}.{worker}").write_text(json.dumps(counts)))


def _fill(cluster: Cluster, pods: int, timeout_s: float) -> float:
    """Create ``pods`` simulated pods through Deployments; seconds until all are available."""
    from kubernetes import client

    started = time.monotonic()
    core, apps = cluster.core(), cluster.apps()
    wanted = pods
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=LOAD_NAMESPACE)))
    index = 0
    while pods > 0:
        replicas = min(REPLICAS_PER_DEPLOYMENT, pods)
        labels = {"app": f"load-{index}"}
        container = client.V1Container(
            name="web",
            image=IMAGE,
            resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"}),
        )
        apps.create_namespaced_deployment(
            LOAD_NAMESPACE,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=f"load-{index}", labels=labels),
                spec=client.V1DeploymentSpec(
                    replicas=replicas,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(containers=[container]),
                    ),
                ),
            ),
        )
        pods -= replicas
        index += 1

    def available(deployments: list[object]) -> int:
        return sum((d.status and d.status.available_replicas) or 0 for d in deployments)  # type: ignore[attr-defined]

    # The Deployments' status, watched: 20 objects, where listing the pods themselves every few
    # seconds was a load of its own on the twin being filled.
    wait_for_objects(
        apps.list_namespaced_deployment,
        lambda deployments: available(deployments) >= wanted,
        what=f"{wanted} load pods available in {LOAD_NAMESPACE}",
        timeout_s=timeout_s,
        describe=lambda deployments: f"{available(deployments)}/{wanted} available",
        progress_every_s=60,
        namespace=LOAD_NAMESPACE,
    )
    return time.monotonic() - started


def _sampled_config(twin: RunningTwin, sample: int) -> Path:
    config = yaml.safe_load(twin.config.read_text())
    config.setdefault("dns", {})["sample_per_group_zone"] = sample
    path = twin.state_dir / "cluster-sampled.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def bench(nodes: int, pods_per_node: int, sample: int, work: Path) -> dict[str, object]:
    state = work / f"twin-{nodes}"
    state.mkdir(parents=True)
    started = time.monotonic()
    twin = start_twin(state, "--nodes", str(nodes), "--timeout", "1200")
    twin_start = time.monotonic() - started
    try:
        cluster = connect(str(twin.kubeconfig), None, timeout_s=60)
        fill_s = _fill(cluster, nodes * pods_per_node, timeout_s=3600)
        counts_base = state / "counts"
        server = cluster.server
        env = {
            **twin.environment(),
            COUNTS_ENV: str(counts_base),
            SERVER_ENV: server,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), str(ROOT)]),
        }
        command = twin.command(
            "-m", "gate", "-p", "bench_scale", "-q", "-o", "log_cli=false",
            "--config", str(_sampled_config(twin, sample)),
        )  # fmt: skip
        run_started = time.monotonic()
        completed = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False
        )
        wall = time.monotonic() - run_started
    finally:
        stop_twin(state)
    counts: Counter[str] = Counter()
    for part in state.glob("counts.*"):
        counts.update(json.loads(part.read_text()))
    summary_path = state / "reports" / "summary.json"
    outcomes = (
        Counter(check["outcome"] for check in json.loads(summary_path.read_text())["checks"])
        if summary_path.exists()
        else Counter()
    )
    return {
        "nodes": nodes,
        "pods": nodes * pods_per_node,
        "twin_start_s": round(twin_start, 1),
        "fill_s": round(fill_s, 1),
        "gate_wall_s": round(wall, 1),
        "pytest_exit": completed.returncode,
        "outcomes": dict(outcomes),
        "requests": dict(counts),
    }


def _print(results: list[dict[str, object]]) -> None:
    for result in results:
        print(
            f"\n{result['nodes']} nodes, {result['pods']} pods: twin up {result['twin_start_s']}s,"
            f" pods available {result['fill_s']}s, gate {result['gate_wall_s']}s, "
            f"pytest exit {result['pytest_exit']}, {result['outcomes']}"
        )
    keys = sorted({key for result in results for key in result["requests"]})  # type: ignore[attr-defined]
    by_verb: list[Counter[str]] = []
    for result in results:
        verbs: Counter[str] = Counter()
        for key, count in result["requests"].items():  # type: ignore[attr-defined]
            verbs[key.split(" ", 1)[0]] += count
        by_verb.append(verbs)
    header = "".join(f"{str(r['nodes']) + ' nodes':>12}" for r in results)
    print(f"\n{'verb':<14}{header}")
    for verb in sorted({v for counts in by_verb for v in counts}):
        print(f"{verb:<14}" + "".join(f"{counts[verb]:>12}" for counts in by_verb))
    print(f"{'total':<14}" + "".join(f"{sum(c.values()):>12}" for c in by_verb))
    print(f"\n{'verb resource':<44}{header}")
    for key in keys:
        print(f"{key:<44}" + "".join(f"{r['requests'].get(key, 0):>12}" for r in results))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, action="append")
    parser.add_argument("--pods-per-node", type=int, default=10)
    parser.add_argument("--sample", type=int, default=2, help="dns.sample_per_group_zone")
    parser.add_argument("--reports-dir", default=str(ROOT / "reports"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results = []
    for nodes in args.nodes or [100, 1000]:
        results.append(bench(nodes, args.pods_per_node, args.sample, work))
        _print(results[-1:])
    _print(results)
    out = Path(args.reports_dir) / "bench-scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n(written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
